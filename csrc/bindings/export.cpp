// ringrift._core.export: NPZ export core (layout and semantics: docs/npz_format.md).
#include "bindings/common.h"

namespace rr {
namespace exportpy {

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
                           pyarg::Int threads_arg, bool symmetries, py::object features_buffer) {
    const int threads = pyarg::thread_count(threads_arg);
    ExportJob J;
    J.board = board_arg(board);
    const GameBatch in(moves, game_offsets, num_players, hashes, verify, expect_over);
    const py::ssize_t G = in.G;
    J.moves = in.move_records();
    J.game_off = in.game_offsets();
    J.games = G;
    J.num_players = in.num_players.data();
    J.hashes = in.hashes;
    J.verify = in.verify;
    J.expect_over = in.expect_over;
    J.drop_forced = drop_forced;
    J.threads = threads > 0 ? threads : (int)std::max(1u, std::thread::hardware_concurrency());
    J.plan();
    const py::ssize_t N = (py::ssize_t)J.sample_off[G];
    const FeatureGrid& f = feature_grid_of(J.board);
    py::array_t<float> features = features_array(features_buffer, N, FEAT_PLANES, f.h, f.w);
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
     py::arg("features_buffer") = py::none(),
     "Replay games from move records and encode one sample per pre-move state (GIL released). With "
     "symmetries, policy_sym (N, S) holds each sample's policy index under every board symmetry. "
     "features_buffer: a float32 array reused for the features when it holds enough elements (the "
     "returned features are then a view of it, valid until the next call that uses it).");

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

  m.def("symmetric_action_indices", [](GameT& game, py::array_t<int32_t, py::array::c_style | py::array::forcecast> actions) {
    const Geometry& g = game.geo();
    const Symmetries& y = symmetries_of((BoardType)g.board);
    const ActionSpace& a = action_space_of((BoardType)g.board);
    if (actions.ndim() != 1) throw py::value_error("actions must be a one-dimensional int32 array");
    const py::ssize_t E = actions.shape(0);
    const std::vector<Move> moves = decode_actions(game, actions.data(), E);
    py::array_t<int32_t> out({E, (py::ssize_t)y.n});
    int32_t* o = out.mutable_data();
    std::unique_ptr<State> img(new State);
    std::unique_ptr<Scratch> sc(new Scratch);
    std::unique_ptr<MoveList> l(new MoveList());
    for (py::ssize_t e = 0; e < E; e++) {
      o[e * y.n] = actions.data()[e];  // symmetry 0 is the identity
      for (int t = 1; t < y.n; t++)
        o[e * y.n + t] = sym_action_index(g, a, y, t, game.st(), moves[(size_t)e], *img, *sc, *l);
    }
    return out;
  }, py::arg("game"), py::arg("actions"),
     "(E, symmetries) int32: each canonical action of the state (a search target's entries) under every board "
     "symmetry, as policy_indices_sym holds a played move's. ValueError for an action that is not legal here.");
}

}  // namespace exportpy
}  // namespace rr

namespace rr {
namespace bind {

void register_export(py::module_& mod) { exportpy::register_export<Game>(mod); }

}  // namespace bind
}  // namespace rr
