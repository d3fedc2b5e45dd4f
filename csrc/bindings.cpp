// Python binding of the rules core (module ringrift._core). Thin: every rule lives in
// csrc/engine; this file converts between Python values and the core's plain structs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "selfplay/batch_runner.h"
#include "selfplay/slot_driver.h"
#include "selfplay/batch_env.h"
#include "selfplay/layout.h"
#include "export/encoder.h"
#include "bindings/checked_args.h"
#include "bindings/state_check.h"
#include <pybind11/numpy.h>
#include <chrono>
#include <cstring>

namespace py = pybind11;
using namespace rr;

// ---- NPZ export: submodule ringrift._core.export (layout and semantics: docs/npz_format.md) ----
// register_export<Game>(mod) is called once from PYBIND11_MODULE; GameT is the Game class below.
namespace rr {
namespace exportpy {


inline BoardType board_arg(const std::string& name) {
  int b = board_from_name(name.c_str());
  if (b < 0) throw py::value_error("unknown board '" + name + "' (expected square8, hex8, square19 or hexagonal)");
  return (BoardType)b;
}

inline const ActionSpace& action_space_of(BoardType b) {
  static const struct Spaces {
    ActionSpace a[NUM_BOARDS];
    Spaces() {
      for (int i = 0; i < NUM_BOARDS; i++) build_action_space(host_geometry((BoardType)i), a[i]);
    }
  } spaces;
  return spaces.a[b];
}

inline const FeatureGrid& feature_grid_of(BoardType b) {
  static const struct Grids {
    FeatureGrid f[NUM_BOARDS];
    Grids() {
      for (int i = 0; i < NUM_BOARDS; i++) build_feature_grid(host_geometry((BoardType)i), f[i]);
    }
  } grids;
  return grids.f[b];
}

inline const Symmetries& symmetries_of(BoardType b) {
  static const struct All {
    std::unique_ptr<Symmetries> y[NUM_BOARDS];
    All() {
      for (int i = 0; i < NUM_BOARDS; i++) {
        y[i].reset(new Symmetries);
        build_symmetries(host_geometry((BoardType)i), *y[i]);
      }
    }
  } all;
  return *all.y[b];
}

inline int symmetry_arg(const Symmetries& y, pyarg::Int t) {
  if (t.v < 0 || t.v >= y.n)
    throw py::value_error("symmetry " + pyarg::show(t.v) + " out of range: this board has " + std::to_string(y.n) +
                          " (0 .. " + std::to_string(y.n - 1) + ")");
  return (int)t.v;
}

inline std::vector<std::string> plane_names() {
  static const char* per_slot[FEAT_PER_SLOT] = {"stack", "height", "cap", "buried", "marker", "collapsed"};
  std::vector<std::string> out;
  for (int k = 0; k < FEAT_SLOTS; k++)
    for (int i = 0; i < FEAT_PER_SLOT; i++) out.push_back("p" + std::to_string(k) + "_" + per_slot[i]);
  out.push_back("valid_cell");
  out.push_back("anchor");
  return out;
}

inline std::vector<std::string> global_names() {
  static const char* phases[NUM_PHASES] = {"ring_placement",  "movement",        "capture",
                                           "chain_capture",   "line_processing", "territory_processing",
                                           "forced_elimination", "game_over"};
  static const char* per_slot[FG_PER_SLOT] = {"present", "alive", "hand", "eliminated", "territory", "on_board"};
  static const char* flags[NUM_FEAT_FLAGS] = {"pending_line", "pending_territory", "used_recovery", "had_action",
                                              "swap_offered"};
  std::vector<std::string> out;
  for (int i = 0; i < NUM_PHASES; i++) out.push_back(std::string("phase_") + phases[i]);
  for (int k = 0; k < FEAT_SLOTS; k++)
    for (int i = 0; i < FG_PER_SLOT; i++) out.push_back("p" + std::to_string(k) + "_" + per_slot[i]);
  for (int i = 0; i < NUM_FEAT_FLAGS; i++) out.push_back(flags[i]);
  for (int n = 2; n <= 4; n++) out.push_back("players_" + std::to_string(n));
  for (int k = 0; k < FEAT_SLOTS; k++) out.push_back("p" + std::to_string(k) + "_lps_rounds");
  return out;
}

template <class T>
const T* opt_data(const py::object& o, py::ssize_t n, const char* what, py::array_t<T, py::array::c_style | py::array::forcecast>& keep) {
  if (o.is_none()) return nullptr;
  keep = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(o);
  if (!keep || keep.ndim() != 1 || keep.shape(0) != n)
    throw py::value_error(std::string(what) + " must be a one-dimensional array of length " + std::to_string(n));
  return keep.data();
}

template <class GameT>
void register_export(py::module_& parent) {
  py::module_ m = parent.def_submodule("export", "NPZ export core: action index space and feature encoding");
  m.attr("NUM_PLANES") = FEAT_PLANES;
  m.attr("NUM_GLOBALS") = FEAT_GLOBALS;
  m.attr("NUM_SLOTS") = FEAT_SLOTS;
  m.attr("PLANE_NAMES") = py::cast(plane_names());
  m.attr("GLOBAL_NAMES") = py::cast(global_names());
  m.attr("CLIP") = FEAT_CLIP;

  m.def("action_space", [](const std::string& board) {
    const ActionSpace& a = action_space_of(board_arg(board));
    py::dict d;
    d["board"] = board;
    d["size"] = a.size();
    d["cells"] = a.cells;
    d["dirs"] = a.dirs;
    d["axes"] = a.axes;
    d["dist"] = a.dist;
    d["min_line"] = a.min_line;
    d["wslots"] = a.wslots;
    d["territory_passes"] = TERRITORY_PASSES;
    const Geometry& g = host_geometry(board_arg(board));
    d["line_axes"] = std::vector<int>(g.line_axes, g.line_axes + g.num_line_axes);
    d["offsets"] = std::vector<int32_t>(a.offset, a.offset + NUM_MOVE_TYPES + 1);
    d["blocks"] = std::vector<int32_t>(a.block, a.block + NUM_MOVE_TYPES);
    return d;
  }, py::arg("board"), "The action index space of a board: block offsets and dimensions.");

  m.def("spatial_size", [](const std::string& board) {
    const FeatureGrid& f = feature_grid_of(board_arg(board));
    return py::make_tuple((int)f.h, (int)f.w);
  }, py::arg("board"));

  m.def("cell_pixels", [](const std::string& board) {
    BoardType b = board_arg(board);
    const FeatureGrid& f = feature_grid_of(b);
    int n = host_geometry(b).num_cells;
    return std::vector<int>(f.pix, f.pix + n);
  }, py::arg("board"), "row * W + col of every cell in the feature planes.");

  m.def("action_index", [](const std::string& board, const Move& mv) {
    BoardType b = board_arg(board);
    int32_t i = action_index(host_geometry(b), action_space_of(b), mv);
    if (i < 0) throw py::value_error("the move does not fit the " + board + " action space (cells off the board or not in a straight line)");
    return i;
  }, py::arg("board"), py::arg("move"), "Structural action index of a move (no state needed).");

  m.def("canonical_action_index", [](GameT& game, const Move& mv) {
    const Geometry& g = game.geo();
    const ActionSpace& a = action_space_of((BoardType)g.board);
    std::vector<Move> legal = game.legal_moves();
    std::unique_ptr<MoveList> l(new MoveList());
    for (const Move& x : legal) ml_push(*l, x);
    int32_t i = canonical_action_index(g, a, game.st(), mv, *l);
    if (i < 0) throw py::value_error("the move does not fit the action space of this board");
    return i;
  }, py::arg("game"), py::arg("move"),
     "Action index with equivalent legal moves merged (duplicate territory regions, exact process_line).");

  m.def("legal_action_indices", [](GameT& game, bool canonical) {
    const Geometry& g = game.geo();
    const ActionSpace& a = action_space_of((BoardType)g.board);
    std::vector<Move> legal = game.legal_moves();
    std::unique_ptr<MoveList> l(new MoveList());
    for (const Move& x : legal) ml_push(*l, x);
    py::array_t<int32_t> out((py::ssize_t)legal.size());
    int32_t* o = out.mutable_data();
    for (size_t i = 0; i < legal.size(); i++)
      o[i] = canonical ? canonical_action_index(g, a, game.st(), legal[i], *l) : action_index(g, a, legal[i]);
    return out;
  }, py::arg("game"), py::arg("canonical") = true, "Indices of game.legal_moves(), in that order.");

  m.def("decode_action", [](GameT& game, pyarg::Int index_arg) {
    const long long index = index_arg.v;
    const Geometry& g = game.geo();
    const ActionSpace& a = action_space_of((BoardType)g.board);
    const State& s = game.st();
    if (index < 0 || index >= a.size())
      throw py::value_error("action index " + pyarg::show(index) + " out of range [0, " + std::to_string(a.size()) + ")");
    if (s.status != ST_ACTIVE) throw py::value_error("the game is over: no action decodes");
    if (index == a.offset[MT_RESIGN]) return make_move(MT_RESIGN, s.current);
    if (index == a.offset[MT_TIMEOUT]) return make_move(MT_TIMEOUT, s.current);
    std::vector<Move> legal = game.legal_moves();
    std::unique_ptr<MoveList> l(new MoveList());
    for (const Move& x : legal) ml_push(*l, x);
    // Structural indices first (each names exactly one legal move), then canonical aliases.
    for (const Move& x : legal)
      if (action_index(g, a, x) == index) return x;
    for (const Move& x : legal)
      if (canonical_action_index(g, a, s, x, *l) == index) return x;
    throw py::value_error("action index " + std::to_string(index) + " is not a legal move in this state");
  }, py::arg("game"), py::arg("index"), "The legal move of `game` with this action index.");

  m.def("encode_state", [](GameT& game) {
    const Geometry& g = game.geo();
    const FeatureGrid& f = feature_grid_of((BoardType)g.board);
    py::array_t<float> planes({(py::ssize_t)FEAT_PLANES, (py::ssize_t)f.h, (py::ssize_t)f.w});
    py::array_t<float> globals((py::ssize_t)FEAT_GLOBALS);
    encode_features(g, f, game.st(), planes.mutable_data(), globals.mutable_data());
    return py::make_tuple(planes, globals);
  }, py::arg("game"), "(planes (C, H, W), globals (G,)) of the game's state, from the mover's view.");

  m.def("outcome_values", [](GameT& game) {
    float v[MAX_PLAYERS + 1];
    outcome_values(game.st(), v);
    return std::vector<float>(v + 1, v + 1 + game.st().num_players);
  }, py::arg("game"), "Per-seat outcome values of the game's (final) state, seats 1..n.");

  m.def("encode_games", [](const std::string& board,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> moves,
                           py::array_t<int64_t, py::array::c_style | py::array::forcecast> game_offsets,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> num_players,
                           py::object hashes, py::object verify, py::object expect_over, bool drop_forced,
                           pyarg::Int threads_arg, bool symmetries) {
    const int threads = (int)pyarg::in_range(threads_arg, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    ExportJob J;
    J.board = board_arg(board);
    if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
      throw py::value_error("moves must have shape (M, 16)");
    if (game_offsets.ndim() != 1 || game_offsets.shape(0) < 1)
      throw py::value_error("game_offsets must be a one-dimensional array of length G + 1");
    const py::ssize_t M = moves.shape(0), G = game_offsets.shape(0) - 1;
    if (num_players.ndim() != 1 || num_players.shape(0) != G)
      throw py::value_error("num_players must have one entry per game");
    const int64_t* off = game_offsets.data();
    for (py::ssize_t i = 0; i < G; i++)
      if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > M)
        throw py::value_error("game_offsets must be non-decreasing and within the move array");
    for (py::ssize_t i = 0; i < G; i++)
      if (num_players.data()[i] < 2 || num_players.data()[i] > MAX_PLAYERS)
        throw py::value_error("num_players entries must be 2, 3 or 4");
    py::array_t<uint64_t, py::array::c_style | py::array::forcecast> h_keep;
    py::array_t<uint8_t, py::array::c_style | py::array::forcecast> v_keep, e_keep;
    J.moves = reinterpret_cast<const Move*>(moves.data());
    J.game_off = off;
    J.games = G;
    J.num_players = num_players.data();
    J.hashes = opt_data<uint64_t>(hashes, M, "hashes", h_keep);
    J.verify = opt_data<uint8_t>(verify, G, "verify", v_keep);
    J.expect_over = opt_data<uint8_t>(expect_over, G, "expect_over", e_keep);
    J.drop_forced = drop_forced;
    J.threads = threads > 0 ? threads : (int)std::max(1u, std::thread::hardware_concurrency());
    J.plan();
    const py::ssize_t N = (py::ssize_t)J.sample_off[G];
    const FeatureGrid& f = feature_grid_of(J.board);
    py::array_t<float> features({N, (py::ssize_t)FEAT_PLANES, (py::ssize_t)f.h, (py::ssize_t)f.w});
    py::array_t<float> globals({N, (py::ssize_t)FEAT_GLOBALS});
    py::array_t<float> values(N);
    py::array_t<float> values_mp({N, (py::ssize_t)FEAT_SLOTS});
    py::array_t<int32_t> policy(N);
    const int S = symmetries ? symmetries_of(J.board).n : 0;
    py::array_t<int32_t> policy_sym({symmetries ? N : (py::ssize_t)0, (py::ssize_t)S});
    py::array_t<uint8_t> movers(N), phases(N);
    py::array_t<int32_t> ply(N);
    py::array_t<uint8_t> records({N, (py::ssize_t)sizeof(Move)});
    py::array_t<int8_t> status(G);
    py::array_t<int32_t> fail_step(G);
    py::array_t<uint8_t> final_winner(G);
    py::array_t<int64_t> sample_offsets(G + 1);
    J.features = features.mutable_data();
    J.globals = globals.mutable_data();
    J.values = values.mutable_data();
    J.values_mp = values_mp.mutable_data();
    J.policy = policy.mutable_data();
    J.policy_sym = symmetries ? policy_sym.mutable_data() : nullptr;
    J.movers = movers.mutable_data();
    J.phases = phases.mutable_data();
    J.ply = ply.mutable_data();
    J.records = records.mutable_data();
    J.status = status.mutable_data();
    J.fail_step = fail_step.mutable_data();
    J.final_winner = final_winner.mutable_data();
    std::memcpy(sample_offsets.mutable_data(), J.sample_off.data(), (size_t)(G + 1) * sizeof(int64_t));
    {
      py::gil_scoped_release release;
      run_export(J);
    }
    py::dict d;
    d["features"] = features;
    d["globals"] = globals;
    d["values"] = values;
    d["values_mp"] = values_mp;
    d["policy"] = policy;
    if (symmetries) d["policy_sym"] = policy_sym;
    d["movers"] = movers;
    d["phases"] = phases;
    d["ply"] = ply;
    d["records"] = records;
    d["status"] = status;
    d["fail_step"] = fail_step;
    d["final_winner"] = final_winner;
    d["sample_offsets"] = sample_offsets;
    return d;
  }, py::arg("board"), py::arg("moves"), py::arg("game_offsets"), py::arg("num_players"),
     py::arg("hashes") = py::none(), py::arg("verify") = py::none(), py::arg("expect_over") = py::none(),
     py::arg("drop_forced") = false, py::arg("threads") = 1, py::arg("symmetries") = false,
     "Replay games from move records and encode one sample per pre-move state (GIL released). With "
     "symmetries, policy_sym (N, S) holds each sample's policy index under every board symmetry.");

  m.def("symmetries", [](const std::string& board) {
    BoardType b = board_arg(board);
    const Geometry& g = host_geometry(b);
    const Symmetries& y = symmetries_of(b);
    const FeatureGrid& f = feature_grid_of(b);
    const py::ssize_t S = y.n, N = g.num_cells, D = g.num_dirs, P = (py::ssize_t)f.h * f.w;
    py::array_t<int16_t> cells({S, N});
    py::array_t<uint8_t> dirs({S, D});
    py::array_t<int64_t> pixels({S, P});  // gather: image plane.flat[j] = plane.flat[pixels[t, j]]
    for (int t = 0; t < y.n; t++) {
      int64_t* px = pixels.mutable_data(t, 0);
      for (py::ssize_t j = 0; j < P; j++) px[j] = j;  // off-board pixels (zero) stay where they are
      for (int c = 0; c < g.num_cells; c++) {
        *cells.mutable_data(t, c) = y.cell[t][c];
        px[f.pix[y.cell[t][c]]] = f.pix[c];
      }
      for (int d = 0; d < g.num_dirs; d++) *dirs.mutable_data(t, d) = y.dir[t][d];
    }
    std::vector<int> exact;
    for (int t = 0; t < y.n; t++)
      if (y.exact >> t & 1) exact.push_back(t);
    py::dict out;
    out["n"] = y.n;
    out["exact"] = exact;
    out["cells"] = cells;
    out["dirs"] = dirs;
    out["pixels"] = pixels;
    return out;
  }, py::arg("board"), "The board's symmetries: cell and direction images, plane gather indices, the exact ones.");

  m.def("transform_into", [](GameT& src, GameT& dst, pyarg::Int t) {
    const Geometry& g = src.geo();
    if (&dst.geo() != &g) throw py::value_error("both games must be on the same board");
    if (&src == &dst) throw py::value_error("the destination must be another game (use a clone)");
    const Symmetries& y = symmetries_of((BoardType)g.board);
    transform_state(g, y, symmetry_arg(y, t), src.st(), dst.st());
  }, py::arg("src"), py::arg("dst"), py::arg("symmetry"), "dst = the position of src under a board symmetry.");

  m.def("symmetric_action_index", [](GameT& game, const Move& mv, pyarg::Int t_arg) {
    const Geometry& g = game.geo();
    const Symmetries& y = symmetries_of((BoardType)g.board);
    const int t = symmetry_arg(y, t_arg);
    std::vector<Move> legal = game.legal_moves();
    bool on = false;
    for (const Move& x : legal) on = on || same_move(x, mv);
    if (!on) throw py::value_error("the move is not legal in this state");
    std::unique_ptr<State> img(new State);
    std::unique_ptr<Scratch> sc(new Scratch);
    std::unique_ptr<MoveList> l(new MoveList());
    return sym_action_index(g, action_space_of((BoardType)g.board), y, t, game.st(), mv, *img, *sc, *l);
  }, py::arg("game"), py::arg("move"), py::arg("symmetry"),
     "Canonical action index, in the image position, of the image of a legal move under a board symmetry.");
}

}  // namespace exportpy
}  // namespace rr


