// The self-play move choice, over either form of the legal-move surface:
//   - a filled MoveList (the CPU thread pool: one generator pass per step), or
//   - the generator itself, re-run into small sinks (the GPU kernel: no 128 KB list per game).
// One chooser template serves both, so both pick the same move with the same RNG draws.
//
// random:    draw i = rng.below(n) up to 64 times until move i is one the reference accepts,
//            then fall back to the first accepted move in surface order.
// heuristic: best heuristic_score among accepted moves, ties reservoir-sampled in surface order.
#pragma once
#include "engine/move_sinks.h"
#include "selfplay/policy.h"

namespace rr {

// The heuristic choice as a generator sink. It judges each move while the generator is still
// running: heuristic_score only reads the state, and reference_rejects (recovery_slide_throws)
// restores the two markers it sets before it returns, so the generator carries on over the
// same state it would have had (its own marker probes are undone before every push).
struct BestMoveSink {
  int n;
  bool overflow;
  const Geometry* g;
  State* s;
  Rng* rng;
  int best;  // index of the chosen move, -1 while none
  int best_score, ties;
  Move m;
  RR_HD BestMoveSink(const Geometry& geo, State& st, Rng& r) : g(&geo), s(&st), rng(&r) { ml_clear(*this); }
  RR_HD friend void ml_clear(BestMoveSink& k) {
    k.n = 0;
    k.overflow = false;
    k.best = -1;
    k.best_score = k.ties = 0;
  }
  RR_HD friend void ml_push(BestMoveSink& k, const Move& mv) {
    int i = ml_take(k.n, k.overflow);
    if (i < 0) return;  // not on a MoveList either
    int score = heuristic_score(*k.g, *k.s, mv);
    if (k.best >= 0 && score < k.best_score) return;
    if (reference_rejects(*k.g, *k.s, mv)) return;
    if (k.best < 0 || score > k.best_score) {
      k.best = i;
      k.best_score = score;
      k.ties = 1;
      k.m = mv;
    } else if (k.rng->below((uint32_t)++k.ties) == 0) {
      k.best = i;  // reservoir sampling over equal scores
      k.m = mv;
    }
  }
};

// The first move in surface order that the reference accepts (the random policy's fallback).
struct FirstPlayableSink {
  int n;
  bool overflow;
  const Geometry* g;
  State* s;
  int found;  // its index, -1 while none
  Move m;
  RR_HD FirstPlayableSink(const Geometry& geo, State& st) : g(&geo), s(&st) { ml_clear(*this); }
  RR_HD friend void ml_clear(FirstPlayableSink& k) {
    k.n = 0;
    k.overflow = false;
    k.found = -1;
  }
  RR_HD friend void ml_push(FirstPlayableSink& k, const Move& mv) {
    int i = ml_take(k.n, k.overflow);
    if (i < 0 || k.found >= 0 || reference_rejects(*k.g, *k.s, mv)) return;
    k.found = i;
    k.m = mv;
  }
};

// One generator pass into a sink. Out of line on the device: the streaming chooser runs the
// generator into four sink types, and four inlined copies in one kernel measured 237
// registers and 8.4 KB of stack per thread (nvcc 13, sm_90) against 150 and 4.9 KB this way.
template <class Sink>
RR_HD RR_DEVICE_NOINLINE void generate_into(const Geometry& g, State& s, Scratch& sc, Sink& k) {
  legal_moves(g, s, sc, k);
}

// A surface held in a filled list.
struct ListSurface {
  const MoveList* l;
  RR_HD Move at(int i) const { return l->m[i]; }
  template <class Sink>
  RR_HD void run(Sink& k) const {
    ml_clear(k);
    for (int i = 0; i < l->n; i++) ml_push(k, l->m[i]);
  }
};

// A surface regenerated for every question; `first` comes from the counting pass.
struct StreamSurface {
  const Geometry* g;
  State* s;
  Scratch* sc;
  Move first;
  RR_HD Move at(int i) const {
    if (i == 0) return first;
    PickSink k;
    k.want = i;
    generate_into(*g, *s, *sc, k);
    return k.m;
  }
  template <class Sink>
  RR_HD void run(Sink& k) const {
    generate_into(*g, *s, *sc, k);
  }
};

// Index in surface order of the move `policy` picks (the move itself in *chosen), or -1 when
// the game must stop: nothing playable, or (streaming heuristic) the surface overflowed.
// `n` is the surface size; only the random policy reads it.
template <class Surface>
RR_HD inline int choose_in(const Surface& surf, int n, const Geometry& g, State& s, Rng& rng, uint8_t policy,
                           Move* chosen) {
  if (policy == POLICY_RANDOM) {
    if (n == 0) return -1;
    for (int tries = 0; tries < 64; tries++) {
      int i = (int)rng.below((uint32_t)n);
      Move m = surf.at(i);
      if (!reference_rejects(g, s, m)) {
        *chosen = m;
        return i;
      }
    }
    FirstPlayableSink f(g, s);
    surf.run(f);
    if (f.found >= 0) *chosen = f.m;
    return f.found;
  }
  BestMoveSink b(g, s, rng);
  surf.run(b);
  if (b.overflow || b.best < 0) return -1;
  *chosen = b.m;
  return b.best;
}

// The random policy on a ring-placement surface, from its size and the drawn index alone
// (placement_index): the same draw and the same move as choose_in over the listed surface,
// whose first draw always stands there (only recovery slides can be rejected). False when
// the surface is not one placement_index describes; the caller then lists it.
RR_HD inline bool choose_random_placement(const Geometry& g, const State& s, Rng& rng, Move* chosen) {
  if (!placement_indexable(s)) return false;
  PlacementIndex pi;
  placement_index(g, s, pi);
  int i = (int)rng.below((uint32_t)pi.n);
  *chosen = placement_move_at(g, s, pi, i);
  return true;
}

// The random policy on a movement surface, from its counts and the drawn index alone
// (movement_index): the same draw and the same move as choose_in over the listed surface, whose
// first draw always stands there (no recovery slides, the only moves the reference may reject).
// False when the surface is not one movement_index describes; the caller then lists it.
RR_HD inline bool choose_random_movement(const Geometry& g, const State& s, Rng& rng, Move* chosen) {
  if (!movement_indexable(s)) return false;
  MovementIndex mi;
  if (!movement_index(g, s, mi)) return false;
  int i = (int)rng.below((uint32_t)mi.n);
  *chosen = movement_move_at(g, s, mi, i);
  return true;
}

// Index of the chosen move in l, or -1 when nothing playable is listed.
RR_HD inline int choose_move(const Geometry& g, State& s, const MoveList& l, Rng& rng, uint8_t policy) {
  if (l.n == 0) return -1;
  Move m;
  return choose_in(ListSurface{&l}, l.n, g, s, rng, policy, &m);
}

// The same choice with no list: a counting pass first when the random policy needs the size,
// then one generator pass per question. False when the game must stop: the surface
// overflowed MAX_MOVES (where the list path stops too) or lists nothing playable.
RR_HD inline bool choose_move_streaming(const Geometry& g, State& s, Scratch& sc, Rng& rng, uint8_t policy,
                                        Move* chosen) {
  if (policy == POLICY_RANDOM && choose_random_placement(g, s, rng, chosen)) return true;
  StreamSurface surf{&g, &s, &sc, make_move(0, 0)};
  int n = 0;
  if (policy == POLICY_RANDOM) {
    CountSink c;
    generate_into(g, s, sc, c);
    if (c.overflow) return false;
    n = c.n;
    surf.first = c.first;
  }
  return choose_in(surf, n, g, s, rng, policy, chosen) >= 0;
}

}  // namespace rr
