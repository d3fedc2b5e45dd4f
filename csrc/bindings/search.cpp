// ringrift._core, search area (docs/search.md): a batch of Gumbel search trees (search/gumbel.h)
// over one board. Python drives the network path (select -> evaluate -> apply); the net-free path
// runs whole searches here. Every array is allocated once, in the constructor; the trees are
// walked with the GIL released, on `threads` native threads (each tree has its own random
// stream, so results do not depend on the thread count).
#include <cmath>
#include <thread>

#include "bindings/common.h"
#include "search/evaluators.h"

namespace rr {
namespace bind {

inline const char* const LEAF_EVAL_NAMES[NUM_LEAF_EVALS] = {"net", "zero", "heuristic", "rollout"};

class SearchBatch {
 public:
  SearchBatch(const std::string& board, py::list games, py::object seed, py::iterable streams, pyarg::Int simulations,
              pyarg::Int top_k, double c_visit, double c_scale, double gumbel_scale, const std::string& leaf,
              pyarg::Int rollout_moves, pyarg::Int max_nodes, pyarg::Int threads) {
    b_ = parse_board(board);
    g_ = &host_geometry(b_);
    as_ = &exportpy::action_space_of(b_);
    fg_ = &exportpy::feature_grid_of(b_);
    leaf_ = (uint8_t)parse_enum(leaf, LEAF_EVAL_NAMES, NUM_LEAF_EVALS, "leaf evaluator (net, zero, heuristic, rollout)");
    P_.simulations = (int32_t)pyarg::in_range(simulations, 0, 1 << 20, "simulations");
    P_.top_k = (int32_t)pyarg::in_range(top_k, 1, SEARCH_MAX_TOPK, "top_k");
    P_.c_visit = (float)finite_nonneg(c_visit, "c_visit");
    P_.c_scale = (float)finite_nonneg(c_scale, "c_scale");
    P_.gumbel_scale = (float)finite_nonneg(gumbel_scale, "gumbel_scale");
    rollout_moves_ = (int)pyarg::in_range(rollout_moves, 0, 1 << 20, "rollout_moves");
    capacity_ = (int32_t)pyarg::in_range(max_nodes, MAX_MOVES + 1, 1 << 24, "max_nodes (at least MAX_MOVES + 1 = 8193)");
    threads_ = pyarg::thread_count(threads);
    const uint64_t s = pyarg::u64(seed, "seed");
    std::vector<uint64_t> st;
    for (py::handle h : streams) st.push_back(pyarg::u64(h, "stream"));
    B_ = (int)games.size();
    if (B_ < 1) throw py::value_error("games: need at least one game to search");
    if ((int)st.size() != B_)
      throw py::value_error("streams: expected one per game (" + std::to_string(B_) + "), got " + std::to_string(st.size()));
    // the pool is the only large allocation: refuse one that cannot be what was meant
    const double bytes = (double)B_ * capacity_ * sizeof(SearchNode);
    if (bytes > 64.0 * (1ull << 30))
      throw py::value_error("games x max_nodes needs " + std::to_string((long long)(bytes / (1 << 20))) +
                            " MiB of nodes (limit 64 GiB): search fewer games at once or lower max_nodes");
    // default-initialised (SearchNode is plain data): pages that no tree reaches are never touched
    pool_.reset(new SearchNode[(size_t)B_ * capacity_]);
    trees_.resize(B_);
    for (int i = 0; i < B_; i++) {
      Game& gm = games[i].cast<Game&>();
      if (gm.geo().board != b_)
        throw py::value_error("games[" + std::to_string(i) + "] is a " + board_name(gm.geo().board) +
                              " game, the batch searches " + board);
      trees_[i].reset(new SearchTree);
      search_reset(*trees_[i], pool_.get() + (size_t)i * capacity_, capacity_, gm.st(), Rng::for_game(s, st[i]));
    }
    const int H = fg_->h, W = fg_->w;
    planes_ = py::array_t<float>({(py::ssize_t)B_, (py::ssize_t)FEAT_PLANES, (py::ssize_t)H, (py::ssize_t)W});
    globals_ = py::array_t<float>({(py::ssize_t)B_, (py::ssize_t)FEAT_GLOBALS});
    rows_ = py::array_t<int32_t>((py::ssize_t)B_);
    int nt = std::max(1, std::min(resolve_threads(threads_), B_));
    for (int k = 0; k < nt; k++) work_.emplace_back(new SearchWork);
  }