namespace {

const char* const MOVE_TYPE_NAMES[NUM_MOVE_TYPES] = {
    "place_ring",         "skip_placement",        "no_placement_action",        "swap_sides",
    "move_stack",         "overtaking_capture",    "continue_capture_segment",   "skip_capture",
    "no_movement_action", "recovery_slide",        "skip_recovery",              "process_line",
    "choose_line_option", "no_line_action",        "choose_territory_option",    "eliminate_rings_from_stack",
    "skip_territory_processing", "no_territory_action", "forced_elimination",   "resign",
    "timeout"};

const char* const REASON_NAMES[] = {"",
                                    "ring_elimination",
                                    "territory_control",
                                    "last_player_standing",
                                    "tiebreaker_by_player_number",
                                    "resignation",
                                    "timeout"};

int parse_enum(const std::string& name, const char* const* names, int n, const char* what) {
  for (int i = 0; i < n; i++)
    if (name == names[i]) return i;
  throw py::value_error(std::string("unknown ") + what + " '" + name + "'");
}

BoardType parse_board(const std::string& name) {
  int b = board_from_name(name.c_str());
  if (b < 0)
    throw py::value_error("unknown board '" + name + "' (expected square8, hex8, square19 or hexagonal)");
  return (BoardType)b;
}

const char* const PHASE_NAMES[NUM_PHASES] = {"ring_placement",       "movement",
                                             "capture",              "chain_capture",
                                             "line_processing",      "territory_processing",
                                             "forced_elimination",   "game_over"};

// A game: one state plus its scratch buffers (heap-held: MoveList is large).
class Game {
 public:
  Game(const std::string& board, pyarg::Int num_players, bool swap_rule) {
    if (num_players.v < 2 || num_players.v > MAX_PLAYERS)
      throw py::value_error("num_players must be 2, 3 or 4, got " + pyarg::show(num_players.v));
    g_ = &host_geometry(parse_board(board));
    alloc();
    init_state(*s_, *g_, (int)num_players.v, swap_rule);
  }
  Game(const Game& o) : g_(o.g_) {
    alloc();
    *s_ = *o.s_;
  }

