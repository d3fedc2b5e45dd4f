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

// Simple moves of the stack at `from`: direction order, then increasing distance. Returns the
// directions (bit d) whose first obstacle is a stack this one may overtake (cap >= its cap):
// the only rays gen_captures_on needs to walk again, so the movement surface walks each ray's
// free run once instead of once per pass.
template <class Out>
RR_HD inline unsigned gen_simple_moves(const Geometry& g, const State& s, int from, uint8_t p, Out& out) {
  int h = s.height[from], cap = s.cap[from];
  unsigned capture_dirs = 0;
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
    if (c != NO_CELL && !s.collapsed[c] && cap >= s.cap[c]) capture_dirs |= 1u << d;
  }
  return capture_dirs;
}

// Capture segments from `from` along the directions in `dirs` (bit d), in direction order,
// then increasing landing distance.
template <class Out>
RR_HD inline void gen_captures_on(const Geometry& g, const State& s, int from, uint8_t p, uint8_t type, unsigned dirs,
                                  Out& out) {
  int h = s.height[from], cap = s.cap[from];
  for (; dirs; dirs &= dirs - 1) {
    int d = ctz64(dirs);
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

// Capture segments from `from` (direction order, then increasing landing distance).
template <class Out>
RR_HD inline void gen_captures(const Geometry& g, const State& s, int from, uint8_t p, uint8_t type, Out& out) {
  gen_captures_on(g, s, from, p, type, (1u << g.num_dirs) - 1, out);
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

// The ring counts k (bit k, k = 1..3) that are valid placements on the EMPTY cell c for a mover
// with `allowance` (> 0): the same answers as placement_valid(g, s, p, c, k, allowance) for each
// k, from one walk per direction instead of one stack_can_act per count. A fresh stack of k
// rings has height k and cap k, so on ray d with a free run of length L (empty or marker cells)
// k moves simply when L >= k, and captures the stack at distance L + 1 (cap t) when k >= t and
// there is a landing at distance >= k: M >= 1 free cells beyond, with L + 1 + M >= k. Counts
// never exceed 3, so no walk needs to look more than 3 cells ahead or 2 beyond a target.
RR_HD inline unsigned empty_cell_placement_counts(const Geometry& g, const State& s, int c, int allowance) {
  unsigned want = allowance >= 3 ? 0xEu : allowance == 2 ? 0x6u : 0x2u;
  unsigned ok = 0;
  for (int d = 0; d < g.num_dirs; d++) {
    int x = g.nbr[c][d];
    int L = 0;
    while (x != NO_CELL && L < 3 && !cell_blocks(s, x)) {
      L++;
      x = g.nbr[x][d];
    }
    ok |= (2u << L) - 2u;  // k = 1..L move simply
    if (L < 3 && x != NO_CELL && !s.collapsed[x]) {
      int t = s.cap[x];
      int M = 0;
      for (int y = g.nbr[x][d]; y != NO_CELL && M < 2 && !cell_blocks(s, y); y = g.nbr[y][d]) M++;
      if (M >= 1)
        for (int k = t < 1 ? 1 : t; k <= 3 && k <= L + 1 + M; k++) ok |= 1u << k;
    }
    if ((ok & want) == want) break;
  }
  return ok & want;
}

// The place_ring moves of a surface as bitboards: at[k] holds the cells where a k-ring
// placement is listed (at[2] and at[3] lie inside at[1]: more rings are listed only where one
// ring is valid, and only on empty cells). The surface lists them cell by cell in enumeration
// order, counts ascending, and grid bits ascend in cell enumeration order on every board, so
// the bits give both the list and any move's index in it.
//
// Simple moves settle most cells for all cells at once: a fresh stack of height h moves simply
// when its free run (empty or marker cells before an edge, a collapsed cell or a stack) is at
// least h long in some direction; run >= 1 means the neighbour is free, and run >= k + 1 that
// the neighbour is free with run >= k the same way. Cells these runs do not settle (an empty
// cell where only a capture could make a count valid, a stack taller than 2) get the per-cell
// test.
struct PlacementMasks {
  BB at[4];
};

template <int NW>
RR_HD RR_DEVICE_NOINLINE void placement_masks_n(const Geometry& g, const State& s, uint8_t p, int allowance,
                                                PlacementMasks& pm) {
  unsigned want = allowance >= 3 ? 0xEu : allowance == 2 ? 0x6u : 0x2u;
  BB stacks, markers, collapsed;
#if RR_HOST_SSE2
  occupancy_masks_sse2<NW>(g, s, stacks, markers, collapsed);  // every stack has a controller
#else
  collapsed_bits_n<NW>(g, s, collapsed);
  for (int i = 0; i < NW; i++) stacks.w[i] = markers.w[i] = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) bb_set(stacks, g.cell_bit[c]);
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) bb_set(markers, g.cell_bit[c]);
#endif
  // simple[h]: cells with a free run of at least h in some direction, h = 1..RUN_MAX (runs up
  // to 3 settle fresh stacks, longer ones the stacks that a ring on top makes taller).
  constexpr int RUN_MAX = 7;
  BB free_cells, simple[RUN_MAX + 1];
  for (int i = 0; i < NW; i++) {
    free_cells.w[i] = g.bb_board.w[i] & ~stacks.w[i] & ~collapsed.w[i];
    for (int k = 1; k <= RUN_MAX; k++) simple[k].w[i] = 0;
  }
  bool tall = false;  // any stack of height >= 3 (one more ring makes it taller than 3)
  for (int c = s.s_head; c != NO_CELL && !tall; c = s.s_next[c]) tall = s.height[c] >= 3;
  int kmax = tall ? RUN_MAX : 3;
  for (int d = 0; d < g.num_dirs; d++) {
    const BB& m = g.bb_msrc[d];
    int off = g.bb_moff[d];
    BB r1, r, t;
    bb_pull_n<NW>(r1, free_cells, m, off);
    r = r1;
    for (int i = 0; i < NW; i++) simple[1].w[i] |= r1.w[i];
    for (int k = 2; k <= kmax; k++) {
      bb_pull_n<NW>(t, r, m, off);  // run >= k: neighbour free, and its run >= k - 1
      uint64_t any = 0;
      for (int i = 0; i < NW; i++) {
        r.w[i] = r1.w[i] & t.w[i];
        simple[k].w[i] |= r.w[i];
        any |= r.w[i];
      }
      if (!any) break;
    }
  }
  for (int i = 0; i < NW; i++) {
    uint64_t empty = free_cells.w[i] & ~markers.w[i];
    uint64_t all = empty;
    for (int k = 1; k <= 3; k++)
      if (want & (1u << k)) all &= simple[k].w[i];
    for (int k = 1; k <= 3; k++) pm.at[k].w[i] = (want & (1u << k)) ? all : 0;
    // Empty cells that simple moves leave unsettled.
    for (uint64_t open = empty & ~all; open; open &= open - 1) {
      int bit = i * 64 + ctz64(open);
      unsigned counts = empty_cell_placement_counts(g, s, g.bit_cell[bit], allowance);
      if (!(counts & 2u)) continue;
      for (int k = 1; k <= 3; k++) pm.at[k].w[i] |= (uint64_t)((counts >> k) & 1u) << (bit & 63);
    }
  }
  // Stacks: one ring on top makes height h + 1.
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    int h = s.height[c] + 1, bit = g.cell_bit[c];
    bool ok = (h <= kmax && bb_test(simple[h], bit)) || placement_valid(g, s, p, c, 1, allowance);
    pm.at[1].w[bit >> 6] |= (uint64_t)ok << (bit & 63);
  }
}

// The place_ring moves of mover p with allowance > 0 (and rings in hand).
RR_HD inline void placement_masks(const Geometry& g, const State& s, uint8_t p, int allowance, PlacementMasks& pm) {
  switch (g.bb_words) {
    case 1: placement_masks_n<1>(g, s, p, allowance, pm); break;
    case 2: placement_masks_n<2>(g, s, p, allowance, pm); break;
    case 6: placement_masks_n<6>(g, s, p, allowance, pm); break;
    default: placement_masks_n<BB_WORDS>(g, s, p, allowance, pm); break;
  }
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
