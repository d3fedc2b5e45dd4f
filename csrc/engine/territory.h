// Territory regions (RULES.md 6.5): one flood-fill pass per marker colour (in order of first
// appearance) plus a collapsed-only pass; processability; border markers; region processing.
#pragma once
#include "state.h"

namespace rr {

constexpr int MAX_REGIONS = 512;
constexpr int REGION_PASSES = MAX_PLAYERS + 1;  // slot 0: collapsed-only pass, 1..4: border colour

struct Region {
  int16_t seed;
  uint8_t pass;        // border colour, or 0 for the collapsed-only pass
  uint8_t controller;  // the reference's controllingPlayer
  int16_t comp;        // component id within its pass
  int16_t size;
  int16_t mover_ctrl_inside;    // stacks inside controlled by the mover
  int16_t mover_buried_inside;  // stacks inside holding a mover ring below the top
};

struct RegionScan {
  int n;
  Region r[MAX_REGIONS];
  int16_t comp[REGION_PASSES][MAX_CELLS];  // component id per cell and pass, -1 = excluded
};

RR_HD inline bool region_cell_ok(const State& s, int c, int pass) {
  return !s.collapsed[c] && (pass == 0 || s.marker[c] != pass);
}

RR_HD inline bool stack_has_buried(const State& s, int c, uint8_t p) {
  int idx = 0;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r], idx++)
    if (idx > 0 && s.ring_owner[r] == p) return true;
  return false;
}

// Breadth-first flood from seed over cells allowed by `pass`; writes ids into comp and the
// cells in BFS order into `order` (may be null). Returns the component size.
RR_HD inline int region_flood(const Geometry& g, const State& s, int seed, int pass, int16_t* comp, int16_t id,
                              int16_t* order) {
  int16_t queue[MAX_CELLS];
  int head = 0, tail = 0;
  queue[tail++] = (int16_t)seed;
  comp[seed] = id;
  while (head < tail) {
    int c = queue[head++];
    for (int d = 0; d < g.num_tdirs; d++) {
      int nb = g.tnbr[c][d];
      if (nb == NO_CELL || comp[nb] != -1 || !region_cell_ok(s, nb, pass)) continue;
      comp[nb] = id;
      queue[tail++] = (int16_t)nb;
    }
  }
  if (order)
    for (int i = 0; i < tail; i++) order[i] = queue[i];
  return tail;
}

RR_HD inline int popcount8(unsigned v) {
  int n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

// Detect every region the reference lists, with per-region counts for player `mover`.
RR_HD inline void scan_regions(const Geometry& g, const State& s, uint8_t mover, RegionScan& out) {
  out.n = 0;
  unsigned active = 0;
  for (int p = 1; p <= s.num_players; p++)
    if (s.board_rings[p] > 0) active |= 1u << p;
  if (!active) return;
  int n_active = popcount8(active);
  uint8_t colours[MAX_PLAYERS];
  int n_colours = 0;
  unsigned seen = 0;
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) {
    unsigned bit = 1u << s.marker[c];
    if (!(seen & bit)) {
      seen |= bit;
      colours[n_colours++] = s.marker[c];
    }
  }
  // Border-colour passes in marker order, then the collapsed-only pass (pass 0).
  for (int k = 0; k <= n_colours; k++) {
    int pass = k < n_colours ? colours[k] : 0;
    int16_t* comp = out.comp[pass];
    for (int c = 0; c < g.num_cells; c++) comp[c] = -1;
    int16_t next_id = 0;
    for (int c = 0; c < g.num_cells; c++) {
      if (comp[c] != -1 || !region_cell_ok(s, c, pass)) continue;
      int16_t id = next_id++;
      int16_t order[MAX_CELLS];
      int size = region_flood(g, s, c, pass, comp, id, order);
      unsigned colours_inside = 0;
      int mover_ctrl = 0, mover_buried = 0;
      for (int i = 0; i < size; i++) {
        int x = order[i];
        if (s.top[x] == NO_CELL) continue;
        colours_inside |= 1u << s.ctrl[x];
        if (s.ctrl[x] == mover) mover_ctrl++;
        if (stack_has_buried(s, x, mover)) mover_buried++;
      }
      int n_inside = popcount8(colours_inside);
      uint8_t controller;
      if (pass != 0) {
        if (n_inside >= n_active) continue;
        controller = (uint8_t)pass;
      } else {
        if (n_inside != 1 || n_inside >= n_active) continue;
        controller = 0;
        for (int p = 1; p <= MAX_PLAYERS; p++)
          if (colours_inside & (1u << p)) controller = (uint8_t)p;
      }
      if (out.n >= MAX_REGIONS) continue;
      Region& r = out.r[out.n++];
      r.seed = (int16_t)c;
      r.pass = (uint8_t)pass;
      r.controller = controller;
      r.comp = id;
      r.size = (int16_t)size;
      r.mover_ctrl_inside = (int16_t)mover_ctrl;
      r.mover_buried_inside = (int16_t)mover_buried;
    }
  }
}