  const Geometry& geo() const { return *g_; }
  State& st() { return *s_; }
  const State& st() const { return *s_; }

  std::vector<Move> legal_moves() {
    legal_moves_into();
    return std::vector<Move>(list_->m, list_->m + list_->n);
  }
  int num_legal_moves() {
    legal_moves_into();
    return list_->n;
  }
  int apply(const Move& m) { return (int)step_checked(*g_, *s_, m, *sc_, *list_); }
  // No legality check (the caller knows the move is legal), but never a read outside the state:
  // a move that cannot be a move of this state at all raises ValueError.
  void apply_unchecked(const Move& m) {
    if (!record_sane(*g_, *s_, m))
      throw py::value_error("the move cannot be applied to this state (wrong player, phase or cells)");
    step_unchecked(*g_, *s_, m, *sc_);
  }

  std::string fingerprint_str() const {
    std::vector<char> buf(64 * 1024);
    StringSink k{buf.data(), (int)buf.size(), 0};
    fingerprint(*g_, *s_, k);
    return std::string(buf.data(), (size_t)std::min(k.len, (int)buf.size() - 1));
  }
  std::string hash_str() const {
    char out[17];
    snprintf(out, sizeof(out), "%016llx", (unsigned long long)state_hash(*g_, *s_));
    return out;
  }

 private:
  void alloc() {
    s_ = std::make_unique<State>();
    sc_ = std::make_unique<Scratch>();
    list_ = std::make_unique<MoveList>();
  }
  void legal_moves_into() {
    rr::legal_moves(*g_, *s_, *sc_, *list_);
    if (list_->overflow) throw std::runtime_error("legal move list overflow (MAX_MOVES too small)");
  }
  const Geometry* g_;
  std::unique_ptr<State> s_;
  std::unique_ptr<Scratch> sc_;
  std::unique_ptr<MoveList> list_;
};

py::object cell_or_none(int c) { return c == NO_CELL ? py::object(py::none()) : py::object(py::int_(c)); }

std::vector<int> line_cells(const Geometry& g, int start, int dir, int len) {
  std::vector<int> out;
  for (int i = 0, c = start; i < len && c != NO_CELL; i++, c = g.nbr[c][dir]) out.push_back(c);
  return out;
}

// Cells a move refers to beyond from/to/target: line positions, collapsed segment, region.
// ValueError when the move does not fit the game's board (pyarg::move_on_board).
py::dict move_cells(Game& game, const Move& m) {
  const Geometry& g = game.geo();
  pyarg::move_on_board(g, game.st().num_players, m);
  py::dict d;
  int T = line_threshold(g, game.st().num_players);
  if (m.type == MT_PROCESS_LINE || m.type == MT_CHOOSE_LINE_OPTION) {
    auto line = line_cells(g, m.line_start, m.line_dir, m.line_len);
    d["line"] = line;
    if (m.type == MT_CHOOSE_LINE_OPTION) {
      if (m.window == WINDOW_ALL) d["collapse"] = line;
      else d["collapse"] = std::vector<int>(line.begin() + m.window, line.begin() + m.window + T);
    }
  } else if (m.type == MT_RECOVERY_SLIDE && m.context == RM_LINE) {
    d["line"] = line_cells(g, m.line_start, m.line_dir, m.line_len);
  } else if (m.type == MT_CHOOSE_TERRITORY_OPTION) {
    int16_t cells[MAX_CELLS];
    int n = region_cells(g, game.st(), m.to, m.option, cells);
    d["region"] = std::vector<int>(cells, cells + n);
  }
  return d;
}

std::vector<int> stack_rings(const State& s, int c) {
  std::vector<int> rings;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r]) rings.push_back(s.ring_owner[r]);
  return rings;
}

// Load a position. `stacks`: (cell, rings top-first) in insertion order; `markers` and
// `collapsed`: (cell, owner), markers in insertion order. `extras` holds the rule fields the
// reference keeps in its move history (see transient_fields). Validated: every number is
// bounded by what the rules can reach (pyarg limits), bad input raises ValueError naming the
// field, and the game is left unchanged.
using IntList = std::vector<pyarg::Int>;

