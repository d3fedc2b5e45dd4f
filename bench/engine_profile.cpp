// Engine-only random self-play driver for profiling (callgrind) and exactness checks.
// Plays games [0, N) of seed S with the CPU path (ListPicker, no records) and prints the move
// total and an FNV-1a digest of every chosen move and the final state hash of each game, so
// two builds of the engine can be compared for identical play as well as for cost.
//
//   g++ -O3 -std=c++17 -I csrc bench/engine_profile.cpp -o /tmp/engine_profile
//   /tmp/engine_profile square8 2 200 [seed] [policy: 0 random, 1 heuristic] [picker: list, stream]
// (stream: the GPU kernel's list-free picker, run on the host; it must give the same digest;
//  check: the list picker, which first lists every random decision's surface and requires each
//  move the count-based pickers draw by index, placement_move_at and movement_move_at, to be the
//  listed move of that index; it prints how many it compared, and exits 1 at the first mismatch)
//   valgrind --tool=callgrind /tmp/engine_profile square8 2 20
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
// The list picker, after comparing the index-drawn surfaces with the listed one (check mode).
struct CheckingPicker {
  rr::MoveList* l;
  long long* compared;
  static void require(bool ok, const char* what, int i) {
    if (ok) return;
    std::printf("mismatch: %s, index %d\n", what, i);
    std::exit(1);
  }
  bool operator()(const rr::Geometry& g, rr::State& s, rr::Scratch& sc, rr::Rng& rng, uint8_t policy,
                  rr::Move* m) const {
    if (policy == rr::POLICY_RANDOM && (rr::placement_indexable(s) || rr::movement_indexable(s))) {
      rr::legal_moves(g, s, sc, *l);
      auto same = [&](const rr::Move& a, int i) { return std::memcmp(&a, &l->m[i], sizeof a) == 0; };
      if (rr::placement_indexable(s)) {
        auto pi = std::make_unique<rr::PlacementIndex>();
        rr::placement_index(g, s, *pi);
        require(pi->n == l->n, "placement surface size", pi->n);
        for (int i = 0; i < pi->n; i++) require(same(rr::placement_move_at(g, s, *pi, i), i), "placement move", i);
        *compared += pi->n;
      } else {
        auto mi = std::make_unique<rr::MovementIndex>();
        if (rr::movement_index(g, s, *mi)) {
          require(mi->n == l->n, "movement surface size", mi->n);
          for (int i = 0; i < mi->n; i++) require(same(rr::movement_move_at(g, s, *mi, i), i), "movement move", i);
          *compared += mi->n;
        }
      }
    }
    return rr::ListPicker{l}(g, s, sc, rng, policy, m);
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
  const std::string picker = argc > 6 ? argv[6] : "list";
  if (picker != "list" && picker != "stream" && picker != "check") {
    std::fprintf(stderr, "unknown picker %s (list, stream, check)\n", picker.c_str());
    return 2;
  }
  const rr::Geometry& g = rr::host_geometry((rr::BoardType)board);
  auto s = std::make_unique<rr::State>();
  auto sc = std::make_unique<rr::Scratch>();
  auto l = std::make_unique<rr::MoveList>();
  rr::ListPicker pick{l.get()};
  long long compared = 0;
  CheckingPicker checking{l.get(), &compared};
  DigestRecorder rec;
  long long moves = 0;
  int capped = 0;
  std::clock_t t0 = std::clock();  // CPU time: the box is shared, so wall time is noisy
  for (long i = 0; i < games; i++) {
    bool done = picker == "stream"  ? rr::play_game(g, *s, *sc, rr::StreamPicker{}, seed, (uint64_t)i, players, policy, 100000, rec)
                : picker == "check" ? rr::play_game(g, *s, *sc, checking, seed, (uint64_t)i, players, policy, 100000, rec)
                                    : rr::play_game(g, *s, *sc, pick, seed, (uint64_t)i, players, policy, 100000, rec);
    if (!done) capped++;
    moves += s->move_count;
    rec.mix(rr::state_hash(g, *s));
    rec.mix(s->winner | (uint64_t)s->reason << 8);
  }
  double secs = double(std::clock() - t0) / CLOCKS_PER_SEC;
  std::printf("%s %dp games=%ld moves=%lld capped=%d digest=%016llx cpu_s=%.3f games/s=%.1f\n", argv[1], players,
              games, moves, capped, (unsigned long long)rec.h, secs, games / secs);
  if (picker == "check") std::printf("compared=%lld index-drawn moves with the listed surfaces\n", compared);
  return 0;
}
