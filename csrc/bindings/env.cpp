// ringrift._core, batch environment area (docs/batch_env.md).
#include "bindings/common.h"

namespace rr {
namespace bind {

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
    const int threads = pyarg::thread_count(threads_arg);
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
    const int threads = pyarg::thread_count(threads_arg);
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
    const int threads = pyarg::thread_count(threads_arg);
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
  // The built-in policies (random, heuristic) choosing a move in env slots, so an outside
  // policy can play against them in one BatchEnv (ringrift-eval). Each slot draws from its own
  // Rng state (`rng`, uint64 per slot, from env_rng_for_games), the same stream self-play uses.
  mod.def("env_rng_for_games", [](uint64_t seed, py::array_t<int64_t, py::array::c_style | py::array::forcecast> idx) {
    py::array_t<uint64_t> out(idx.size());
    for (py::ssize_t i = 0; i < idx.size(); i++) out.mutable_data()[i] = Rng::for_game(seed, (uint64_t)idx.data()[i]).state;
    return out;
  }, py::arg("seed"), py::arg("game_indices"), "The self-play Rng state of each game index of a run seed.");
  mod.def("env_choose_host", [](const std::string& board, py::object states, py::object only, const std::string& policy,
                                py::object rng, py::object chosen, py::object error, pyarg::Int threads_arg) {
    const int threads = pyarg::thread_count(threads_arg);
    const uint8_t pol = parse_policy(policy);
    const EnvTables& t = env_tables_of(parse_board(board));
    int n = env_count(only, "only");
    State* s = env_states(states, n);
    const uint8_t* sel = env_array<uint8_t>(only, n, "only", false);
    uint64_t* r = env_array<uint64_t>(rng, n, "rng");
    Move* c = (Move*)env_array<uint8_t>(chosen, (py::ssize_t)n * (py::ssize_t)sizeof(Move), "chosen");
    uint8_t* e = env_array<uint8_t>(error, n, "error");
    py::gil_scoped_release release;
    env_parallel(n, threads, [&](int b, int end, EnvHostScratch& w) {
      for (int i = b; i < end; i++) {
        e[i] = ENV_OK;
        if (!sel[i]) continue;
        if (s[i].status != ST_ACTIVE) { e[i] = ENV_GAME_OVER; continue; }
        Rng g{r[i]};
        if (!choose_move_streaming(t.geo, s[i], w.sc, g, pol, &c[i])) e[i] = ENV_LIST_OVERFLOW;
        r[i] = g.state;
      }
    });
  }, py::arg("board"), py::arg("states"), py::arg("only"), py::arg("policy"), py::arg("rng"), py::arg("chosen"),
     py::arg("error"), py::arg("threads") = 1,
     "Choose the move of `policy` (random / heuristic) in every slot where `only` is set; write it to `chosen`.");
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

}  // namespace bind
}  // namespace rr