void load_position(Game& game, const std::string& phase, pyarg::Int current, const std::string& status,
                   pyarg::Int winner, const IntList& hand, const IntList& elim, const IntList& terr,
                   const std::vector<std::pair<pyarg::Int, IntList>>& stacks,
                   const std::vector<std::pair<pyarg::Int, pyarg::Int>>& markers,
                   const std::vector<std::pair<pyarg::Int, pyarg::Int>>& collapsed, pyarg::Int must_move,
                   pyarg::Int chain_pos, bool pending_line, const py::dict& extras) {
  using pyarg::in_range;
  const Geometry& g = game.geo();
  State& s0 = game.st();
  const int np = s0.num_players;
  std::unique_ptr<State> sp(new State);
  State& s = *sp;
  init_state(s, g, np, s0.swap_rule);
  auto check_cell = [&](pyarg::Int c, const char* what) { return pyarg::cell(g, c, what); };
  auto check_player = [&](pyarg::Int p, const char* what) {
    return (int)in_range(p, 1, np, std::string("player out of range in ") + what);
  };
  auto opt_cell = [&](pyarg::Int c, const char* what) -> int16_t {
    if (c.v == -1) return NO_CELL;
    return (int16_t)check_cell(c, what);
  };
  // extras: known keys only, integer values, each within what the rules can reach.
  static const char* const EXTRA_KEYS[] = {"captureOrigin", "pendingTerritoryElimination", "turnHadAction",
                                           "turnUsedRecovery", "lastActor", "moveCount", "victoryThreshold",
                                           "territoryMinimum", "p1Moved", "p2MovedNonSwap", "swapDone", "lps"};
  for (auto item : extras) {
    std::string k = py::str(item.first);
    bool known = false;
    for (const char* e : EXTRA_KEYS) known = known || k == e;
    if (!known) throw py::value_error("unknown state field ringrift." + k);
  }
  auto extra_int = [&](const char* key, long long dflt, long long lo, long long hi) -> int {
    if (!extras.contains(key)) return (int)dflt;
    return (int)in_range(pyarg::int_value(extras[key], std::string("ringrift.") + key), lo, hi,
                         std::string("ringrift.") + key);
  };
  if ((int)hand.size() != np || (int)elim.size() != np || (int)terr.size() != np)
    throw py::value_error("per-player lists must have num_players entries");
  s.phase = (uint8_t)parse_enum(phase, PHASE_NAMES, NUM_PHASES, "phase");
  s.current = (uint8_t)check_player(current, "currentPlayer");
  if (status == "active") s.status = ST_ACTIVE;
  else if (status == "completed" || status == "finished") s.status = ST_COMPLETED;
  else throw py::value_error("unknown gameStatus '" + status + "'");
  s.winner = (uint8_t)in_range(winner, 0, np, "winner");
  int on_board[MAX_PLAYERS + 1] = {0};
  long long total = 0;
  std::vector<bool> occupied(g.num_cells, false);
  for (auto& st : stacks) {
    const int c = check_cell(st.first, "stacks");
    if (st.second.empty()) throw py::value_error("empty stack at " + std::string(g.key[c]));
    if (occupied[c]) throw py::value_error("two stacks at " + std::string(g.key[c]));
    occupied[c] = true;
    // Bounded before counting: a stack cannot hold more rings than the engine's pool.
    if ((long long)st.second.size() > MAX_RINGS)
      throw py::value_error("the stack at " + std::string(g.key[c]) + " holds more than " + std::to_string(MAX_RINGS) +
                            " rings");
    for (pyarg::Int r : st.second) on_board[check_player(r, "stack rings")]++;
    total += (long long)st.second.size();
    if (total > MAX_RINGS) break;  // reported below
  }
  for (int p = 1; p <= np; p++) {
    const std::string who = "player " + std::to_string(p);
    s.hand[p] = (int16_t)in_range(hand[p - 1], 0, MAX_RINGS, who + " ringsInHand");
    s.elim[p] = (int16_t)in_range(elim[p - 1], 0, MAX_RINGS, who + " eliminatedRings");
    s.terr[p] = (int16_t)in_range(terr[p - 1], 0, g.num_cells, who + " territorySpaces");
    total += s.hand[p];
  }
  // The reference does not bound a position's rings by the ring supply (its test vectors exceed
  // it); the engine's ring pool is the only limit.
  if (total > MAX_RINGS)
    throw py::value_error("the position holds " + std::to_string(total) +
                          " or more rings in hands and on the board, more than the engine's " +
                          std::to_string(MAX_RINGS));
  for (auto& st : stacks) {
    // Push bottom-first so the list ends top-first; hands are already set.
    for (auto it = st.second.rbegin(); it != st.second.rend(); ++it) {
      const int p = (int)it->v;
      int16_t keep = s.hand[p];
      stack_push_rings(s, (int)st.first.v, (uint8_t)p, 1);
      s.hand[p] = keep;
    }
  }
  // Eliminated rings by colour are not serialized; derive them from conservation.
  for (int p = 1; p <= np; p++) {
    int gone = s.rings_per_player - s.hand[p] - s.board_rings[p];
    s.elim_colour[p] = (int16_t)(gone > 0 ? gone : 0);
  }
  for (auto& mk : markers) {
    const int c = check_cell(mk.first, "markers");
    const int p = check_player(mk.second, "markers");
    if (s.top[c] != NO_CELL || s.marker[c]) throw py::value_error("marker shares a cell at " + std::string(g.key[c]));
    marker_set(s, c, (uint8_t)p);
  }
  for (auto& cl : collapsed) {
    const int c = check_cell(cl.first, "collapsedSpaces");
    const int p = check_player(cl.second, "collapsedSpaces");
    if (s.top[c] != NO_CELL || s.marker[c] || s.collapsed[c])
      throw py::value_error("collapsed space shares a cell at " + std::string(g.key[c]));
    s.collapsed[c] = (uint8_t)p;
    s.collapsed_count[p]++;
  }
  s.must_move = opt_cell(must_move, "mustMoveFromStackKey");
  s.chain_pos = opt_cell(chain_pos, "chainCapturePosition");
  s.capture_origin = extras.contains("captureOrigin")
                         ? opt_cell(pyarg::Int{pyarg::int_value(extras["captureOrigin"], "ringrift.captureOrigin")},
                                    "ringrift.captureOrigin")
                         : NO_CELL;
  s.pending_line = pending_line;
  s.pending_territory = (uint8_t)extra_int("pendingTerritoryElimination", 0, 0, 1);
  s.turn_had_action = (uint8_t)extra_int("turnHadAction", 0, 0, 1);
  s.turn_used_recovery = (uint8_t)extra_int("turnUsedRecovery", 0, 0, 1);
  s.last_actor = (uint8_t)extra_int("lastActor", 0, 0, np);
  s.move_count = extra_int("moveCount", 0, 0, pyarg::MAX_MOVE_COUNT);
  int vt = extra_int("victoryThreshold", 0, 0, MAX_RINGS), tm = extra_int("territoryMinimum", 0, 0, g.num_cells);
  if (vt > 0) s.victory_threshold = (int16_t)vt;
  if (tm > 0) s.territory_minimum = (int16_t)tm;
  // Pie rule: a loaded mid-game position has a history; player 1 has moved unless this is move one.
  bool fresh = s.current == 1 && s.phase == PH_RING_PLACEMENT && s.num_stacks == 0 && markers.empty();
  s.p1_moved = (uint8_t)extra_int("p1Moved", fresh ? 0 : 1, 0, 1);
  s.p2_moved_non_swap = (uint8_t)extra_int("p2MovedNonSwap", 0, 0, 1);
  s.swap_done = (uint8_t)extra_int("swapDone", 0, 0, 1);
  if (extras.contains("lps")) {
    py::object lps_obj = extras["lps"];
    if (!py::isinstance<py::dict>(lps_obj)) throw py::value_error("ringrift.lps must be an object");
    py::dict lps = lps_obj;
    static const char* const LPS_KEYS[] = {"roundIndex", "firstPlayer", "maskSet", "maskValue",
                                           "exclusiveCompleted", "consecutivePlayer", "consecutiveRounds"};
    for (auto item : lps) {
      std::string k = py::str(item.first);
      bool known = false;
      for (const char* e : LPS_KEYS) known = known || k == e;
      if (!known) throw py::value_error("unknown state field ringrift.lps." + k);
    }
    auto li = [&](const char* k, long long hi) -> int {
      if (!lps.contains(k)) return 0;
      const std::string what = std::string("ringrift.lps.") + k;
      return (int)in_range(pyarg::int_value(lps[k], what), 0, hi, what);
    };
    // Actor masks have one bit per seat, bits 1..num_players.
    const int seat_bits = ((1 << (np + 1)) - 1) & ~1;
    auto mask = [&](const char* k) -> uint8_t {
      int v = li(k, seat_bits);
      if (v & ~seat_bits)
        throw py::value_error(std::string("ringrift.lps.") + k + ": " + std::to_string(v) +
                              " has bits outside the seats 1.." + std::to_string(np));
      return (uint8_t)v;
    };
    s.lps.round_index = (int16_t)li("roundIndex", pyarg::MAX_LPS_ROUNDS);
    s.lps.first_player = (uint8_t)li("firstPlayer", np);
    s.lps.mask_set = mask("maskSet");
    s.lps.mask_val = mask("maskValue");
    s.lps.exclusive_completed = (uint8_t)li("exclusiveCompleted", np);
    s.lps.consecutive_player = (uint8_t)li("consecutivePlayer", np);
    s.lps.consecutive_rounds = (int16_t)li("consecutiveRounds", pyarg::MAX_LPS_ROUNDS);
  }
  if (s.phase == PH_GAME_OVER) s.status = ST_COMPLETED;
  if (s.status == ST_ACTIVE) {
    // Phases whose surface starts from a cell need that cell, holding the mover's stack.
    const char* where = nullptr;
    if (s.phase == PH_CAPTURE && (s.capture_origin == NO_CELL || s.ctrl[s.capture_origin] != s.current))
      where = "a capture phase needs its origin (the mover's stack that just moved: mustMoveFromStackKey, "
              "the last move in moveHistory, or ringrift.captureOrigin)";
    if (s.phase == PH_CHAIN_CAPTURE && (s.chain_pos == NO_CELL || s.ctrl[s.chain_pos] != s.current))
      where = "a chain_capture phase needs chainCapturePosition on the mover's stack";
    if (s.phase == PH_FORCED_ELIMINATION && s.ctrl_stacks[s.current] == 0)
      where = "a forced_elimination phase needs a stack of the current player";
    if (where) throw py::value_error(where);
  }
  s0 = s;
}