RR_HD inline int count_buried_stacks(const State& s, uint8_t p) {
  int n = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
    if (stack_has_buried(s, c, p)) n++;
  return n;
}

// Can `mover` pay for region r (RULES.md 6.5.3)?
RR_HD inline bool region_payable(const State& s, const Region& r, uint8_t mover, bool recovery_ctx, int buried_total) {
  if (recovery_ctx) return buried_total - r.mover_buried_inside > 0;
  return s.ctrl_stacks[mover] - r.mover_ctrl_inside > 0;
}

RR_HD inline bool any_processable_region(const Geometry& g, const State& s, uint8_t mover, RegionScan& scratch) {
  scan_regions(g, s, mover, scratch);
  if (scratch.n == 0) return false;
  bool rec = s.turn_used_recovery != 0;
  int buried = rec ? count_buried_stacks(s, mover) : 0;
  for (int i = 0; i < scratch.n; i++)
    if (region_payable(s, scratch.r[i], mover, rec, buried)) return true;
  return false;
}

// Cells of the region with the given seed and pass, in BFS order. Returns the count.
RR_HD inline int region_cells(const Geometry& g, const State& s, int seed, int pass, int16_t* cells) {
  int16_t comp[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) comp[c] = -1;
  if (!region_cell_ok(s, seed, pass)) return 0;
  return region_flood(g, s, seed, pass, comp, 0, cells);
}

// Border markers of a region (RULES.md 6.5.4): markers of any colour territory-adjacent to the
// region, expanded through marker cells by (x,y) Moore steps (none on hexagonal).
RR_HD inline int region_border(const Geometry& g, const State& s, const uint8_t* in_region, const int16_t* cells,
                               int n_cells, int16_t* border) {
  uint8_t mark[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) mark[c] = 0;
  int nb = 0;
  for (int i = 0; i < n_cells; i++) {
    int c = cells[i];
    for (int d = 0; d < g.num_tdirs; d++) {
      int x = g.tnbr[c][d];
      if (x == NO_CELL || in_region[x] || mark[x] || !s.marker[x]) continue;
      mark[x] = 1;
      border[nb++] = (int16_t)x;
    }
  }
  for (int head = 0; head < nb; head++) {
    int c = border[head];
    for (int d = 0; d < g.num_moore; d++) {
      int x = g.moore[c][d];
      if (x == NO_CELL || in_region[x] || mark[x] || !s.marker[x]) continue;
      mark[x] = 1;
      border[nb++] = (int16_t)x;
    }
  }
  return nb;
}

// Process region (seed, pass) for player p (RULES.md 6.5.5). The self-elimination is separate.
RR_HD inline void apply_region(const Geometry& g, State& s, int seed, int pass, uint8_t p) {
  int16_t cells[MAX_CELLS];
  int n = region_cells(g, s, seed, pass, cells);
  uint8_t in_region[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) in_region[c] = 0;
  for (int i = 0; i < n; i++) in_region[cells[i]] = 1;
  int16_t border[MAX_CELLS];
  int nb = region_border(g, s, in_region, cells, n, border);
  for (int i = 0; i < n; i++) {
    int c = cells[i];
    if (s.top[c] != NO_CELL) stack_eliminate_top(s, c, s.height[c], p);
    cell_collapse(s, c, p);
  }
  for (int i = 0; i < nb; i++) cell_collapse(s, border[i], p);
  s.terr[p] += (int16_t)(n + nb);
}

}  // namespace rr
