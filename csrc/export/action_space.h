// The fixed action-index space of a board (docs/npz_format.md, "Action index space").
// One block per move type, in MoveType order; inside a block the index is a function of the
// move's payload only, so encoding needs no game state. Every legal move of every phase gets
// exactly one index and distinct legal moves of one state get distinct indices. Decoding looks
// the index up among the legal moves of a state (the state supplies the payload fields that the
// index leaves implicit: capture target, line length, elimination context, ...).
// Host/device code: plain tables and integer arithmetic.
#pragma once
#include "engine/engine.h"

namespace rr {

constexpr int TERRITORY_PASSES = MAX_PLAYERS + 1;  // region pass 0 (collapsed-only) .. 4

struct ActionSpace {
  uint8_t board;
  int32_t cells;     // N: cells of the board
  int32_t dirs;      // D: movement directions (8 square, 6 hex)
  int32_t axes;      // A: line axes (4 square, 3 hex)
  int32_t dist;      // L: distance slots, 1..L (the longest straight ray has L steps)
  int32_t min_line;  // smallest line threshold T of the board over 2-4 players
  int32_t wslots;    // choose_line_option slots per line: 0 = collapse all, 1 + w = window w
  int32_t block[NUM_MOVE_TYPES];       // size of each move type's block
  int32_t offset[NUM_MOVE_TYPES + 1];  // first index of each block; offset[NUM_MOVE_TYPES] = size
  RR_HD int32_t size() const { return offset[NUM_MOVE_TYPES]; }
};

RR_HD inline void build_action_space(const Geometry& g, ActionSpace& a) {
  a.board = g.board;
  a.cells = g.num_cells;
  a.dirs = g.num_dirs;
  a.axes = g.num_line_axes;
  a.dist = g.grid_w - 1;  // size - 1 on square boards, 2 * radius on hex boards
  a.min_line = line_threshold(g, 3);
  a.wslots = 1 + (g.grid_w - a.min_line + 1);
  const int N = a.cells, D = a.dirs, L = a.dist, A = a.axes;
  for (int t = 0; t < NUM_MOVE_TYPES; t++) a.block[t] = 1;  // singletons by default
  a.block[MT_PLACE_RING] = N * 3;
  a.block[MT_MOVE_STACK] = N * D * L;
  a.block[MT_OVERTAKING_CAPTURE] = N * D * L;
  a.block[MT_CONTINUE_CAPTURE_SEGMENT] = N * D * L;
  a.block[MT_RECOVERY_SLIDE] = N * D * 2;
  a.block[MT_PROCESS_LINE] = N * A;
  a.block[MT_CHOOSE_LINE_OPTION] = N * A * a.wslots;
  a.block[MT_CHOOSE_TERRITORY_OPTION] = N * TERRITORY_PASSES;
  a.block[MT_ELIMINATE_RINGS_FROM_STACK] = N;
  a.block[MT_FORCED_ELIMINATION] = N;
  a.offset[0] = 0;
  for (int t = 0; t < NUM_MOVE_TYPES; t++) a.offset[t + 1] = a.offset[t] + a.block[t];
}

RR_HD inline bool valid_cell(const Geometry& g, int c) { return c >= 0 && c < g.num_cells; }

// Steps from `from` to `to` along direction d, or -1 when `to` is not on that ray.
RR_HD inline int ray_distance(const Geometry& g, int from, int d, int to, int max_steps) {
  int c = from;
  for (int k = 1; k <= max_steps; k++) {
    c = g.nbr[c][d];
    if (c == NO_CELL) return -1;
    if (c == to) return k;
  }
  return -1;
}

// (direction, distance) of a straight move from -> to; false when not on a straight ray.
RR_HD inline bool straight_step(const Geometry& g, const ActionSpace& a, int from, int to, int* dir, int* dist) {
  if (!valid_cell(g, from) || !valid_cell(g, to) || from == to) return false;
  int d = dir_between(g, from, to);
  if (d < 0) return false;
  int k = ray_distance(g, from, d, to, a.dist);
  if (k < 1) return false;
  *dir = d;
  *dist = k;
  return true;
}

RR_HD inline int line_axis(const Geometry& g, int dir) {
  for (int i = 0; i < g.num_line_axes; i++)
    if (g.line_axes[i] == dir) return i;
  return -1;
}

// The index of a move (its structural index), or -1 when the payload does not fit the board.
RR_HD inline int32_t action_index(const Geometry& g, const ActionSpace& a, const Move& m) {
  if (m.type >= NUM_MOVE_TYPES) return -1;
  const int32_t base = a.offset[m.type];
  const int D = a.dirs, L = a.dist, A = a.axes;
  switch (m.type) {
    case MT_PLACE_RING: {
      int k = m.count ? m.count : 1;
      if (!valid_cell(g, m.to) || k > 3) return -1;
      return base + m.to * 3 + (k - 1);
    }
    case MT_MOVE_STACK:
    case MT_OVERTAKING_CAPTURE:
    case MT_CONTINUE_CAPTURE_SEGMENT: {
      int d, k;
      if (!straight_step(g, a, m.from, m.to, &d, &k)) return -1;
      return base + (m.from * D + d) * L + (k - 1);
    }
    case MT_RECOVERY_SLIDE: {
      if (!valid_cell(g, m.from) || !valid_cell(g, m.to)) return -1;
      for (int d = 0; d < g.num_dirs; d++)
        if (g.nbr[m.from][d] == m.to) return base + (m.from * D + d) * 2 + (m.option == 2 ? 1 : 0);
      return -1;
    }
    case MT_PROCESS_LINE:
    case MT_CHOOSE_LINE_OPTION: {
      int ax = line_axis(g, m.line_dir);
      if (!valid_cell(g, m.line_start) || ax < 0) return -1;
      if (m.type == MT_PROCESS_LINE) return base + m.line_start * A + ax;
      int slot = m.window == WINDOW_ALL ? 0 : 1 + m.window;
      if (slot >= a.wslots) return -1;
      return base + (m.line_start * A + ax) * a.wslots + slot;
    }
    case MT_CHOOSE_TERRITORY_OPTION:
      if (!valid_cell(g, m.to) || m.option >= TERRITORY_PASSES) return -1;
      return base + m.to * TERRITORY_PASSES + m.option;
    case MT_ELIMINATE_RINGS_FROM_STACK:
    case MT_FORCED_ELIMINATION:
      if (!valid_cell(g, m.to)) return -1;
      return base + m.to;
    default:
      return base;  // singletons: skips, no-actions, swap_sides, resign, timeout
  }
}

// The cells a territory move collapses: its region plus the region's border markers. Two
// territory moves of one state with the same set have the same effect (every stack in the set is
// eliminated, every cell collapses; border cells hold markers, never stacks).
RR_HD inline int territory_collapse_set(const Geometry& g, const State& s, const Move& m, uint8_t* mark) {
  int16_t cells[MAX_CELLS], border[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) mark[c] = 0;
  int n = region_cells(g, s, m.to, m.option, cells);
  for (int i = 0; i < n; i++) mark[cells[i]] = 1;
  int nb = region_border(g, s, mark, cells, n, border);
  for (int i = 0; i < nb; i++) mark[border[i]] = 1;
  return n + nb;
}

RR_HD inline bool same_territory_effect(const Geometry& g, const State& s, const Move& a, const Move& b) {
  uint8_t ma[MAX_CELLS], mb[MAX_CELLS];
  if (territory_collapse_set(g, s, a, ma) != territory_collapse_set(g, s, b, mb)) return false;
  for (int c = 0; c < g.num_cells; c++)
    if (ma[c] != mb[c]) return false;
  return true;
}

// The canonical index of a legal move: equivalent legal moves (same effect) share it.
//  * choose_territory_option: the engine lists a region once per flood-fill pass that finds it
//    (copies that differ only in `option`, the pass, and `count`), and a region bounded by
//    markers can also be found, with those markers inside, by the collapsed-only pass. Moves
//    that collapse the same cells (region plus border markers) have the same effect; the
//    canonical index is the lowest index among them.
//  * process_line of an exact-length line (length == T) collapses the line exactly like the
//    collapse-all choose_line_option of the same line, which is always listed beside it; it
//    maps to that choose_line_option index. (An overlength process_line keeps its own index.)
// `legal` must hold every territory option of the surface of `s` (only read for territory
// moves): the legal-move list, or anything with `n` and a legal_move_at overload that holds at
// least those (the streaming env keeps just the options aside, selfplay/batch_env.h).
template <class Moves>
RR_HD inline int32_t canonical_action_index(const Geometry& g, const ActionSpace& a, const State& s, const Move& m,
                                            const Moves& legal) {
  if (m.type == MT_PROCESS_LINE && m.line_len == line_threshold(g, s.num_players)) {
    Move c = m;
    c.type = MT_CHOOSE_LINE_OPTION;
    c.window = WINDOW_ALL;
    return action_index(g, a, c);
  }
  if (m.type == MT_CHOOSE_TERRITORY_OPTION) {
    int32_t best = action_index(g, a, m);
    for (int i = 0; i < legal.n; i++) {
      const Move o = legal_move_at(legal, i);
      if (o.type != MT_CHOOSE_TERRITORY_OPTION) continue;
      int32_t oi = action_index(g, a, o);
      if (oi >= 0 && oi < best && same_territory_effect(g, s, o, m)) best = oi;
    }
    return best;
  }
  return action_index(g, a, m);
}

}  // namespace rr