// The rule fields the reference keeps in its move history, for a lossless state round trip.
py::dict transient_fields(Game& game) {
  const State& s = game.st();
  py::dict d;
  if (s.capture_origin != NO_CELL) d["captureOrigin"] = (int)s.capture_origin;
  d["pendingTerritoryElimination"] = (int)s.pending_territory;
  d["turnHadAction"] = (int)s.turn_had_action;
  d["turnUsedRecovery"] = (int)s.turn_used_recovery;
  d["lastActor"] = (int)s.last_actor;
  d["moveCount"] = (int)s.move_count;
  d["p1Moved"] = (int)s.p1_moved;
  d["p2MovedNonSwap"] = (int)s.p2_moved_non_swap;
  d["swapDone"] = (int)s.swap_done;
  py::dict lps;
  lps["roundIndex"] = (int)s.lps.round_index;
  lps["firstPlayer"] = (int)s.lps.first_player;
  lps["maskSet"] = (int)s.lps.mask_set;
  lps["maskValue"] = (int)s.lps.mask_val;
  lps["exclusiveCompleted"] = (int)s.lps.exclusive_completed;
  lps["consecutivePlayer"] = (int)s.lps.consecutive_player;
  lps["consecutiveRounds"] = (int)s.lps.consecutive_rounds;
  d["lps"] = lps;
  return d;
}

// Move(...) from Python: every field range-checked (pyarg::move_fields) before it is narrowed
// into the 16-byte record, so no value wraps.
Move make_py_move(const std::string& type, pyarg::Int player, pyarg::Int from, pyarg::Int to, pyarg::Int target,
                  pyarg::Int count, pyarg::Int line_start, pyarg::Int line_dir, pyarg::Int line_len, pyarg::Int window,
                  pyarg::Int context, pyarg::Int option) {
  using pyarg::in_range;
  Move m = make_move((uint8_t)parse_enum(type, MOVE_TYPE_NAMES, NUM_MOVE_TYPES, "move type"),
                     (uint8_t)in_range(player, 1, MAX_PLAYERS, "player"));
  m.from = (int16_t)in_range(from, -1, MAX_CELLS - 1, "from_cell");
  m.to = (int16_t)in_range(to, -1, MAX_CELLS - 1, "to");
  m.target = (int16_t)in_range(target, -1, MAX_CELLS - 1, "target");
  m.count = (uint8_t)in_range(count, 0, 255, "count");
  m.line_start = (int16_t)in_range(line_start, -1, MAX_CELLS - 1, "line_start");
  m.line_dir = (uint8_t)in_range(line_dir, 0, MAX_DIRS - 1, "line_dir");
  m.line_len = (uint8_t)in_range(line_len, 0, 255, "line_len");
  m.window = window.v == -1 ? WINDOW_ALL : (uint8_t)in_range(window, -1, WINDOW_ALL - 1, "window");
  m.context = (uint8_t)in_range(context, 0, pyarg::MOVE_MAX_CONTEXT, "context");
  m.option = (uint8_t)in_range(option, 0, pyarg::MOVE_MAX_OPTION, "option");
  pyarg::move_fields(m);
  return m;
}

// Policy names in Policy order (selfplay/policy.h); Python takes its list from here (_core.POLICIES).
const std::vector<std::string> POLICY_NAMES = {"random", "heuristic"};