  // (Any batch can be driven by a network this way; `leaf` only picks run_netfree's evaluator.)
  // Walk every tree to its next leaf that needs the network; their features go to rows
  // 0 .. R-1 of `planes` / `globals`, `rows[r]` is the tree of row r. Returns R (0: all done).
  int select() {
    if (pending_ > 0) throw py::value_error("select(): the previous " + std::to_string(pending_) +
                                            " leaves have not been given their evaluation (call apply first)");
    float* pl = planes_.mutable_data();
    float* gl = globals_.mutable_data();
    const size_t ps = (size_t)FEAT_PLANES * fg_->h * fg_->w;
    std::vector<uint8_t> need(B_, 0);
    {
      py::gil_scoped_release release;
      parallel([&](int i, SearchWork& w) {
        SearchTree& t = *trees_[i];
        for (;;) {
          uint8_t r = search_select(*g_, *as_, t, P_, w);
          if (r == SEL_DONE) return;
          if (r == SEL_LEAF) break;
        }
        encode_features(*g_, *fg_, w.state, pl + (size_t)i * ps, gl + (size_t)i * FEAT_GLOBALS);
        need[i] = 1;
      });
      // compact the rows of the trees that wait (in tree order)
      int32_t* rows = rows_.mutable_data();
      int R = 0;
      for (int i = 0; i < B_; i++) {
        if (!need[i]) continue;
        if (R != i) {
          std::memmove(pl + (size_t)R * ps, pl + (size_t)i * ps, ps * sizeof(float));
          std::memmove(gl + (size_t)R * FEAT_GLOBALS, gl + (size_t)i * FEAT_GLOBALS, FEAT_GLOBALS * sizeof(float));
        }
        rows[R++] = i;
      }
      pending_ = R;
    }
    return pending_;
  }

  // The network's output for the rows of the last select(): logits (R, action space size) and
  // values (R,) for the player to move or (R, 4) per seat slot relative to the mover.
  void apply(py::object logits_obj, py::object values_obj) {
    if (pending_ <= 0) throw py::value_error("apply(): no leaves are waiting (call select first)");
    const py::ssize_t R = pending_, A = as_->size();
    auto logits = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(logits_obj);
    auto values = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(values_obj);
    if (!logits || logits.ndim() != 2 || logits.shape(0) != R || logits.shape(1) != A)
      throw py::value_error("apply(): logits must be a float array of shape (" + std::to_string(R) + ", " +
                            std::to_string(A) + ") (rows of the last select, the board's action space)");
    int nv = 0;
    if (values && values.ndim() == 1 && values.shape(0) == R) nv = 1;
    else if (values && values.ndim() == 2 && values.shape(0) == R && values.shape(1) == MAX_PLAYERS) nv = MAX_PLAYERS;
    if (!nv)
      throw py::value_error("apply(): values must be a float array of shape (" + std::to_string(R) + ",) or (" +
                            std::to_string(R) + ", 4)");
    const float* lg = logits.data();
    const float* vs = values.data();
    const int32_t* rows = rows_.data();
    std::vector<int32_t> row_of(B_, -1);
    for (int r = 0; r < R; r++) row_of[rows[r]] = r;
    {
      py::gil_scoped_release release;
      parallel([&](int i, SearchWork&) {
        const int r = row_of[i];
        if (r < 0) return;
        SearchTree& t = *trees_[i];
        float v[MAX_PLAYERS];
        value_by_seat(t.root.num_players, t.pool[t.leaf].mover, vs + (size_t)r * nv, nv, v);
        search_apply(t, P_, lg + (size_t)r * A, v);
      });
    }
    pending_ = 0;
  }

  // Whole searches with the net-free evaluator (uniform priors).
  void run_netfree() {
    if (leaf_ == LEAF_NET) throw py::value_error("run_netfree(): this batch is for a network (leaf='net')");
    py::gil_scoped_release release;
    parallel([&](int i, SearchWork& w) { search_run_netfree(*g_, *as_, *trees_[i], P_, leaf_, rollout_moves_, w); });
  }

  bool done() const {
    for (auto& t : trees_)
      if (t->status != SS_DONE) return false;
    return true;
  }

  // Per tree: chosen canonical action (-1: none: the game is over, or the search is not done),
  // root value for the player to move, simulations run, nodes used, and whether the pool ran out.
  py::dict results() const {
    py::array_t<int32_t> action(B_), sims(B_), nodes(B_), children(B_);
    py::array_t<float> value(B_);
    py::array_t<uint8_t> full(B_), done(B_);
    std::vector<Move> moves;
    for (int i = 0; i < B_; i++) {
      const SearchTree& t = *trees_[i];
      const int32_t c = t.status == SS_DONE ? t.chosen : -1;
      action.mutable_data()[i] = c >= 0 ? t.pool[c].action : -1;
      moves.push_back(c >= 0 ? t.pool[c].move : make_move(0, 0));
      value.mutable_data()[i] = search_root_value(t);
      sims.mutable_data()[i] = t.sims_done;
      nodes.mutable_data()[i] = t.used;
      children.mutable_data()[i] = t.pool[0].num_children;
      full.mutable_data()[i] = t.pool_full;
      done.mutable_data()[i] = t.status == SS_DONE;
    }
    py::dict d;
    d["action"] = action;
    d["move"] = py::cast(moves);
    d["root_value"] = value;
    d["simulations"] = sims;
    d["nodes"] = nodes;
    d["root_actions"] = children;
    d["pool_full"] = full;
    d["done"] = done;
    return d;
  }

