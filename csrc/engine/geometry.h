// Board geometry: computed once per board into plain tables (neighbours per direction, keys,
// hash order), so the rules never do per-call coordinate arithmetic or string work.
// A Geometry is plain data: the host builds it once and a kernel can read a device copy.
#pragma once
#include "bitboard.h"
#include "defs.h"

namespace rr {

struct Geometry {
  uint8_t board;
  uint8_t hex;          // 1 on hex boards
  int16_t size;         // the reference's `size` field (8, 9, 19, 25)
  int16_t radius;       // hex radius, 0 on square boards
  int16_t num_cells;
  int16_t rings_per_player;
  uint8_t base_line_length;  // BOARD_CONFIGS lineLength (B)
  uint8_t num_dirs;          // movement directions: 8 square, 6 hex
  uint8_t num_tdirs;         // territory adjacency: 4 square, 6 hex
  uint8_t num_moore;         // border-marker expansion steps: 8, or 0 on hexagonal
  uint8_t line_axes[3 + 1];  // direction indices of the line axes (forward direction)
  uint8_t num_line_axes;
  uint8_t rec_axes[4];       // recovery line axes, in recovery order
  uint8_t num_rec_axes;
  uint8_t rec_adj[8];        // recovery adjacency as movement direction indices
  int8_t dvx[MAX_DIRS], dvy[MAX_DIRS];  // movement direction vectors (x, y)
  int8_t cx[MAX_CELLS], cy[MAX_CELLS], cz[MAX_CELLS];
  int16_t nbr[MAX_CELLS][MAX_DIRS];  // movement neighbours per direction, NO_CELL off board
  int16_t tnbr[MAX_CELLS][6];        // territory neighbours, NO_CELL off board
  int16_t moore[MAX_CELLS][8];       // (x,y) Moore steps for border-marker expansion
  int16_t grid_w;                    // lookup grid width (size, or 2*radius+1)
  int16_t grid[25 * 25];             // (x+off, y+off) -> cell index or NO_CELL
  int16_t hash_order[MAX_CELLS];     // cells sorted by the fingerprint's string order of "key:"
  // Bitboards over the lookup grid (bit = gx * grid_w + gy) for territory flood fills.
  int16_t bb_words;
  int16_t cell_bit[MAX_CELLS];
  int16_t bit_cell[BB_WORDS * 64];  // NO_CELL for grid bits that are off the board
  BB bb_board;
  BB bb_tsrc[6];     // cells whose territory neighbour in direction d is on the board
  int16_t bb_toff[6];  // bit offset of territory direction d
  BB bb_msrc[MAX_DIRS];      // cells whose movement neighbour in direction d is on the board
  int16_t bb_moff[MAX_DIRS];  // bit offset of movement direction d
  // Runs of consecutive cells on consecutive grid bits: a square board is one run, a hex board
  // one per row. Per-cell bytes pack into bitboards a run at a time, 8 cells a load.
  int16_t num_bit_runs;
  int16_t run_cell[MAX_BIT_RUNS], run_bit[MAX_BIT_RUNS], run_len[MAX_BIT_RUNS];
  char key[MAX_CELLS][16];           // "x,y" or "x,y,z", NUL-terminated
  uint8_t key_len[MAX_CELLS];
};

RR_HD inline int opposite_dir(const Geometry& g, int d) { return g.hex ? (d + 3) % 6 : (d + 4) % 8; }

// Direction index of the straight ray from a to b (they must be collinear), or -1.
RR_HD inline int dir_between(const Geometry& g, int a, int b) {
  int dx = g.cx[b] - g.cx[a], dy = g.cy[b] - g.cy[a];
  int sx = (dx > 0) - (dx < 0), sy = (dy > 0) - (dy < 0);
  for (int d = 0; d < g.num_dirs; d++)
    if (g.dvx[d] == sx && g.dvy[d] == sy) return d;
  return -1;
}

RR_HD inline int cell_at(const Geometry& g, int x, int y) {
  int off = g.hex ? g.radius : 0;
  int gx = x + off, gy = y + off;
  if (gx < 0 || gy < 0 || gx >= g.grid_w || gy >= g.grid_w) return NO_CELL;
  return g.grid[gx * g.grid_w + gy];
}

}  // namespace rr

#if !defined(__CUDACC_RTC__)
#include "geometry_build.h"  // host-only table construction
#endif
