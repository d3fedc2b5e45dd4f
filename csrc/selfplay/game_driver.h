// Plays one self-play game with a policy, handing every step to a recorder. Host/device code:
// the CPU thread pool and the CUDA batch driver both call play_game.
#pragma once
#include "engine/engine.h"
#include "selfplay/policy.h"
#include "selfplay/rng.h"

namespace rr {

// A recorder that keeps nothing (engine-only throughput).
struct NullRecorder {
  RR_HD bool wants_hash() const { return false; }
  RR_HD void step(const Move&, uint64_t, uint8_t, uint8_t) {}
};

// Play game `index` of run `seed` from the initial position to the end or to max_moves.
// Returns true when the game finished, false when it was capped.
template <class Recorder>
RR_HD inline bool play_game(const Geometry& g, State& s, Scratch& sc, MoveList& l, uint64_t seed, uint64_t index,
                            int num_players, uint8_t policy, int max_moves, Recorder& rec) {
  init_state(s, g, num_players, false);
  Rng rng = Rng::for_game(seed, index);
  while (s.status == ST_ACTIVE && s.move_count < max_moves) {
    legal_moves(g, s, sc, l);
    if (l.overflow) return false;  // an incomplete surface would play a different game: stop it
    int i = choose_move(g, s, l, rng, policy);
    if (i < 0) return false;  // no playable move in an active game: cannot happen; counts as capped
    Move m = l.m[i];
    step_unchecked(g, s, m, sc);
    rec.step(m, rec.wants_hash() ? state_hash(g, s) : 0, s.phase, s.current);
  }
  return s.status != ST_ACTIVE;
}

}  // namespace rr
