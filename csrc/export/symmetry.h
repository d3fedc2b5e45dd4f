// Board symmetries for data augmentation: the 8 of the square (D4) and the 12 of the hexagon
// (D6). Each symmetry is a permutation of the cells and of the movement directions; states,
// moves, feature planes and action indices are mapped through it (docs/npz_format.md,
// "Symmetries"). A symmetry is *exact* when it also preserves every adjacency the rules use
// (movement, territory, and the border-marker steps): then the legal moves and the successor of
// every move map onto each other, apart from two recovery tie-breaks that depend on axis order
// (RULES.md 6.7; the tests check the rest move by move). On hex8 the border-marker steps are the
// square's eight (x, y) steps, which only four of the twelve hex symmetries preserve.
// Host/device code apart from build_symmetries.
#pragma once
#include "export/action_space.h"

namespace rr {

constexpr int MAX_SYMMETRIES = 12;

struct Symmetries {
  int n;                                   // 8 on square boards, 12 on hex boards
  uint32_t exact;                          // bit t: symmetry t preserves every rule adjacency
  int16_t cell[MAX_SYMMETRIES][MAX_CELLS]; // image of each cell
  uint8_t dir[MAX_SYMMETRIES][MAX_DIRS];   // image of each movement direction
};

namespace detail {
// Square symmetry t of (x, y) on an n x n board (m = n - 1):
// 0 identity, 1-3 rotations by 90, 180, 270 degrees clockwise, 4 mirror left-right,
// 5 mirror top-bottom, 6 transpose, 7 anti-transpose.
inline void square_image(int t, int m, int x, int y, int* ox, int* oy) {
  switch (t) {
    case 0: *ox = x; *oy = y; break;
    case 1: *ox = m - y; *oy = x; break;
    case 2: *ox = m - x; *oy = m - y; break;
    case 3: *ox = y; *oy = m - x; break;
    case 4: *ox = m - x; *oy = y; break;
    case 5: *ox = x; *oy = m - y; break;
    case 6: *ox = y; *oy = x; break;
    default: *ox = m - y; *oy = m - x; break;
  }
}
// Hex symmetry t of cube coordinates (x, y, z): t < 6 rotates by t * 60 degrees
// ((x, y, z) -> (-z, -x, -y) per step); t >= 6 first mirrors (x, y, z) -> (y, x, z), then
// rotates by (t - 6) * 60 degrees. The board is centred on (0, 0, 0), so no offset.
inline void hex_image(int t, int x, int y, int z, int* ox, int* oy) {
  if (t >= 6) {
    int tmp = x;
    x = y;
    y = tmp;
    t -= 6;
  }
  for (int i = 0; i < t; i++) {
    int nx = -z, ny = -x, nz = -y;
    x = nx;
    y = ny;
    z = nz;
  }
  *ox = x;
  *oy = y;
}
}  // namespace detail

// Host: does the cell map `img` carry each cell's neighbour set (k of `stride` entries per cell
// in `nbr`, NO_CELL off the board) onto its image's neighbour set?
inline bool preserves(int k, const int16_t* nbr, int stride, const int16_t* img, int cells) {
  for (int c = 0; c < cells; c++) {
    const int16_t* a = nbr + c * stride;
    const int16_t* b = nbr + img[c] * stride;
    for (int i = 0; i < k; i++) {
      if (a[i] == NO_CELL) continue;
      bool found = false;
      for (int j = 0; j < k && !found; j++) found = b[j] == img[a[i]];
      if (!found) return false;
    }
  }
  return true;
}

// Host: the permutation tables of g's symmetries.
inline void build_symmetries(const Geometry& g, Symmetries& y) {
  y.n = g.hex ? 12 : 8;
  y.exact = 0;
  for (int t = 0; t < y.n; t++) {
    for (int c = 0; c < g.num_cells; c++) {
      int ox, oy;
      if (g.hex) detail::hex_image(t, g.cx[c], g.cy[c], g.cz[c], &ox, &oy);
      else detail::square_image(t, g.size - 1, g.cx[c], g.cy[c], &ox, &oy);
      y.cell[t][c] = (int16_t)cell_at(g, ox, oy);
    }
    // A direction's image: the direction from the image of a cell to the image of its neighbour.
    for (int d = 0; d < g.num_dirs; d++) {
      y.dir[t][d] = 0;
      for (int c = 0; c < g.num_cells; c++)
        if (g.nbr[c][d] != NO_CELL) {
          y.dir[t][d] = (uint8_t)dir_between(g, y.cell[t][c], y.cell[t][g.nbr[c][d]]);
          break;
        }
    }
    if (preserves(g.num_dirs, &g.nbr[0][0], MAX_DIRS, y.cell[t], g.num_cells) &&
        preserves(g.num_tdirs, &g.tnbr[0][0], 6, y.cell[t], g.num_cells) &&
        preserves(g.num_moore, &g.moore[0][0], 8, y.cell[t], g.num_cells))
      y.exact |= 1u << t;
  }
}

RR_HD inline int16_t sym_cell(const Symmetries& y, int t, int c) {
  return c == NO_CELL ? (int16_t)NO_CELL : y.cell[t][c];
}

// out = the state with every cell moved to its image (stacks and markers keep their insertion
// order, rings keep their ids). out must not be s.
RR_HD inline void transform_state(const Geometry& g, const Symmetries& y, int t, const State& s, State& out) {
  out = s;
  const int16_t* img = y.cell[t];
  for (int c = 0; c < g.num_cells; c++) {
    const int d = img[c];
    out.top[d] = s.top[c];
    out.bottom[d] = s.bottom[c];
    out.height[d] = s.height[c];
    out.cap[d] = s.cap[c];
    out.ctrl[d] = s.ctrl[c];
    out.marker[d] = s.marker[c];
    out.collapsed[d] = s.collapsed[c];
    out.s_prev[d] = sym_cell(y, t, s.s_prev[c]);
    out.s_next[d] = sym_cell(y, t, s.s_next[c]);
    out.m_prev[d] = sym_cell(y, t, s.m_prev[c]);
    out.m_next[d] = sym_cell(y, t, s.m_next[c]);
  }
  out.s_head = sym_cell(y, t, s.s_head);
  out.s_tail = sym_cell(y, t, s.s_tail);
  out.m_head = sym_cell(y, t, s.m_head);
  out.m_tail = sym_cell(y, t, s.m_tail);
  out.must_move = sym_cell(y, t, s.must_move);
  out.chain_pos = sym_cell(y, t, s.chain_pos);
  out.capture_origin = sym_cell(y, t, s.capture_origin);
}

// A line named by (start, dir, len) in the image: the engine names a line from the end whose
// walk runs along a forward axis direction, so a reversed image starts from the other end.
RR_HD inline void sym_line(const Geometry& g, const Symmetries& y, int t, int start, int dir, int len, int16_t* ostart,
                           uint8_t* odir, bool* reversed) {
  int d = y.dir[t][dir];
  int s = y.cell[t][start];
  *reversed = line_axis(g, d) < 0;
  if (*reversed) {
    for (int i = 1; i < len && s != NO_CELL; i++) s = g.nbr[s][d];
    d = opposite_dir(g, d);
  }
  *ostart = (int16_t)s;
  *odir = (uint8_t)d;
}

// The image of a move, named as the engine names moves of the image state. `threshold` is the
// line length T of the game (line_threshold), which places a choose_line_option window.
RR_HD inline Move transform_move(const Geometry& g, const Symmetries& y, int t, const Move& m, int threshold) {
  Move o = m;
  o.from = sym_cell(y, t, m.from);
  o.to = sym_cell(y, t, m.to);
  o.target = sym_cell(y, t, m.target);
  o.line_start = sym_cell(y, t, m.line_start);
  switch (m.type) {
    case MT_PROCESS_LINE:
    case MT_CHOOSE_LINE_OPTION: {
      bool rev;
      sym_line(g, y, t, m.line_start, m.line_dir, m.line_len, &o.line_start, &o.line_dir, &rev);
      o.to = o.line_start;
      if (rev && m.type == MT_CHOOSE_LINE_OPTION && m.window != WINDOW_ALL)
        o.window = (uint8_t)(m.line_len - threshold - m.window);
      break;
    }
    case MT_RECOVERY_SLIDE:
      if (m.context == RM_LINE) {
        bool rev;
        sym_line(g, y, t, m.line_start, m.line_dir, m.line_len, &o.line_start, &o.line_dir, &rev);
      }
      break;
    default:
      break;
  }
  return o;
}

// The canonical action index, in the image state, of the image of legal move m of s. Only a
// territory move needs the image state itself (its canonical index is the lowest among the
// options of the image that collapse the same cells): it is built in `img` and its legal moves
// in `list`, both scratch.
RR_HD inline int32_t sym_action_index(const Geometry& g, const ActionSpace& a, const Symmetries& y, int t,
                                      const State& s, const Move& m, State& img, Scratch& sc, MoveList& list) {
  const Move tm = transform_move(g, y, t, m, line_threshold(g, s.num_players));
  if (m.type != MT_CHOOSE_TERRITORY_OPTION) return canonical_action_index(g, a, s, tm, list);  // list unread
  transform_state(g, y, t, s, img);
  legal_moves(g, img, sc, list);
  return canonical_action_index(g, a, img, tm, list);
}

}  // namespace rr