uint8_t parse_policy(const std::string& policy) {
  for (size_t i = 0; i < POLICY_NAMES.size(); i++)
    if (policy == POLICY_NAMES[i]) return (uint8_t)i;
  std::string names;
  for (const std::string& n : POLICY_NAMES) names += (names.empty() ? "" : " or ") + n;
  throw py::value_error("unknown policy '" + policy + "' (expected " + names + ")");
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a((py::ssize_t)v.size());
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

// Set by cancel_selfplay() (e.g. on Ctrl-C): running batches stop before their next game and
// report themselves cancelled; their games must not be stored.
std::atomic<bool> g_cancel_selfplay{false};

// Batched self-play on a pool of native threads, GIL released. Returns flat numpy arrays:
// per game (index, result, offsets into the per-step arrays) and per step (16-byte move
// records, hash, phase and player after the move).
// Arguments shared by the self-play entry points, checked.
struct SelfplayArgs {
  int num_players, threads, max_moves;
  uint64_t seed;
  std::vector<int64_t> games;
  SelfplayArgs(pyarg::Int np, py::handle seed_, const py::iterable& games_, pyarg::Int threads_, pyarg::Int max_moves_) {
    if (np.v < 2 || np.v > MAX_PLAYERS) throw py::value_error("num_players must be 2, 3 or 4");
    num_players = (int)np.v;
    seed = pyarg::u64(seed_, "seed");
    threads = (int)pyarg::in_range(threads_, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    max_moves = (int)pyarg::in_range(max_moves_, 1, pyarg::MAX_MOVE_COUNT, "max_moves");
    for (py::handle h : games_) {
      long long i = pyarg::int_value(h, "game index");
      games.push_back((int64_t)pyarg::in_range(i, 0, (long long)1 << 62, "game index"));
    }
  }
};

py::dict selfplay_batch(const std::string& board, pyarg::Int num_players_, py::object seed_, py::iterable games_,
                        const std::string& policy, pyarg::Int threads_, pyarg::Int max_moves_, bool record) {
  SelfplayArgs args(num_players_, seed_, games_, threads_, max_moves_);
  std::vector<int64_t>& games = args.games;
  BatchOptions opt;
  opt.board = parse_board(board);
  opt.num_players = args.num_players;
  opt.seed = args.seed;
  opt.policy = parse_policy(policy);
  opt.threads = args.threads;
  opt.max_moves = args.max_moves;
  opt.record = record;
  opt.cancel = &g_cancel_selfplay;
  std::vector<GameRecord> out(games.size());
  double wall;
  {
    py::gil_scoped_release release;
    auto t0 = std::chrono::steady_clock::now();
    run_batch(opt, games, out);
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  size_t G = out.size(), M = 0;
  for (auto& r : out) M += r.moves.size();
  std::vector<int64_t> index(G), offsets(G + 1, 0);
  std::vector<int32_t> move_count(G);
  std::vector<uint8_t> winner(G), reason(G), capped(G);
  std::vector<double> seconds(G);
  py::array_t<uint8_t> moves({(py::ssize_t)M, (py::ssize_t)sizeof(Move)});
  py::array_t<uint64_t> hashes((py::ssize_t)M);
  py::array_t<uint8_t> phases((py::ssize_t)M), players((py::ssize_t)M);
  uint8_t* mv = moves.mutable_data();
  uint64_t* hs = hashes.mutable_data();
  uint8_t* ph = phases.mutable_data();
  uint8_t* pl = players.mutable_data();
  size_t at = 0;
  long long total_moves = 0;
  for (size_t i = 0; i < G; i++) {
    const GameRecord& r = out[i];
    index[i] = r.index;
    move_count[i] = r.move_count;
    total_moves += r.move_count;
    winner[i] = r.winner;
    reason[i] = r.reason;
    capped[i] = r.capped;
    seconds[i] = r.seconds;
    size_t n = r.moves.size();
    if (n) {
      std::memcpy(mv + at * sizeof(Move), r.moves.data(), n * sizeof(Move));
      std::memcpy(hs + at, r.hashes.data(), n * sizeof(uint64_t));
      std::memcpy(ph + at, r.phases.data(), n);
      std::memcpy(pl + at, r.players.data(), n);
    }
    at += n;
    offsets[i + 1] = (int64_t)at;
  }
  py::dict d;
  d["game_index"] = to_array(index);
  d["move_offsets"] = to_array(offsets);
  d["move_count"] = to_array(move_count);
  d["winner"] = to_array(winner);
  d["reason"] = to_array(reason);
  d["capped"] = to_array(capped);
  d["seconds"] = to_array(seconds);
  d["moves"] = moves;
  d["hashes"] = hashes;
  d["phases"] = phases;
  d["players"] = players;
  d["wall_seconds"] = wall;
  d["total_moves"] = total_moves;
  d["threads"] = std::min<int>(resolve_threads(args.threads), (int)std::max<size_t>(G, 1));
  d["cancelled"] = g_cancel_selfplay.load();
  return d;
}

Move move_from_record(py::bytes b) {
  std::string raw = b;
  if (raw.size() != sizeof(Move))
    throw py::value_error("a move record is " + std::to_string(sizeof(Move)) + " bytes, got " +
                          std::to_string(raw.size()));
  Move m;
  std::memcpy(&m, raw.data(), sizeof(Move));
  if (m.type >= NUM_MOVE_TYPES) throw py::value_error("move record has unknown type " + std::to_string(m.type));
  pyarg::move_fields(m);
  return m;
}

// Replay recorded moves from the initial position, checking each against the legal surface
// and the recorded hash. Returns (-1, "") when all match, else (step, what differed).
py::tuple replay_verify(Game& game, py::array_t<uint8_t, py::array::c_style> moves,
                        py::array_t<uint64_t, py::array::c_style> hashes) {
  if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
    throw py::value_error("moves must have shape (N, 16)");
  if (hashes.ndim() != 1 || hashes.shape(0) != moves.shape(0))
    throw py::value_error("hashes must have one entry per move");
  py::ssize_t n = moves.shape(0);
  const uint8_t* mv = moves.data();
  const uint64_t* hs = hashes.data();
  int bad = -1;
  int code = 0;
  uint64_t got = 0;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; i++) {
      Move m;
      std::memcpy(&m, mv + i * sizeof(Move), sizeof(Move));
      code = game.apply(m);
      if (code) {
        bad = (int)i;
        break;
      }
      got = state_hash(game.geo(), game.st());
      if (got != hs[i]) {
        bad = (int)i;
        break;
      }
    }
  }
  if (bad < 0) return py::make_tuple(-1, "");
  if (code) {
    static const char* errors[] = {"ok", "the game is over", "wrong player", "move type not allowed in this phase",
                                   "not in the legal-move list", "the reference engine rejects this listed move"};
    return py::make_tuple(bad, std::string("move rejected: ") + errors[code]);
  }
  char buf[96];
  snprintf(buf, sizeof(buf), "hash %016llx, recorded %016llx", (unsigned long long)got,
           (unsigned long long)hs[bad]);
  return py::make_tuple(bad, std::string(buf));
}

// Host twin of the CUDA kernel: the same play_slot, one slot after another, into the same
// fixed-capacity buffers. CI compares it with the thread-pool runner; a GPU run compares the
// kernel's buffers with it.
py::dict selfplay_slots_host(const std::string& board, pyarg::Int num_players_, py::object seed_,
                             py::iterable games_, const std::string& policy, pyarg::Int max_moves_) {
  SelfplayArgs args(num_players_, seed_, games_, pyarg::Int{1}, max_moves_);
  const int num_players = args.num_players, max_moves = args.max_moves;
  const uint64_t seed = args.seed;
  const std::vector<int64_t>& games = args.games;
  const Geometry& g = host_geometry(parse_board(board));
  uint8_t pol = parse_policy(policy);
  py::ssize_t G = (py::ssize_t)games.size(), cap = (py::ssize_t)G * max_moves;
  py::array_t<uint8_t> moves({cap, (py::ssize_t)sizeof(Move)});
  py::array_t<uint64_t> hashes(cap);
  py::array_t<uint8_t> phases(cap), players(cap), winner(G), reason(G), capped(G);
  py::array_t<int32_t> move_count(G);
  SlotBuffers out{(Move*)moves.mutable_data(), hashes.mutable_data(), phases.mutable_data(), players.mutable_data(),
                  move_count.mutable_data(), winner.mutable_data(), reason.mutable_data(), capped.mutable_data()};
  {
    py::gil_scoped_release release;
    auto s = std::make_unique<State>();
    auto sc = std::make_unique<Scratch>();
    for (py::ssize_t i = 0; i < G; i++) play_slot(g, *s, *sc, seed, games[i], num_players, pol, max_moves, out, (int)i);
  }
  py::dict d;
  d["moves"] = moves;
  d["hashes"] = hashes;
  d["phases"] = phases;
  d["players"] = players;
  d["move_count"] = move_count;
  d["winner"] = winner;
  d["reason"] = reason;
  d["capped"] = capped;
  d["max_moves"] = max_moves;
  return d;
}

// ---- batch environment: host twin of env_kernel.cu over caller-owned numpy arrays -------------
// python/ringrift/selfplay/batch_env.py allocates every array (numpy here, cupy on a GPU) and
// passes it in; these functions check each array's dtype, size and layout, then run the same
// per-slot code as the kernels with the GIL released. Nothing is copied.

const EnvTables& env_tables_of(BoardType b) {
  static const struct All {
    std::unique_ptr<EnvTables> t[NUM_BOARDS];
    All() {
      for (int i = 0; i < NUM_BOARDS; i++) {
        t[i] = std::make_unique<EnvTables>();
        t[i]->geo = host_geometry((BoardType)i);
        t[i]->space = exportpy::action_space_of((BoardType)i);  // the export's tables, as they are
        t[i]->grid = exportpy::feature_grid_of((BoardType)i);
      }
    }
  } all;
  return *all.t[b];
}

// A caller-owned array as T*, after checking that it is what the kernels expect.
template <class T>
T* env_array(const py::object& obj, py::ssize_t elems, const char* name, bool writable = true) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": array must be C-contiguous");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  if (a.size() != elems)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(elems) + " elements, got " +
                          std::to_string(a.size()));
  return static_cast<T*>(a.mutable_data());
}

EnvInfo env_info(const py::dict& info, int n) {
  auto get = [&](const char* key) -> py::object {
    if (!info.contains(key)) throw py::key_error(std::string("info is missing '") + key + "'");
    return info[key];
  };
  return EnvInfo{env_array<uint8_t>(get("current"), n, "info['current']"),
                 env_array<uint8_t>(get("phase"), n, "info['phase']"),
                 env_array<uint8_t>(get("done"), n, "info['done']"),
                 env_array<uint8_t>(get("winner"), n, "info['winner']"),
                 env_array<uint8_t>(get("reason"), n, "info['reason']"),
                 env_array<int32_t>(get("move_count"), n, "info['move_count']"),
                 env_array<int32_t>(get("num_actions"), n, "info['num_actions']"),
                 env_array<float>(get("values"), (py::ssize_t)n * MAX_PLAYERS, "info['values']")};
}

// Run fn(begin, end, scratch) over [0, n) split across `threads` native threads (0 = all cores),
// each with its own scratch; small batches stay on one thread.
template <class F>
void env_parallel(int n, int threads, F fn) {
  int t = std::max(1, std::min(resolve_threads(threads), (n + 31) / 32));
  std::vector<std::unique_ptr<EnvHostScratch>> scratch(t);
  for (auto& w : scratch) w.reset(new EnvHostScratch);  // default-init: no 137 KB memset per call
  if (t == 1) {
    fn(0, n, *scratch[0]);
    return;
  }
  std::vector<std::thread> pool;
  for (int k = 0; k < t; k++)
    pool.emplace_back([&, k] { fn((int)((int64_t)n * k / t), (int)((int64_t)n * (k + 1) / t), *scratch[k]); });
  for (auto& th : pool) th.join();
}

// The number of games of a batch, from one of its per-game arrays.
int env_count(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy array");
  return (int)pyarg::in_range((long long)py::reinterpret_borrow<py::array>(obj).size(), 0, INT32_MAX / (long long)sizeof(State),
                              std::string(name) + " size");
}

State* env_states(const py::object& states, int n) {
  return (State*)env_array<uint8_t>(states, (py::ssize_t)n * (py::ssize_t)sizeof(State), "states");
}

