// Single-game random playout driver: the building block of batched self-play and of the
// throughput benchmark. Game i of a run with seed S draws from its own stream seeded by (S, i),
// so any game can be regenerated alone.
#pragma once
#include "engine/engine.h"

namespace rr {

// splitmix64: tiny, fast, and good enough for move selection.
struct Rng {
  uint64_t state;
  RR_HD static Rng for_game(uint64_t seed, uint64_t index) {
    Rng r{seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull};
    r.next();
    return r;
  }
  RR_HD uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; bias is negligible for n < 2^16).
  RR_HD uint32_t below(uint32_t n) { return (uint32_t)(((next() >> 32) * (uint64_t)n) >> 32); }
};

// Pick a uniformly random legal move; moves the reference itself rejects (a few recovery
// slides, RULES.md 6.7) are redrawn so that games stay on the reference's path.
RR_HD inline int pick_random_move(const Geometry& g, State& s, const MoveList& l, Rng& rng) {
  for (int tries = 0; tries < 64; tries++) {
    int i = (int)rng.below((uint32_t)l.n);
    if (l.m[i].type != MT_RECOVERY_SLIDE || !recovery_slide_throws(g, s, l.m[i])) return i;
  }
  for (int i = 0; i < l.n; i++)
    if (l.m[i].type != MT_RECOVERY_SLIDE || !recovery_slide_throws(g, s, l.m[i])) return i;
  return -1;
}

// Play one game to the end or to max_moves. Returns false if the game was capped.
RR_HD inline bool random_playout(const Geometry& g, State& s, Scratch& sc, MoveList& l, Rng& rng, int max_moves) {
  while (s.status == ST_ACTIVE && s.move_count < max_moves) {
    legal_moves(g, s, sc, l);
    int i = l.n > 0 ? pick_random_move(g, s, l, rng) : -1;
    if (i < 0) return false;  // cannot happen in an active game; treated as capped
    step_unchecked(g, s, l.m[i], sc);
  }
  return s.status != ST_ACTIVE;
}

}  // namespace rr
