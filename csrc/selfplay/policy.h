// Move-selection policies for self-play, host/device code.
//
// random:    uniform over the legal-move list (duplicates included).
// heuristic: a one-ply evaluation of each legal move by the change it makes to four features,
//            computed from the move and the current board without applying it:
//   material   +8 per ring of an opponent cap captured, -6 per own ring eliminated (landing on
//              a marker, paying a line or territory cost: smaller caps preferred), +4 per
//              opponent ring inside a claimed region;
//   territory  +5 per cell a move collapses for the mover (own markers crossed, lines, regions);
//   markers    +2 per opponent marker flipped, +1 for the departure marker;
//   mobility   +1 per direction a placed or moved stack can still travel from its new cell.
// Ties are broken uniformly at random, so the policy is stochastic but reproducible per seed.
// The choice itself (random draw, best score, ties) is in move_choice.h.
#pragma once
#include "engine/engine.h"
#include "selfplay/rng.h"

namespace rr {

enum Policy : uint8_t { POLICY_RANDOM = 0, POLICY_HEURISTIC = 1 };

// Is the move one the reference's transition function rejects (a few recovery slides)?
RR_HD inline bool reference_rejects(const Geometry& g, State& s, const Move& m) {
  return m.type == MT_RECOVERY_SLIDE && recovery_slide_throws(g, s, m);
}

RR_HD inline int free_directions(const Geometry& g, const State& s, int from, int ignore) {
  int n = 0;
  for (int d = 0; d < g.num_dirs; d++) {
    int c = g.nbr[from][d];
    if (c != NO_CELL && (c == ignore || (!s.collapsed[c] && s.top[c] == NO_CELL))) n++;
  }
  return n;
}

// Marker effects of travelling from a to b (exclusive): flips and own collapses.
RR_HD inline int path_score(const Geometry& g, const State& s, int a, int b, uint8_t p) {
  int d = dir_between(g, a, b), score = 0;
  for (int c = g.nbr[a][d]; c != b && c != NO_CELL; c = g.nbr[c][d]) {
    if (!s.marker[c]) continue;
    score += s.marker[c] == p ? 5 : 2;
  }
  return score;
}

RR_HD inline int heuristic_score(const Geometry& g, const State& s, const Move& m) {
  uint8_t p = m.player;
  switch (m.type) {
    case MT_PLACE_RING: return free_directions(g, s, m.to, NO_CELL) + (s.top[m.to] == NO_CELL ? m.count : 0);
    case MT_MOVE_STACK:
      return 1 + path_score(g, s, m.from, m.to, p) - (s.marker[m.to] ? 6 : 0) + free_directions(g, s, m.to, m.from);
    case MT_OVERTAKING_CAPTURE:
    case MT_CONTINUE_CAPTURE_SEGMENT:
      return 1 + (s.ctrl[m.target] != p ? 8 : 0) + path_score(g, s, m.from, m.target, p) +
             path_score(g, s, m.target, m.to, p) - (s.marker[m.to] ? 6 : 0);
    case MT_RECOVERY_SLIDE: return m.context == RM_LINE ? 5 * m.line_len : 1;
    case MT_PROCESS_LINE: return m.line_len == line_threshold(g, s.num_players) ? 5 * m.line_len : -1;
    case MT_CHOOSE_LINE_OPTION:
      return m.window == WINDOW_ALL ? 5 * m.line_len - 6 : 5 * line_threshold(g, s.num_players);
    case MT_ELIMINATE_RINGS_FROM_STACK: return -6 * (m.context == EC_TERRITORY ? s.cap[m.to] : 1);
    case MT_FORCED_ELIMINATION: return -6 * s.cap[m.to];
    case MT_CHOOSE_TERRITORY_OPTION: {
      int16_t cells[MAX_CELLS];
      int n = region_cells(g, s, m.to, m.option, cells), score = 5 * n;
      for (int i = 0; i < n; i++)
        for (int r = s.top[cells[i]]; r != NO_CELL; r = s.ring_next[r]) score += s.ring_owner[r] == p ? -6 : 4;
      return score;
    }
    case MT_SKIP_CAPTURE:
    case MT_SKIP_TERRITORY_PROCESSING:
    case MT_SKIP_RECOVERY: return -1;
    default: return 0;
  }
}

}  // namespace rr
