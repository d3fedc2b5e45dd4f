// Net-free leaf evaluators for the Gumbel search (search/gumbel.h), host/device code: uniform
// priors and a value from
//   zero       0 for every seat (a "uniform net": only terminal states carry information);
//   heuristic  a static reading of the state's progress toward the victory conditions;
//   rollout    random playouts (the self-play `random` policy's draw) of up to rollout_moves
//              moves, then the outcome, or the heuristic value of where the playout stopped.
// They are the baseline for a network and what the tests search with.
#pragma once
#include "search/gumbel.h"
#include "selfplay/move_choice.h"

namespace rr {

enum LeafEval : uint8_t { LEAF_NET = 0, LEAF_ZERO = 1, LEAF_HEURISTIC = 2, LEAF_ROLLOUT = 3, NUM_LEAF_EVALS };

RR_HD inline float search_tanh(float x) { return tanhf(x); }

// Heuristic value by seat (index p - 1) of an active state. Each seat's progress is its best
// fraction of a victory condition (eliminated rings credited / the elimination threshold,
// collapsed cells / the territory minimum) plus a little for its share of the stacks it controls
// (mobility, last-player-standing); the value is tanh(2 * (own - mean of the others)), so it is
// zero-sum-ish and in (-1, 1). Over: the exact outcome.
RR_HD inline void heuristic_value(const State& s, float* out) {
  for (int p = 0; p < MAX_PLAYERS; p++) out[p] = 0.0f;
  const int n = s.num_players;
  if (s.status != ST_ACTIVE) {
    float v[MAX_PLAYERS + 1];
    outcome_values(s, v);
    for (int p = 1; p <= n; p++) out[p - 1] = v[p];
    return;
  }
  float prog[MAX_PLAYERS + 1];
  float total = 0.0f;
  for (int p = 1; p <= n; p++) {
    float e = safe_ratio(s.elim[p], s.victory_threshold);
    float c = safe_ratio(s.collapsed_count[p], s.territory_minimum);
    float st = safe_ratio(s.ctrl_stacks[p], s.num_stacks);
    float alive = player_has_any_rings(s, p) ? 0.0f : -1.0f;
    prog[p] = (e > c ? e : c) + 0.25f * st + alive;
    total += prog[p];
  }
  for (int p = 1; p <= n; p++) {
    float others = (total - prog[p]) / (float)(n - 1);
    out[p - 1] = search_tanh(2.0f * (prog[p] - others));
  }
}

// A random playout from `s` (changed in place) of at most max_moves moves, then its value.
RR_HD inline void rollout_value(const Geometry& g, State& s, SearchWork& w, Rng& rng, int max_moves, float* out) {
  for (int k = 0; k < max_moves && s.status == ST_ACTIVE; k++) {
    legal_moves(g, s, w.sc, w.list);
    if (w.list.overflow) break;
    int i = choose_move(g, s, w.list, rng, POLICY_RANDOM);
    if (i < 0) break;
    step_unchecked(g, s, w.list.m[i], w.sc);
  }
  heuristic_value(s, out);
}

// The net-free value of the leaf left in w.state by search_select.
RR_HD inline void netfree_leaf_value(const Geometry& g, SearchTree& t, SearchWork& w, uint8_t leaf_eval,
                                     int rollout_moves, float* out) {
  if (leaf_eval == LEAF_HEURISTIC) heuristic_value(w.state, out);
  else if (leaf_eval == LEAF_ROLLOUT) rollout_value(g, w.state, w, t.rng, rollout_moves, out);
  else
    for (int p = 0; p < MAX_PLAYERS; p++) out[p] = 0.0f;
}

// A whole net-free search of one tree (uniform priors): the same select / apply steps as the
// batched network path, one tree at a time.
RR_HD inline void search_run_netfree(const Geometry& g, const ActionSpace& as, SearchTree& t, const SearchParams& P,
                                     uint8_t leaf_eval, int rollout_moves, SearchWork& w) {
  float v[MAX_PLAYERS];
  for (;;) {
    uint8_t r = search_select(g, as, t, P, w);
    if (r == SEL_DONE) return;
    if (r != SEL_LEAF) continue;
    netfree_leaf_value(g, t, w, leaf_eval, rollout_moves, v);
    search_apply(t, P, nullptr, v);
  }
}

}  // namespace rr
