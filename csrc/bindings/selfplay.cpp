// ringrift._core, self-play area: batched self-play on native threads, its host twin of the CUDA
// kernel, and the struct layouts GPU workers check against.
#include "bindings/common.h"

namespace rr {
namespace bind {

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
    threads = pyarg::thread_count(threads_);
    max_moves = (int)pyarg::in_range(max_moves_, 1, pyarg::MAX_MOVE_COUNT, "max_moves");
    for (py::handle h : games_) {
      long long i = pyarg::int_value(h, "game index");
      // below 2^62, as the DB runner's index runs (db.cpp) and pipeline.ranges.MAX_GAMES
      games.push_back((int64_t)pyarg::in_range(i, 0, ((long long)1 << 62) - 1, "game index"));
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
  d["hash_kind"] = "cells64";  // cells_state_hash after every step (engine/fast_hash.h)
  d["phases"] = phases;
  d["players"] = players;
  d["wall_seconds"] = wall;
  d["total_moves"] = total_moves;
  d["threads"] = std::min<int>(resolve_threads(args.threads), (int)std::max<size_t>(G, 1));
  d["cancelled"] = g_cancel_selfplay.load();
  return d;
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
  d["hash_kind"] = "cells64";  // cells_state_hash after every step (engine/fast_hash.h)
  d["phases"] = phases;
  d["players"] = players;
  d["move_count"] = move_count;
  d["winner"] = winner;
  d["reason"] = reason;
  d["capped"] = capped;
  d["max_moves"] = max_moves;
  return d;
}

void register_selfplay(py::module_& mod) {
  mod.attr("POLICIES") = py::cast(POLICY_NAMES);
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
}

}  // namespace bind
}  // namespace rr
