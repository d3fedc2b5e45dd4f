// Plays one self-play game with a policy, handing every step to a recorder. Host/device code:
// the CPU thread pool and the CUDA batch driver both call play_game.
#pragma once
#include "engine/engine.h"
#include "selfplay/move_choice.h"
#include "selfplay/rng.h"

namespace rr {

// A recorder that keeps nothing (engine-only throughput).
struct NullRecorder {
  RR_HD bool wants_hash() const { return false; }
  RR_HD void step(const Move&, uint64_t, uint8_t, uint8_t) {}
};

// How play_game gets each move, chosen at compile time. Both play the same game (same moves,
// same RNG draws, same stop on overflow); they differ in memory and passes per step.
// ListPicker: one generator pass into a MoveList (the CPU thread pool; 128 KB per thread).
struct ListPicker {
  MoveList* l;
  RR_HD bool operator()(const Geometry& g, State& s, Scratch& sc, Rng& rng, uint8_t policy, Move* m) const {
    if (policy == POLICY_RANDOM) {  // no list needed
      if (choose_random_placement(g, s, rng, m)) return true;
#if !defined(__CUDA_ARCH__)
      if (choose_random_movement(g, s, rng, m)) return true;  // (its counts are too big for a GPU thread)
#endif
    }
    legal_moves(g, s, sc, *l);
    if (l->overflow) return false;  // an incomplete surface would play a different game: stop it
    int i = choose_move(g, s, *l, rng, policy);
    if (i < 0) return false;  // no playable move in an active game: cannot happen; counts as capped
    *m = l->m[i];
    return true;
  }
};

// StreamPicker: no list; the generator runs again per question (the GPU kernel, where a list
// per game would be 128 KB of global memory).
struct StreamPicker {
  RR_HD bool operator()(const Geometry& g, State& s, Scratch& sc, Rng& rng, uint8_t policy, Move* m) const {
    return choose_move_streaming(g, s, sc, rng, policy, m);
  }
};

// The rules step, out of line on the device so that its local arrays (region and flood-fill
// buffers) share stack with the generator calls instead of adding to it.
RR_HD RR_DEVICE_NOINLINE inline void play_step(const Geometry& g, State& s, const Move& m, Scratch& sc) {
  step_unchecked(g, s, m, sc);
}

// Play game `index` of run `seed` from the initial position to the end or to max_moves.
// Returns true when the game finished, false when it was capped (or stopped by the picker).
template <class Picker, class Recorder>
RR_HD inline bool play_game(const Geometry& g, State& s, Scratch& sc, const Picker& pick, uint64_t seed,
                            uint64_t index, int num_players, uint8_t policy, int max_moves, Recorder& rec) {
  init_state(s, g, num_players, false);
  Rng rng = Rng::for_game(seed, index);
  const bool hashing = rec.wants_hash();
#if !defined(__CUDA_ARCH__)
  // The host keeps the cells hash's board part up to date from the cells each step touched;
  // a GPU thread has no room for the per-cell keys and recomputes it (the same value).
  CellHashTracker cells;
  if (hashing) cells.reset(g, s);
#endif
  while (s.status == ST_ACTIVE && s.move_count < max_moves) {
    Move m;
    if (!pick(g, s, sc, rng, policy, &m)) return false;
    play_step(g, s, m, sc);
    uint64_t h = 0;
    if (hashing) {
#if defined(__CUDA_ARCH__)
      h = cells_state_hash(g, s);
#else
      cells.update(g, s);
      h = cells_hash_with_board(s, cells.board);
#endif
    }
    rec.step(m, h, s.phase, s.current);
  }
  return s.status != ST_ACTIVE;
}

}  // namespace rr
