// Victory (RULES.md 7.2), the stalemate ladder, and last-player-standing by rounds (7.3).
#pragma once
#include "movement.h"

namespace rr {

struct Verdict {
  uint8_t winner;  // 0 = game goes on
  uint8_t reason;
};

RR_HD inline Verdict evaluate_victory(const Geometry& g, const State& s, uint8_t last_actor) {
  Verdict v = {0, VR_NONE};
  int np = s.num_players;
  // 1. ring elimination
  for (int p = 1; p <= np; p++)
    if (s.elim[p] >= s.victory_threshold) {
      v.winner = (uint8_t)p;
      v.reason = VR_RING_ELIMINATION;
      return v;
    }
  // 2. territory, counted from collapsed-cell owners
  int total = 0;
  for (int p = 1; p <= np; p++) total += s.collapsed_count[p];
  for (int p = 1; p <= np; p++) {
    int mine = s.collapsed_count[p];
    if (mine >= s.territory_minimum && mine > total - mine) {
      v.winner = (uint8_t)p;
      v.reason = VR_TERRITORY_CONTROL;
      return v;
    }
  }
  // 3. early last player standing: one stack controller, everyone else ringless
  int controllers = 0, sole = 0;
  for (int p = 1; p <= np; p++)
    if (s.ctrl_stacks[p] > 0) {
      controllers++;
      sole = p;
    }
  if (controllers == 1) {
    bool others_empty = true;
    for (int p = 1; p <= np; p++)
      if (p != sole && player_has_any_rings(s, p)) others_empty = false;
    if (others_empty) {
      v.winner = (uint8_t)sole;
      v.reason = VR_LAST_PLAYER_STANDING;
      return v;
    }
  }
  // 4. any stack left: not over
  if (s.num_stacks > 0) return v;
  // 5. bare board: can anyone with rings in hand still place?
  for (int p = 1; p <= np; p++) {
    if (s.hand[p] <= 0) continue;
    for (int c = 0; c < g.num_cells; c++) {
      if (s.collapsed[c] || s.marker[c]) continue;
      for (int d = 0; d < g.num_dirs; d++) {
        int nb = g.nbr[c][d];
        if (nb != NO_CELL && !s.collapsed[nb]) return v;
      }
    }
  }
  // Stalemate ladder; rings in hand count as eliminated for ranking.
  bool hand_counts = false;
  for (int p = 1; p <= np; p++)
    if (s.hand[p] > 0) hand_counts = true;
  int best, who, ties;
  // territory
  best = 0; who = 0; ties = 0;
  for (int p = 1; p <= np; p++) {
    int val = s.collapsed_count[p];
    if (val > best) { best = val; who = p; ties = 1; } else if (val == best && val > 0) ties++;
  }
  if (best > 0 && ties == 1) { v.winner = (uint8_t)who; v.reason = VR_TERRITORY_CONTROL; return v; }
  // eliminated rings (+ hand)
  best = 0; who = 0; ties = 0;
  for (int p = 1; p <= np; p++) {
    int val = s.elim[p] + (hand_counts ? s.hand[p] : 0);
    if (val > best) { best = val; who = p; ties = 1; } else if (val == best && val > 0) ties++;
  }
  if (best > 0 && ties == 1) { v.winner = (uint8_t)who; v.reason = VR_RING_ELIMINATION; return v; }
  // markers
  best = 0; who = 0; ties = 0;
  for (int p = 1; p <= np; p++) {
    int val = s.marker_count[p];
    if (val > best) { best = val; who = p; ties = 1; } else if (val == best && val > 0) ties++;
  }
  if (best > 0 && ties == 1) { v.winner = (uint8_t)who; v.reason = VR_LAST_PLAYER_STANDING; return v; }
  if (last_actor) { v.winner = last_actor; v.reason = VR_LAST_PLAYER_STANDING; return v; }
  v.winner = 1;
  v.reason = VR_TIEBREAKER;
  return v;
}

// Round-based last-player-standing update at a turn start; returns the winner or 0.
RR_HD inline uint8_t lps_turn_start(const Geometry& g, State& s) {
  LpsTracker& t = s.lps;
  unsigned active = 0;
  for (int p = 1; p <= s.num_players; p++)
    if (player_has_any_rings(s, p)) active |= 1u << p;
  if (!active) return 0;
  uint8_t cur = s.current;
  if (!(active & (1u << cur))) return 0;
  if (t.first_player == 0 || !(active & (1u << t.first_player))) {
    t.round_index++;
    t.first_player = cur;
    t.mask_set = t.mask_val = 0;
    t.exclusive_completed = 0;
    if (t.consecutive_player == 0 || !(active & (1u << t.consecutive_player))) {
      t.consecutive_rounds = 0;
      t.consecutive_player = 0;
    }
  } else if (cur == t.first_player && t.mask_set) {
    uint8_t exclusive = 0;
    int true_count = 0;
    for (int p = 1; p <= s.num_players; p++)
      if ((active & (1u << p)) && (t.mask_val & (1u << p))) {
        true_count++;
        exclusive = (uint8_t)p;
      }
    if (true_count != 1) exclusive = 0;
    t.exclusive_completed = exclusive;
    if (exclusive) {
      if (exclusive == t.consecutive_player) {
        t.consecutive_rounds++;
      } else {
        t.consecutive_player = exclusive;
        t.consecutive_rounds = 1;
      }
    } else {
      t.consecutive_rounds = 0;
      t.consecutive_player = 0;
    }
    t.round_index++;
    t.mask_set = t.mask_val = 0;
  }
  bool cur_real = player_has_real_action(g, s, cur, NO_CELL);
  t.mask_set |= (uint8_t)(1u << cur);
  if (cur_real) t.mask_val |= (uint8_t)(1u << cur); else t.mask_val &= (uint8_t)~(1u << cur);
  // Victory check.
  if (s.phase > PH_CHAIN_CAPTURE) return 0;
  if (t.consecutive_rounds < s.lps_rounds_required || cur != t.consecutive_player || !cur_real) return 0;
  for (int p = 1; p <= s.num_players; p++) {
    if (p == cur || !player_has_any_rings(s, p)) continue;
    if (player_has_real_action(g, s, (uint8_t)p, NO_CELL)) return 0;
  }
  return cur;
}

}  // namespace rr
