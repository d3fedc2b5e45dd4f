// CPU batch self-play: a pool of native threads plays a list of game indices. Each game is
// independent (own state, own RNG stream from (seed, index)), so results do not depend on the
// thread count or on scheduling. Host-only (std::thread); the rules are the shared core.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "selfplay/game_driver.h"

namespace rr {

struct GameRecord {
  int64_t index = 0;
  std::vector<Move> moves;
  std::vector<uint64_t> hashes;
  std::vector<uint8_t> phases;
  std::vector<uint8_t> players;
  int32_t move_count = 0;
  uint8_t winner = 0;
  uint8_t reason = 0;
  bool capped = false;
  double seconds = 0;
};

// Appends every step (move, hash, phase, player) to `out`'s per-step vectors: one game's
// GameRecord here, a whole chunk's flat arrays in selfplay/db_runner.h.
template <class Steps>
struct StepRecorder {
  Steps* out;
  bool wants_hash() const { return true; }
  void step(const Move& m, uint64_t h, uint8_t phase, uint8_t player) {
    out->moves.push_back(m);
    out->hashes.push_back(h);
    out->phases.push_back(phase);
    out->players.push_back(player);
  }
};

struct BatchOptions {
  BoardType board = SQUARE8;
  int num_players = 2;
  uint64_t seed = 0;
  uint8_t policy = POLICY_RANDOM;
  int threads = 0;  // 0: all hardware threads
  int max_moves = 2000;
  bool record = true;  // keep moves and per-step hashes (false: results only)
  const std::atomic<bool>* cancel = nullptr;  // when set, workers stop before their next game
};

// Joins the pool on every exit path, unwinding included: a joinable std::thread destroyed
// during unwinding would abort the process.
struct JoinAll {
  std::vector<std::thread>& pool;
  ~JoinAll() {
    for (auto& t : pool)
      if (t.joinable()) t.join();
  }
};

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? (int)hw : 1;
}

// Play games[i] for every i; out must have games.size() entries. `done` counts finished games.
inline void run_batch(const BatchOptions& opt, const std::vector<int64_t>& games, std::vector<GameRecord>& out,
                      std::atomic<int64_t>* done = nullptr) {
  const Geometry& g = host_geometry(opt.board);
  std::atomic<size_t> next{0};
  auto worker = [&]() {
    auto s = std::make_unique<State>();
    auto sc = std::make_unique<Scratch>();
    auto l = std::make_unique<MoveList>();  // the list path: one generator pass per step
    for (size_t i = next++; i < games.size(); i = next++) {
      if (opt.cancel && opt.cancel->load(std::memory_order_relaxed)) break;
      GameRecord& rec = out[i];
      rec.index = games[i];
      auto t0 = std::chrono::steady_clock::now();
      bool finished;
      if (opt.record) {
        rec.moves.reserve(256);
        rec.hashes.reserve(256);
        rec.phases.reserve(256);
        rec.players.reserve(256);
        StepRecorder<GameRecord> vr{&rec};
        finished = play_game(g, *s, *sc, ListPicker{l.get()}, opt.seed, (uint64_t)games[i], opt.num_players,
                             opt.policy, opt.max_moves, vr);
      } else {
        NullRecorder nr;
        finished = play_game(g, *s, *sc, ListPicker{l.get()}, opt.seed, (uint64_t)games[i], opt.num_players,
                             opt.policy, opt.max_moves, nr);
      }
      rec.capped = !finished;
      rec.move_count = s->move_count;
      rec.winner = s->winner;
      rec.reason = s->reason;
      rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (done) ++*done;
    }
  };
  int n = std::min<int>(resolve_threads(opt.threads), (int)std::max<size_t>(games.size(), 1));
  if (n <= 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  JoinAll join_all{pool};
  for (int t = 0; t < n; t++) pool.emplace_back(worker);
}

}  // namespace rr
