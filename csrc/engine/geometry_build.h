// Host-only construction of the per-board geometry tables (runs once per board per process).
#pragma once
#include <stdio.h>
#include <string.h>
#include "geometry.h"

namespace rr {

namespace detail {
// Movement direction vectors, in the order that shapes the reference's move lists.
constexpr int SQ_DIRS[8][2] = {{1, 0}, {1, 1}, {0, 1}, {-1, 1}, {-1, 0}, {-1, -1}, {0, -1}, {1, -1}};
constexpr int HEX_DIRS[6][2] = {{1, 0}, {0, 1}, {-1, 1}, {-1, 0}, {0, -1}, {1, -1}};  // (dx, dy); dz = -dx-dy
constexpr int SQ_TERR[4][2] = {{0, 1}, {1, 0}, {0, -1}, {-1, 0}};
}  // namespace detail

inline int board_from_name(const char* name) {
  if (!strcmp(name, "square8")) return SQUARE8;
  if (!strcmp(name, "hex8")) return HEX8;
  if (!strcmp(name, "square19")) return SQUARE19;
  if (!strcmp(name, "hexagonal")) return HEXAGONAL;
  return -1;
}

inline const char* board_name(int board) {
  static const char* names[] = {"square8", "hex8", "square19", "hexagonal"};
  return (board >= 0 && board < NUM_BOARDS) ? names[board] : "?";
}

inline void build_geometry(Geometry& g, BoardType board) {
  memset(&g, 0, sizeof(g));
  g.board = board;
  g.hex = (board == HEX8 || board == HEXAGONAL);
  switch (board) {
    case SQUARE8: g.size = 8; g.rings_per_player = 18; g.base_line_length = 3; break;
    case HEX8: g.size = 9; g.rings_per_player = 18; g.base_line_length = 4; break;
    case SQUARE19: g.size = 19; g.rings_per_player = 72; g.base_line_length = 4; break;
    default: g.size = 25; g.rings_per_player = 96; g.base_line_length = 4; break;
  }
  g.radius = g.hex ? (g.size - 1) / 2 : 0;
  g.grid_w = g.hex ? 2 * g.radius + 1 : g.size;
  for (int i = 0; i < 25 * 25; i++) g.grid[i] = NO_CELL;
  // Cells in the reference's enumeration order: square x outer, y inner; hex q outer, r inner.
  int n = 0;
  if (!g.hex) {
    for (int x = 0; x < g.size; x++)
      for (int y = 0; y < g.size; y++) {
        g.cx[n] = (int8_t)x; g.cy[n] = (int8_t)y; g.cz[n] = 0;
        g.grid[x * g.grid_w + y] = (int16_t)n;
        n++;
      }
  } else {
    int R = g.radius;
    for (int q = -R; q <= R; q++) {
      int lo = -R > -q - R ? -R : -q - R, hi = R < -q + R ? R : -q + R;
      for (int r = lo; r <= hi; r++) {
        g.cx[n] = (int8_t)q; g.cy[n] = (int8_t)r; g.cz[n] = (int8_t)(-q - r);
        g.grid[(q + R) * g.grid_w + (r + R)] = (int16_t)n;
        n++;
      }
    }
  }
  g.num_cells = (int16_t)n;
  g.num_dirs = g.hex ? 6 : 8;
  g.num_tdirs = g.hex ? 6 : 4;
  g.num_moore = board == HEXAGONAL ? 0 : 8;
  for (int d = 0; d < g.num_dirs; d++) {
    g.dvx[d] = (int8_t)(g.hex ? detail::HEX_DIRS[d][0] : detail::SQ_DIRS[d][0]);
    g.dvy[d] = (int8_t)(g.hex ? detail::HEX_DIRS[d][1] : detail::SQ_DIRS[d][1]);
  }
  for (int c = 0; c < n; c++) {
    int x = g.cx[c], y = g.cy[c];
    for (int d = 0; d < MAX_DIRS; d++) g.nbr[c][d] = NO_CELL;
    for (int d = 0; d < g.num_dirs; d++) {
      int dx = g.hex ? detail::HEX_DIRS[d][0] : detail::SQ_DIRS[d][0];
      int dy = g.hex ? detail::HEX_DIRS[d][1] : detail::SQ_DIRS[d][1];
      g.nbr[c][d] = (int16_t)cell_at(g, x + dx, y + dy);
    }
    for (int d = 0; d < 6; d++) g.tnbr[c][d] = NO_CELL;
    for (int d = 0; d < 8; d++) g.moore[c][d] = NO_CELL;
    if (g.hex) {
      // Territory adjacency uses the recovery order of the hex directions.
      static const int order[6] = {0, 5, 4, 3, 2, 1};
      for (int d = 0; d < 6; d++) g.tnbr[c][d] = g.nbr[c][order[d]];
    } else {
      for (int d = 0; d < 4; d++) g.tnbr[c][d] = (int16_t)cell_at(g, x + detail::SQ_TERR[d][0], y + detail::SQ_TERR[d][1]);
    }
    if (g.num_moore) {
      // (x, y) Moore steps; on hex8 z is recomputed, so (+1,+1) and (-1,-1) reach non-adjacent cells.
      for (int d = 0; d < 8; d++) g.moore[c][d] = (int16_t)cell_at(g, x + detail::SQ_DIRS[d][0], y + detail::SQ_DIRS[d][1]);
    }
    if (g.hex)
      snprintf(g.key[c], sizeof(g.key[c]), "%d,%d,%d", x, y, -x - y);
    else
      snprintf(g.key[c], sizeof(g.key[c]), "%d,%d", x, y);
    g.key_len[c] = (uint8_t)strlen(g.key[c]);
  }
  // Bitboard tables.
  g.bb_words = (int16_t)((g.grid_w * g.grid_w + 63) / 64);
  for (int b = 0; b < BB_WORDS * 64; b++) g.bit_cell[b] = NO_CELL;
  for (int c = 0; c < n; c++) {
    int off = g.hex ? g.radius : 0;
    int bit = (g.cx[c] + off) * g.grid_w + (g.cy[c] + off);
    g.cell_bit[c] = (int16_t)bit;
    g.bit_cell[bit] = (int16_t)c;
    bb_set(g.bb_board, bit);
  }
  g.num_bit_runs = 0;
  for (int c = 0; c < n; c++) {
    int r = g.num_bit_runs - 1;
    if (r >= 0 && g.cell_bit[c] == g.run_bit[r] + g.run_len[r]) {
      g.run_len[r]++;
      continue;
    }
    if (g.num_bit_runs == MAX_BIT_RUNS) {  // cannot happen on the four boards: MAX_BIT_RUNS covers them
      g.num_bit_runs = 0;
      break;
    }
    r = g.num_bit_runs++;
    g.run_cell[r] = (int16_t)c;
    g.run_bit[r] = g.cell_bit[c];
    g.run_len[r] = 1;
  }
  for (int d = 0; d < g.num_tdirs; d++) {
    for (int c = 0; c < n; c++) {
      int nb = g.tnbr[c][d];
      if (nb == NO_CELL) continue;
      bb_set(g.bb_tsrc[d], g.cell_bit[c]);
      g.bb_toff[d] = (int16_t)(g.cell_bit[nb] - g.cell_bit[c]);  // the same for every cell
    }
  }
  for (int d = 0; d < g.num_dirs; d++) {
    g.bb_moff[d] = (int16_t)(g.dvx[d] * g.grid_w + g.dvy[d]);
    for (int c = 0; c < n; c++)
      if (g.nbr[c][d] != NO_CELL) bb_set(g.bb_msrc[d], g.cell_bit[c]);
  }
  if (g.hex) {
    g.num_line_axes = 3; g.line_axes[0] = 0; g.line_axes[1] = 5; g.line_axes[2] = 4;
    g.num_rec_axes = 3; g.rec_axes[0] = 0; g.rec_axes[1] = 5; g.rec_axes[2] = 4;
    static const int adj[6] = {0, 5, 4, 3, 2, 1};
    for (int d = 0; d < 6; d++) g.rec_adj[d] = (uint8_t)adj[d];
  } else {
    g.num_line_axes = 4; g.line_axes[0] = 0; g.line_axes[1] = 1; g.line_axes[2] = 2; g.line_axes[3] = 7;
    g.num_rec_axes = 4; g.rec_axes[0] = 0; g.rec_axes[1] = 2; g.rec_axes[2] = 1; g.rec_axes[3] = 7;
    for (int d = 0; d < 8; d++) g.rec_adj[d] = (uint8_t)d;
  }
  // Fingerprint entries sort as strings; all begin with "key:", so sorting "key:" decides.
  char buf[MAX_CELLS][20];
  for (int c = 0; c < n; c++) {
    snprintf(buf[c], sizeof(buf[c]), "%s:", g.key[c]);
    g.hash_order[c] = (int16_t)c;
  }
  for (int i = 1; i < n; i++) {  // insertion sort: runs once per board
    int16_t v = g.hash_order[i];
    int j = i - 1;
    while (j >= 0 && strcmp(buf[g.hash_order[j]], buf[v]) > 0) {
      g.hash_order[j + 1] = g.hash_order[j];
      j--;
    }
    g.hash_order[j + 1] = v;
  }
}

inline const Geometry& host_geometry(BoardType board) {
  // Built once per board; C++11 guarantees thread-safe initialisation of function statics.
  static const struct Tables {
    Geometry g[NUM_BOARDS];
    Tables() {
      for (int b = 0; b < NUM_BOARDS; b++) build_geometry(g[b], (BoardType)b);
    }
  } tables;
  return tables.g[board];
}

}  // namespace rr