  // Tree i's root: (actions, improved policy, visits, prior), one entry per distinct playable
  // action in surface order; empty when the root has none.
  py::tuple root_policy(pyarg::Int i_arg) const {
    const int i = (int)pyarg::in_range(i_arg, 0, B_ - 1, "tree index");
    const SearchTree& t = *trees_[i];
    const SearchNode& r = t.pool[0];
    const int k = (r.flags & SN_EVALUATED) ? r.num_children : 0;
    py::array_t<int32_t> actions(k), visits(k);
    py::array_t<float> probs(k), prior(k);
    if (k > 0) improved_policy(t.pool, r, P_, probs.mutable_data());
    for (int j = 0; j < k; j++) {
      const SearchNode& c = t.pool[r.first_child + j];
      actions.mutable_data()[j] = c.action;
      visits.mutable_data()[j] = c.visits;
      prior.mutable_data()[j] = c.prior;
    }
    return py::make_tuple(actions, probs, visits, prior);
  }

  py::array_t<float> planes() const { return planes_; }
  py::array_t<float> globals() const { return globals_; }
  py::array_t<int32_t> rows() const { return rows_; }
  int size() const { return B_; }
  int action_space_size() const { return as_->size(); }

 private:
  // Bounded, not just finite: the search works in float, where 1e308 is inf and (c_visit + N) *
  // c_scale overflowed into an all-NaN improved policy. The paper's values are 50 and 0.1-1.
  static double finite_nonneg(double v, const char* what) {
    if (!std::isfinite(v) || v < 0 || v > 1e6) throw py::value_error(std::string(what) + " must be a number 0..1e6");
    return v;
  }
  // fn(tree, work) for every tree, trees split in contiguous ranges over the work spaces.
  template <class F>
  void parallel(F fn) {
    const int nt = (int)work_.size();
    if (nt == 1) {
      for (int i = 0; i < B_; i++) fn(i, *work_[0]);
      return;
    }
    std::vector<std::thread> pool;
    for (int k = 0; k < nt; k++)
      pool.emplace_back([&, k] {
        for (int i = (int)((int64_t)B_ * k / nt); i < (int)((int64_t)B_ * (k + 1) / nt); i++) fn(i, *work_[k]);
      });
    for (auto& th : pool) th.join();
  }

  BoardType b_;
  const Geometry* g_;
  const ActionSpace* as_;
  const FeatureGrid* fg_;
  SearchParams P_;
  uint8_t leaf_;
  int rollout_moves_ = 0, threads_ = 1, B_ = 0, pending_ = 0;
  int32_t capacity_ = 0;
  std::unique_ptr<SearchNode[]> pool_;
  std::vector<std::unique_ptr<SearchTree>> trees_;
  std::vector<std::unique_ptr<SearchWork>> work_;
  py::array_t<float> planes_, globals_;
  py::array_t<int32_t> rows_;
};

void register_search(py::module_& mod) {
  mod.attr("SEARCH_LEAF_EVALS") = py::cast(std::vector<std::string>(LEAF_EVAL_NAMES, LEAF_EVAL_NAMES + NUM_LEAF_EVALS));
  mod.attr("SEARCH_MAX_TOPK") = SEARCH_MAX_TOPK;
  mod.def("search_struct_sizes", []() {
    py::dict d;
    d["SearchTree"] = sizeof(SearchTree);
    d["SearchNode"] = sizeof(SearchNode);
    d["SearchWork"] = sizeof(SearchWork);
    d["SearchParams"] = sizeof(SearchParams);
    return d;
  }, "sizeof of the structs the CUDA search kernel takes per tree (python/ringrift/gpu/search_kernel.py).");
  py::class_<SearchBatch>(mod, "SearchBatch",
                          "B Gumbel search trees over one board (docs/search.md); use ringrift.search.GumbelSearch.")
      .def(py::init<const std::string&, py::list, py::object, py::iterable, pyarg::Int, pyarg::Int, double, double,
                    double, const std::string&, pyarg::Int, pyarg::Int, pyarg::Int>(),
           py::arg("board"), py::arg("games"), py::arg("seed"), py::arg("streams"), py::arg("simulations"),
           py::arg("top_k"), py::arg("c_visit"), py::arg("c_scale"), py::arg("gumbel_scale"), py::arg("leaf"),
           py::arg("rollout_moves"), py::arg("max_nodes"), py::arg("threads"))
      .def("select", &SearchBatch::select)
      .def("apply", &SearchBatch::apply, py::arg("logits"), py::arg("values"))
      .def("run_netfree", &SearchBatch::run_netfree)
      .def("done", &SearchBatch::done)
      .def("results", &SearchBatch::results)
      .def("root_policy", &SearchBatch::root_policy, py::arg("i"))
      .def_property_readonly("planes", &SearchBatch::planes)
      .def_property_readonly("globals", &SearchBatch::globals)
      .def_property_readonly("rows", &SearchBatch::rows)
      .def_property_readonly("size", &SearchBatch::size)
      .def_property_readonly("action_space_size", &SearchBatch::action_space_size);
}

}  // namespace bind
}  // namespace rr
