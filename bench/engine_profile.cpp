// Engine-only random self-play driver for profiling (callgrind) and exactness checks.
// Plays games [0, N) of seed S with the CPU path (ListPicker, no records) and prints the move
// total and an FNV-1a digest of every chosen move and the final state hash of each game, so
// two builds of the engine can be compared for identical play as well as for cost.
//
//   g++ -O3 -std=c++17 -I csrc bench/engine_profile.cpp -o /tmp/engine_profile
//   /tmp/engine_profile square8 2 200 [seed] [policy: 0 random, 1 heuristic] [picker: list, stream]
// (stream: the GPU kernel's list-free picker, run on the host; it must give the same digest)
//   valgrind --tool=callgrind /tmp/engine_profile square8 2 20
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "selfplay/game_driver.h"

namespace {
struct DigestRecorder {
  uint64_t h = 1469598103934665603ull;
  bool wants_hash() const { return false; }
  void mix(uint64_t v) {
    for (int i = 0; i < 8; i++) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  void step(const rr::Move& m, uint64_t, uint8_t phase, uint8_t player) {
    const unsigned char* b = reinterpret_cast<const unsigned char*>(&m);
    for (unsigned i = 0; i < sizeof(m); i++) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
    mix(phase | (uint64_t)player << 8);
  }
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s BOARD PLAYERS GAMES [SEED] [POLICY]\n", argv[0]);
    return 2;
  }
  int board = rr::board_from_name(argv[1]);
  if (board < 0) {
    std::fprintf(stderr, "unknown board %s\n", argv[1]);
    return 2;
  }
  int players = std::atoi(argv[2]);
  long games = std::atol(argv[3]);
  uint64_t seed = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1;
  uint8_t policy = argc > 5 ? (uint8_t)std::atoi(argv[5]) : rr::POLICY_RANDOM;
  bool stream = argc > 6 && std::string(argv[6]) == "stream";
  const rr::Geometry& g = rr::host_geometry((rr::BoardType)board);
  auto s = std::make_unique<rr::State>();
  auto sc = std::make_unique<rr::Scratch>();
  auto l = std::make_unique<rr::MoveList>();
  rr::ListPicker pick{l.get()};
  DigestRecorder rec;
  long long moves = 0;
  int capped = 0;
  std::clock_t t0 = std::clock();  // CPU time: the box is shared, so wall time is noisy
  for (long i = 0; i < games; i++) {
    bool done = stream ? rr::play_game(g, *s, *sc, rr::StreamPicker{}, seed, (uint64_t)i, players, policy, 100000, rec)
                       : rr::play_game(g, *s, *sc, pick, seed, (uint64_t)i, players, policy, 100000, rec);
    if (!done) capped++;
    moves += s->move_count;
    rec.mix(rr::state_hash(g, *s));
    rec.mix(s->winner | (uint64_t)s->reason << 8);
  }
  double secs = double(std::clock() - t0) / CLOCKS_PER_SEC;
  std::printf("%s %dp games=%ld moves=%lld capped=%d digest=%016llx cpu_s=%.3f games/s=%.1f\n", argv[1], players,
              games, moves, capped, (unsigned long long)rec.h, secs, games / secs);
  return 0;
}
