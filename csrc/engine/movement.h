// Movement, overtaking captures and placement legality (RULES.md 6.1, 6.3, 6.8).
#pragma once
#include "state.h"

namespace rr {

RR_HD inline bool cell_blocks(const State& s, int c) { return s.collapsed[c] || s.top[c] != NO_CELL; }

// A landing beyond the capture target at cell `target` (distance k from the attacker along d):
// an empty or marker cell before the next obstacle, at total distance >= h.
RR_HD inline bool landing_beyond(const Geometry& g, const State& s, int target, int d, int k, int h) {
  int kk = k + 1;
  for (int l = g.nbr[target][d]; l != NO_CELL && !cell_blocks(s, l); l = g.nbr[l][d], kk++)
    if (kk >= h) return true;
  return false;
}

// The capture candidate on ray d from `from`: the first stack before an edge or a collapsed cell
// (NO_CELL when there is none); *dist gets its distance.
RR_HD inline int capture_target_on_ray(const Geometry& g, const State& s, int from, int d, int* dist) {
  int c = g.nbr[from][d], k = 1;
  while (c != NO_CELL && !cell_blocks(s, c)) {
    c = g.nbr[c][d];
    k++;
  }
  *dist = k;
  return (c == NO_CELL || s.collapsed[c]) ? NO_CELL : c;
}

// Can a stack of height h and cap `cap` at `from`, controlled by the mover, make any simple
// move or overtaking capture on the current board? (`from` itself is never on its own rays.)
RR_HD inline bool stack_can_act(const Geometry& g, const State& s, int from, int h, int cap) {
  for (int d = 0; d < g.num_dirs; d++) {
    int c = g.nbr[from][d];
    int k = 1;
    // Simple moves: empty or marker cells before the first obstacle, at distance >= h.
    while (c != NO_CELL && !s.collapsed[c] && s.top[c] == NO_CELL) {
      if (k >= h) return true;
      c = g.nbr[c][d];
      k++;
    }
    // Capture over the first stack on the ray.
    if (c != NO_CELL && !s.collapsed[c] && cap >= s.cap[c] && landing_beyond(g, s, c, d, k, h)) return true;
  }
  return false;
}

RR_HD inline bool stack_can_capture(const Geometry& g, const State& s, int from) {
  int h = s.height[from], cap = s.cap[from];
  for (int d = 0; d < g.num_dirs; d++) {
    int k;
    int c = capture_target_on_ray(g, s, from, d, &k);
    if (c != NO_CELL && cap >= s.cap[c] && landing_beyond(g, s, c, d, k, h)) return true;
  }
  return false;
}

// Simple moves of the stack at `from`: direction order, then increasing distance.
template <class Out>
RR_HD inline void gen_simple_moves(const Geometry& g, const State& s, int from, uint8_t p, Out& out) {
  int h = s.height[from];
  for (int d = 0; d < g.num_dirs; d++) {
    int c = g.nbr[from][d];
    int k = 1;
    while (c != NO_CELL && !cell_blocks(s, c)) {
      if (k >= h) {
        Move m = make_move(MT_MOVE_STACK, p);
        m.from = (int16_t)from;
        m.to = (int16_t)c;
        ml_push(out, m);
      }
      c = g.nbr[c][d];
      k++;
    }
  }
}

// Capture segments from `from` (direction order, then increasing landing distance).
template <class Out>
RR_HD inline void gen_captures(const Geometry& g, const State& s, int from, uint8_t p, uint8_t type, Out& out) {
  int h = s.height[from], cap = s.cap[from];
  for (int d = 0; d < g.num_dirs; d++) {
    int k;
    int c = capture_target_on_ray(g, s, from, d, &k);
    if (c == NO_CELL || cap < s.cap[c]) continue;
    int l = g.nbr[c][d];
    int kk = k + 1;
    while (l != NO_CELL && !cell_blocks(s, l)) {
      if (kk >= h) {
        Move m = make_move(type, p);
        m.from = (int16_t)from;
        m.target = (int16_t)c;
        m.to = (int16_t)l;
        ml_push(out, m);
      }
      l = g.nbr[l][d];
      kk++;
    }
  }
}

// Does player p have any simple move or capture from a controlled stack? When `restrict_to`
// is a cell, only that stack counts (mustMoveFromStackKey).
RR_HD inline bool player_can_move(const Geometry& g, const State& s, uint8_t p, int restrict_to) {
  if (restrict_to != NO_CELL) {
    if (s.ctrl[restrict_to] != p) return false;
    return stack_can_act(g, s, restrict_to, s.height[restrict_to], s.cap[restrict_to]);
  }
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
    if (s.ctrl[c] == p && stack_can_act(g, s, c, s.height[c], s.cap[c])) return true;
  return false;
}

// ---- placement -----------------------------------------------------------------------------

// Global allowance: min(R - P rings on board, rings in hand).
RR_HD inline int placement_allowance(const State& s, uint8_t p) {
  int a = s.rings_per_player - s.board_rings[p];
  return a < s.hand[p] ? a : s.hand[p];
}

// Is placing `count` rings of p at cell c valid (RULES.md 6.8, including no-dead-placement)?
RR_HD inline bool placement_valid(const Geometry& g, const State& s, uint8_t p, int c, int count, int allowance) {
  if (s.hand[p] <= 0 || allowance <= 0) return false;
  if (s.collapsed[c] || s.marker[c]) return false;
  bool on_stack = s.top[c] != NO_CELL;
  int max_here = on_stack ? 1 : 3;
  if (count < 1 || count > max_here || count > allowance) return false;
  int h = s.height[c] + count;
  int cap = (on_stack && s.ctrl[c] == p) ? s.cap[c] + count : count;
  return stack_can_act(g, s, c, h, cap);
}

RR_HD inline bool player_has_placement(const Geometry& g, const State& s, uint8_t p) {
  int allowance = placement_allowance(s, p);
  if (s.hand[p] <= 0 || allowance <= 0) return false;
  for (int c = 0; c < g.num_cells; c++)
    if (placement_valid(g, s, p, c, 1, allowance)) return true;
  return false;
}

// "Real action" (RULES.md 6.9): a one-ring placement, or a move or capture.
RR_HD inline bool player_has_real_action(const Geometry& g, const State& s, uint8_t p, int restrict_to) {
  if (player_has_placement(g, s, p)) return true;
  if (s.ctrl_stacks[p] == 0) return false;
  return player_can_move(g, s, p, restrict_to);
}

}  // namespace rr
