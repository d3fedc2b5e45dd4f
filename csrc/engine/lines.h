// Line detection (RULES.md 6.4): maximal runs of one player's markers along the line axes,
// found in marker insertion order. The two views of the reference (orchestrator lines, runs
// >= max(B, T); reward lines, runs >= T) share this finder with different minimum lengths.
#pragma once
#include "state.h"

namespace rr {

constexpr int MAX_LINES = 256;

struct Line {
  int16_t start;  // backward end
  uint8_t dir;    // forward direction (a line axis)
  uint8_t len;
};

struct LineList {
  int n;
  Line l[MAX_LINES];
};

// Line length threshold T (RULES.md 2.1).
RR_HD inline int line_threshold(const Geometry& g, int num_players) {
  if (g.board == SQUARE8 || g.board == HEX8) return num_players == 2 ? 4 : 3;
  return 4;
}

RR_HD inline int line_cell(const Geometry& g, int start, int dir, int i) {
  int c = start;
  while (i-- > 0) c = g.nbr[c][dir];
  return c;
}

// Length of the run of p markers through c along `dir` (both ways); *start gets the backward end.
RR_HD inline int marker_run(const Geometry& g, const State& s, int c, int dir, uint8_t p, int* start) {
  int len = 1;
  int b = c;
  int back = opposite_dir(g, dir);
  for (int x = g.nbr[c][back]; x != NO_CELL && s.marker[x] == p; x = g.nbr[x][back]) {
    b = x;
    len++;
  }
  for (int x = g.nbr[c][dir]; x != NO_CELL && s.marker[x] == p; x = g.nbr[x][dir]) len++;
  if (start) *start = b;
  return len;
}

// Could player p have a run of at least min_len markers along a line axis? Exact for runs
// (cells holding a run of min_len are those where the marker mask survives min_len - 1 pulls
// along the axis), and cheap enough to run before every line scan: most positions have no line.
template <int NW>
RR_HD RR_DEVICE_NOINLINE bool any_run_n(const Geometry& g, const State& s, uint8_t p, int min_len) {
  BB mk;
  for (int i = 0; i < NW; i++) mk.w[i] = 0;
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c])
    mk.w[g.cell_bit[c] >> 6] |= (uint64_t)(s.marker[c] == p) << (g.cell_bit[c] & 63);
  for (int a = 0; a < g.num_line_axes; a++) {
    int d = g.line_axes[a];
    BB run = mk, t;
    uint64_t any = 1;
    for (int k = 1; k < min_len && any; k++) {
      bb_pull_n<NW>(t, run, g.bb_msrc[d], g.bb_moff[d]);
      any = 0;
      for (int i = 0; i < NW; i++) {
        run.w[i] &= t.w[i];
        any |= run.w[i];
      }
    }
    if (any) return true;
  }
  return false;
}

RR_HD inline bool any_run(const Geometry& g, const State& s, uint8_t p, int min_len) {
  if (s.marker_count[p] < min_len) return false;
  switch (g.bb_words) {
    case 1: return any_run_n<1>(g, s, p, min_len);
    case 2: return any_run_n<2>(g, s, p, min_len);
    case 6: return any_run_n<6>(g, s, p, min_len);
    default: return any_run_n<BB_WORDS>(g, s, p, min_len);
  }
}

// All maximal runs of player p's markers with length >= min_len, in detection order.
RR_HD inline void find_lines(const Geometry& g, const State& s, uint8_t p, int min_len, LineList& out) {
  out.n = 0;
  if (!any_run(g, s, p, min_len)) return;
  uint8_t seen[MAX_CELLS];  // bit a: cell already belongs to a run found along axis a
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) seen[c] = 0;
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) {
    if (s.marker[c] != p) continue;
    for (int a = 0; a < g.num_line_axes; a++) {
      if (seen[c] & (1 << a)) continue;
      int dir = g.line_axes[a];
      int start;
      int len = marker_run(g, s, c, dir, p, &start);
      for (int i = 0, x = start; i < len; i++, x = g.nbr[x][dir]) seen[x] |= (uint8_t)(1 << a);
      if (len >= min_len && out.n < MAX_LINES) {
        Line& l = out.l[out.n++];
        l.start = (int16_t)start;
        l.dir = (uint8_t)dir;
        l.len = (uint8_t)(len > 255 ? 255 : len);
      }
    }
  }
}

RR_HD inline bool has_line(const Geometry& g, const State& s, uint8_t p, int min_len) {
  if (!any_run(g, s, p, min_len)) return false;
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) {
    if (s.marker[c] != p) continue;
    for (int a = 0; a < g.num_line_axes; a++)
      if (marker_run(g, s, c, g.line_axes[a], p, nullptr) >= min_len) return true;
  }
  return false;
}

RR_HD inline int orchestrator_min(const Geometry& g, int num_players) {
  int t = line_threshold(g, num_players);
  return g.base_line_length > t ? g.base_line_length : t;
}

}  // namespace rr