void register_env(py::module_& mod) {
  mod.attr("ENV_ERRORS") = py::cast(std::vector<std::string>{
      "ok", "the game is over (pass -1 to leave a finished slot alone)", "not an index of the action space",
      "not a playable move in this state (its mask bit is 0)", "the state has more legal moves than MAX_MOVES (or a surface the env cannot read)"});
  mod.attr("ENV_MAX_ACTIONS") = ENV_MAX_ACTIONS;
  mod.def("env_tables", [](const std::string& board) {
    const EnvTables& t = env_tables_of(parse_board(board));
    return py::bytes((const char*)&t, sizeof(EnvTables));
  }, py::arg("board"), "Geometry, action space and feature grid of a board as raw bytes (copied to the GPU as is).");
  mod.def("env_reset_host", [](const std::string& board, py::object states, py::object reset, pyarg::Int np_arg,
                               py::dict info) {
    const int num_players = (int)pyarg::in_range(np_arg, 2, MAX_PLAYERS, "num_players");
    const EnvTables& t = env_tables_of(parse_board(board));
    int n = env_count(reset, "reset");
    State* s = env_states(states, n);
    const uint8_t* r = env_array<uint8_t>(reset, n, "reset", false);
    EnvInfo o = env_info(info, n);
    py::gil_scoped_release release;
    env_reset_host(t, s, r, 0, n, num_players, o);
  }, py::arg("board"), py::arg("states"), py::arg("reset"), py::arg("num_players"), py::arg("info"));
  mod.def("env_observe_host", [](const std::string& board, py::object states, py::object only, py::object mask,
                                 py::object actions, py::object planes, py::object globals, py::dict info,
                                 pyarg::Int threads_arg) {
    const int threads = (int)pyarg::in_range(threads_arg, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    const EnvTables& t = env_tables_of(parse_board(board));
    if (!info.contains("done")) throw py::key_error("info is missing 'done'");
    int n = env_count(info["done"], "info['done']");
    State* s = env_states(states, n);
    const uint8_t* sel = env_array<uint8_t>(only, n, "only", false);
    uint8_t* m = env_array<uint8_t>(mask, (py::ssize_t)n * t.space.size(), "mask");
    int32_t* acts = env_array<int32_t>(actions, (py::ssize_t)n * ENV_MAX_ACTIONS, "actions");
    float *p = nullptr, *gl = nullptr;
    if (!planes.is_none()) {
      p = env_array<float>(planes, (py::ssize_t)n * FEAT_PLANES * t.grid.h * t.grid.w, "planes");
      gl = env_array<float>(globals, (py::ssize_t)n * FEAT_GLOBALS, "globals");
    }
    EnvInfo o = env_info(info, n);
    py::gil_scoped_release release;
    env_parallel(n, threads, [&](int b, int e, EnvHostScratch& w) {
      env_observe_host(t, s, w, b, e, sel, m, acts, p, gl, o);
    });
  }, py::arg("board"), py::arg("states"), py::arg("only"), py::arg("mask"), py::arg("actions"), py::arg("planes"),
     py::arg("globals"), py::arg("info"), py::arg("threads") = 1);
  mod.def("env_decode_host", [](const std::string& board, py::object states, py::object actions, py::object chosen,
                                py::object error, pyarg::Int threads_arg) {
    const int threads = (int)pyarg::in_range(threads_arg, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    const EnvTables& t = env_tables_of(parse_board(board));
    int n = env_count(actions, "actions");
    State* s = env_states(states, n);
    const int32_t* a = env_array<int32_t>(actions, n, "actions", false);
    Move* c = (Move*)env_array<uint8_t>(chosen, (py::ssize_t)n * (py::ssize_t)sizeof(Move), "chosen");
    uint8_t* e = env_array<uint8_t>(error, n, "error");
    py::gil_scoped_release release;
    env_parallel(n, threads, [&](int b, int end, EnvHostScratch& w) { env_decode_host(t, s, w, a, b, end, c, e); });
  }, py::arg("board"), py::arg("states"), py::arg("actions"), py::arg("chosen"), py::arg("error"),
     py::arg("threads") = 1);
  mod.def("env_apply_host", [](const std::string& board, py::object states, py::object actions, py::object chosen,
                               py::dict info, pyarg::Int threads_arg) {
    const int threads = (int)pyarg::in_range(threads_arg, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    const EnvTables& t = env_tables_of(parse_board(board));
    int n = env_count(actions, "actions");
    State* s = env_states(states, n);
    const int32_t* a = env_array<int32_t>(actions, n, "actions", false);
    const Move* c = (const Move*)env_array<uint8_t>(chosen, (py::ssize_t)n * (py::ssize_t)sizeof(Move), "chosen", false);
    EnvInfo o = env_info(info, n);
    py::gil_scoped_release release;
    env_parallel(n, threads, [&](int b, int e, EnvHostScratch& w) { env_apply_host(t, s, w, a, c, b, e, o); });
  }, py::arg("board"), py::arg("states"), py::arg("actions"), py::arg("chosen"), py::arg("info"),
     py::arg("threads") = 1);
  mod.def("env_hash_host", [](const std::string& board, py::object states, pyarg::Int n_arg) {
    const int n = (int)pyarg::in_range(n_arg, 0, INT32_MAX / (long long)sizeof(State), "n");
    const EnvTables& t = env_tables_of(parse_board(board));
    const State* s = env_states(states, n);
    py::array_t<uint64_t> out(n);
    uint64_t* o = out.mutable_data();
    for (int i = 0; i < n; i++) o[i] = state_hash(t.geo, s[i]);
    return out;
  }, py::arg("board"), py::arg("states"), py::arg("n"));
  mod.def("load_state_bytes", [](Game& game, py::bytes raw) {
    std::string b = raw;
    if (b.size() != sizeof(State))
      throw py::value_error("expected " + std::to_string(sizeof(State)) + " bytes of State, got " + std::to_string(b.size()));
    std::unique_ptr<State> s(new State);
    std::memcpy(s.get(), b.data(), sizeof(State));
    if (s->board != game.geo().board || s->num_players < 2 || s->num_players > MAX_PLAYERS)
      throw py::value_error("the State bytes are not a game of this board (board or player count out of range)");
    const std::string why = pyarg::state_problem(game.geo(), *s);
    if (!why.empty()) throw py::value_error("the State bytes are not a consistent state: " + why);
    game.st() = *s;
  }, py::arg("game"), py::arg("state"),
     "Copy one batch slot's State bytes (same board) into `game`; ValueError unless they are a consistent state.");
  mod.def("state_bytes", [](Game& game) { return py::bytes((const char*)&game.st(), sizeof(State)); },
          py::arg("game"), "The game's State as raw bytes (the layout of a batch slot).");
  mod.def("state_problem", [](Game& game) { return pyarg::state_problem(game.geo(), game.st()); }, py::arg("game"),
          "What is structurally wrong with the game's state, or an empty string (a consistency check for tests).");
}

}  // namespace

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "RingRift rules core (C++), shared by CPU and CUDA builds";
  mod.attr("MOVE_TYPES") = py::cast(std::vector<std::string>(MOVE_TYPE_NAMES, MOVE_TYPE_NAMES + NUM_MOVE_TYPES));
  mod.attr("PHASES") = py::cast(std::vector<std::string>(PHASE_NAMES, PHASE_NAMES + NUM_PHASES));
  std::vector<std::string> boards;
  for (int b = 0; b < NUM_BOARDS; b++) boards.push_back(board_name(b));
  mod.attr("BOARDS") = py::cast(boards);
  mod.attr("POLICIES") = py::cast(POLICY_NAMES);
  mod.attr("MAX_MOVES") = MAX_MOVES;
  mod.attr("APPLY_ERRORS") = py::cast(std::vector<std::string>{
      "ok", "the game is over", "wrong player", "move type not allowed in this phase",
      "not in the legal-move list", "the reference engine rejects this listed move"});

  mod.attr("MOVE_RECORD_SIZE") = (int)sizeof(Move);
  mod.attr("REASONS") = py::cast(std::vector<std::string>(REASON_NAMES, REASON_NAMES + 7));
  mod.def("hardware_threads", []() { return resolve_threads(0); });
  mod.def("selfplay_batch", &selfplay_batch, py::arg("board"), py::arg("num_players"), py::arg("seed"),
          py::arg("games"), py::arg("policy") = "random", py::arg("threads") = 0, py::arg("max_moves") = 2000,
          py::arg("record") = true,
          "Play the given game indices of run `seed` on a native thread pool (GIL released).");
  mod.def("cancel_selfplay", [](bool on) { g_cancel_selfplay = on; }, py::arg("on") = true,
          "Ask running self-play batches to stop before their next game (cancel_selfplay(False) re-arms).");
  mod.def("selfplay_slots_host", &selfplay_slots_host, py::arg("board"), py::arg("num_players"), py::arg("seed"),
          py::arg("games"), py::arg("policy") = "random", py::arg("max_moves") = 2000,
          "Host twin of the CUDA self-play kernel (same play_slot code, fixed-capacity buffers).");
  mod.def("geometry_bytes", [](const std::string& board) {
    const Geometry& g = host_geometry(parse_board(board));
    return py::bytes((const char*)&g, sizeof(Geometry));
  }, py::arg("board"), "The board's geometry tables as raw bytes (copied to the GPU as is).");
  mod.def("struct_sizes", []() {
    py::dict d;
    d["Geometry"] = sizeof(Geometry);
    d["State"] = sizeof(State);
    d["Scratch"] = sizeof(Scratch);
    d["MoveList"] = sizeof(MoveList);
    d["Move"] = sizeof(Move);
    return d;
  }, "sizeof of the structs a GPU batch allocates per game (host layout = device layout).");
  mod.def("struct_layout", []() {
    py::dict d;
#define RR_LAYOUT_ENTRY(NAME, EXPR) d[#NAME] = (size_t)(EXPR);
    RR_LAYOUT_FIELDS(RR_LAYOUT_ENTRY)
#undef RR_LAYOUT_ENTRY
    return d;
  }, "This build's size and alignment of every struct shared with the GPU kernels (selfplay/layout.h).");
  mod.def("move_from_record", &move_from_record, py::arg("record"), "Decode a 16-byte move record.");
  mod.def("replay_verify", &replay_verify, py::arg("game"), py::arg("moves"), py::arg("hashes"),
          "Apply recorded moves to `game`, checking legality and each hash; returns (step or -1, why).");

  py::class_<Move>(mod, "Move")
      .def(py::init(&make_py_move), py::arg("type"), py::arg("player"), py::arg("from_cell") = -1,
           py::arg("to") = -1, py::arg("target") = -1, py::arg("count") = 0, py::arg("line_start") = -1,
           py::arg("line_dir") = 0, py::arg("line_len") = 0, py::arg("window") = -1, py::arg("context") = 0,
           py::arg("option") = 0)
      .def_property_readonly("type", [](const Move& m) { return std::string(MOVE_TYPE_NAMES[m.type]); })
      .def_property_readonly("type_id", [](const Move& m) { return (int)m.type; })
      .def_readonly("player", &Move::player)
      .def_property_readonly("from_cell", [](const Move& m) { return cell_or_none(m.from); })
      .def_property_readonly("to", [](const Move& m) { return cell_or_none(m.to); })
      .def_property_readonly("target", [](const Move& m) { return cell_or_none(m.target); })
      .def_readonly("count", &Move::count)
      .def_property_readonly("line_start", [](const Move& m) { return cell_or_none(m.line_start); })
      .def_readonly("line_dir", &Move::line_dir)
      .def_readonly("line_len", &Move::line_len)
      .def_property_readonly("window", [](const Move& m) { return m.window == WINDOW_ALL ? -1 : (int)m.window; })
      .def_readonly("context", &Move::context)
      .def_readonly("option", &Move::option)
      .def("to_record", [](const Move& m) { return py::bytes((const char*)&m, sizeof(Move)); },
           "The 16-byte little-endian record stored in game databases.")
      .def("__eq__", [](const Move& a, const Move& b) { return same_move(a, b); })
      .def("__hash__", [](const Move& m) {
        return py::hash(py::make_tuple(m.type, m.player, m.from, m.to, m.target, m.count, m.line_start, m.line_dir,
                                       m.line_len, m.window, m.context, m.option));
      });

  py::class_<Game>(mod, "Game")
      .def(py::init<const std::string&, pyarg::Int, bool>(), py::arg("board"), py::arg("num_players"),
           py::arg("swap_rule") = false)
      .def(py::init<const Game&>(), py::arg("other"))
      .def_property_readonly("board", [](Game& g) { return std::string(board_name(g.geo().board)); })
      .def_property_readonly("num_players", [](Game& g) { return (int)g.st().num_players; })
      .def_property_readonly("num_cells", [](Game& g) { return (int)g.geo().num_cells; })
      .def_property_readonly("swap_rule", [](Game& g) { return (bool)g.st().swap_rule; })
      .def_property_readonly("phase", [](Game& g) { return std::string(PHASE_NAMES[g.st().phase]); })
      .def_property_readonly("current_player", [](Game& g) { return (int)g.st().current; })
      .def_property_readonly("status", [](Game& g) {
        return std::string(g.st().status == ST_ACTIVE ? "active" : "completed");
      })
      .def_property_readonly("winner", [](Game& g) -> py::object {
        return g.st().winner ? py::object(py::int_(g.st().winner)) : py::object(py::none());
      })
      .def_property_readonly("victory_reason", [](Game& g) -> py::object {
        return g.st().reason ? py::object(py::str(REASON_NAMES[g.st().reason])) : py::object(py::none());
      })
      .def_property_readonly("move_count", [](Game& g) { return g.st().move_count; })
      .def_property_readonly("pending_line_elimination", [](Game& g) { return (bool)g.st().pending_line; })
      .def_property_readonly("pending_territory_elimination", [](Game& g) { return (bool)g.st().pending_territory; })
      .def_property_readonly("must_move_from", [](Game& g) { return cell_or_none(g.st().must_move); })
      .def_property_readonly("chain_capture_position", [](Game& g) { return cell_or_none(g.st().chain_pos); })
      .def_property_readonly("victory_threshold", [](Game& g) { return (int)g.st().victory_threshold; })
      .def_property_readonly("territory_minimum", [](Game& g) { return (int)g.st().territory_minimum; })
      .def_property_readonly("rings_per_player", [](Game& g) { return (int)g.st().rings_per_player; })
      .def("legal_moves", &Game::legal_moves, "The legal-move surface, in the reference's order.")
      .def("num_legal_moves", &Game::num_legal_moves)
      .def("_apply", &Game::apply, "Validated step; returns an error code (0 = ok), state unchanged on error.")
      .def("_apply_unchecked", &Game::apply_unchecked)
      .def("hash", &Game::hash_str, "The reference state hash (16 hex digits).")
      .def("fingerprint", &Game::fingerprint_str, "The string the reference hashes.")
      .def("players", [](Game& g) {
        py::list out;
        const State& s = g.st();
        for (int p = 1; p <= s.num_players; p++) {
          py::dict d;
          d["player"] = p;
          d["rings_in_hand"] = (int)s.hand[p];
          d["eliminated_rings"] = (int)s.elim[p];
          d["territory_spaces"] = (int)s.terr[p];
          d["rings_on_board"] = (int)s.board_rings[p];
          d["eliminated_by_colour"] = (int)s.elim_colour[p];
          d["stacks_controlled"] = (int)s.ctrl_stacks[p];
          d["markers"] = (int)s.marker_count[p];
          d["collapsed"] = (int)s.collapsed_count[p];
          out.append(d);
        }
        return out;
      })
      .def("stacks", [](Game& g) {
        std::vector<std::pair<int, std::vector<int>>> out;
        const State& s = g.st();
        for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) out.emplace_back(c, stack_rings(s, c));
        return out;
      }, "Stacks in insertion order as (cell, rings top-first).")
      .def("markers", [](Game& g) {
        std::vector<std::pair<int, int>> out;
        const State& s = g.st();
        for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) out.emplace_back(c, (int)s.marker[c]);
        return out;
      }, "Markers in insertion order as (cell, owner).")
      .def("collapsed", [](Game& g) {
        std::vector<std::pair<int, int>> out;
        const State& s = g.st();
        for (int c = 0; c < g.geo().num_cells; c++)
          if (s.collapsed[c]) out.emplace_back(c, (int)s.collapsed[c]);
        return out;
      }, "Collapsed cells as (cell, owner), in cell order.")
      .def("move_cells", &move_cells, py::arg("move"),
           "Cells a move names beyond from/to/target (line, collapse, region); ValueError if it does not fit the board.")
      .def("_load", &load_position)
      .def("_transient", &transient_fields)
      .def("_check_move", [](Game& g, const Move& m) { pyarg::move_on_board(g.geo(), g.st().num_players, m); },
           "ValueError unless the move's cells, line and window fit this game's board.")
      .def("cell_key", [](Game& g, pyarg::Int c) { return std::string(g.geo().key[pyarg::cell(g.geo(), c, "cell")]); },
           py::arg("cell"), "The reference's position key of a cell (\"x,y\" or \"x,y,z\"); ValueError off the board.")
      .def("cell_coords", [](Game& g, pyarg::Int c_arg) {
        const Geometry& geo = g.geo();
        const int c = pyarg::cell(geo, c_arg, "cell");
        return py::make_tuple((int)geo.cx[c], (int)geo.cy[c], (int)geo.cz[c]);
      }, py::arg("cell"), "(x, y, z) of a cell (z = 0 on square boards); ValueError off the board.")
      .def("cell_index", [](Game& g, pyarg::Int x, pyarg::Int y) {
        // Coordinates far outside any board are simply off it (the grid is at most 25 wide).
        if (x.v < -64 || x.v > 64 || y.v < -64 || y.v > 64) return -1;
        return cell_at(g.geo(), (int)x.v, (int)y.v);
      }, py::arg("x"), py::arg("y"), "Cell index of (x, y), or -1 when off the board.")
      .def("dir_between", [](Game& g, pyarg::Int a, pyarg::Int b) {
        const Geometry& geo = g.geo();
        return dir_between(geo, pyarg::cell(geo, a, "cell a"), pyarg::cell(geo, b, "cell b"));
      }, py::arg("a"), py::arg("b"), "Direction index of the straight ray from cell a to cell b, or -1.")
      .def("neighbour", [](Game& g, pyarg::Int c, pyarg::Int d) {
        const Geometry& geo = g.geo();
        return (int)geo.nbr[pyarg::cell(geo, c, "cell")][pyarg::dir(geo, d, "direction")];
      }, py::arg("cell"), py::arg("direction"), "The neighbour of a cell in a movement direction, or -1 off the board.");

  // NPZ export: action index space and feature encoding (csrc/export/).
  rr::exportpy::register_export<Game>(mod);
  // Batch environment host twin (selfplay/batch_env.h).
  register_env(mod);
}
