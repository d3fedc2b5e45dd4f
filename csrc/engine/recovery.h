// Recovery slides (RULES.md 6.7): a player with no stacks, a marker and a buried ring slides a
// marker to form a line (or, failing any line, to an empty cell or onto a stack) and pays with
// a buried ring.
#pragma once
#include "lines.h"
#include "movement.h"

namespace rr {

RR_HD inline bool recovery_eligible(const State& s, uint8_t p) {
  // With no controlled stack every ring of p on the board is buried.
  return s.ctrl_stacks[p] == 0 && s.marker_count[p] > 0 && s.board_rings[p] > 0;
}

RR_HD inline bool recovery_dest_empty(const State& s, int c) {
  return c != NO_CELL && s.top[c] == NO_CELL && !s.marker[c] && !s.collapsed[c];
}

// Longest run of p markers through dst along the recovery axes if the marker at src moved to
// dst (first strictly longest axis wins). Leaves the state as it found it.
RR_HD inline int recovery_best_run(const Geometry& g, State& s, int src, int dst, uint8_t p, int* start, int* dir) {
  uint8_t ms = s.marker[src], md = s.marker[dst];
  s.marker[src] = 0;
  s.marker[dst] = p;
  int best = 0;
  for (int a = 0; a < g.num_rec_axes; a++) {
    int st;
    int len = marker_run(g, s, dst, g.rec_axes[a], p, &st);
    if (len > best) {
      best = len;
      *start = st;
      *dir = g.rec_axes[a];
    }
  }
  s.marker[src] = ms;
  s.marker[dst] = md;
  return best;
}

// Surface part of recovery (after skip_recovery): line targets, else fallback and strike moves.
template <class Out>
RR_HD inline void gen_recovery(const Geometry& g, State& s, uint8_t p, Out& out) {
  int T = line_threshold(g, s.num_players);
  int before = out.n;
  for (int src = s.m_head; src != NO_CELL; src = s.m_next[src]) {
    if (s.marker[src] != p) continue;
    for (int k = 0; k < g.num_dirs; k++) {
      int dst = g.nbr[src][g.rec_adj[k]];
      if (!recovery_dest_empty(s, dst)) continue;
      int start = 0, dir = 0;
      int len = recovery_best_run(g, s, src, dst, p, &start, &dir);
      if (len < T) continue;
      Move m = make_move(MT_RECOVERY_SLIDE, p);
      m.from = (int16_t)src;
      m.to = (int16_t)dst;
      m.context = RM_LINE;
      m.line_start = (int16_t)start;
      m.line_dir = (uint8_t)dir;
      if (len > T) {
        m.option = 2;
        m.line_len = (uint8_t)T;  // the default window: the run's first T cells
        ml_push(out, m);
      }
      m.option = 1;
      m.line_len = (uint8_t)(len > 255 ? 255 : len);
      ml_push(out, m);
    }
  }
  if (out.n > before) return;
  for (int src = s.m_head; src != NO_CELL; src = s.m_next[src]) {
    if (s.marker[src] != p) continue;
    for (int k = 0; k < g.num_dirs; k++) {
      int dst = g.nbr[src][g.rec_adj[k]];
      if (dst == NO_CELL || s.collapsed[dst] || s.marker[dst]) continue;
      Move m = make_move(MT_RECOVERY_SLIDE, p);
      m.from = (int16_t)src;
      m.to = (int16_t)dst;
      m.context = s.top[dst] == NO_CELL ? RM_FALLBACK : RM_STACK_STRIKE;
      ml_push(out, m);
    }
  }
}

// The run the reference re-detects at the destination: the first recovery axis whose run
// reaches the base line length. Returns its length (0 if none), with start and direction.
RR_HD inline int recovery_detected_run(const Geometry& g, const State& s, int dst, uint8_t p, int* start, int* dir) {
  for (int a = 0; a < g.num_rec_axes; a++) {
    int st;
    int len = marker_run(g, s, dst, g.rec_axes[a], p, &st);
    if (len >= g.base_line_length) {
      *start = st;
      *dir = g.rec_axes[a];
      return len;
    }
  }
  return 0;
}

// First stack (insertion order) holding a ring of p below its top, or NO_CELL.
RR_HD inline int recovery_extraction_stack(const State& s, uint8_t p) {
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
    if (stack_bottommost_buried(s, c, p) > 0) return c;
  return NO_CELL;
}

// Take the bottom-most ring of p from the stack at c, wherever it is: after a stack strike on
// the extraction stack itself, that ring can have become the top (the reference takes the last
// ring of p in the stack, top or not).
RR_HD inline void recovery_extract(State& s, int c, uint8_t p) {
  if (c == NO_CELL || s.top[c] == NO_CELL) return;
  int idx = -1, i = 0;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r], i++)
    if (s.ring_owner[r] == p) idx = i;
  if (idx == 0) stack_eliminate_top(s, c, 1, p);
  else if (idx > 0) stack_extract_at(s, c, idx, p);
}

// Would the reference's transition function throw on this line-mode slide? (RULES.md 6.7)
RR_HD inline bool recovery_slide_throws(const Geometry& g, State& s, const Move& m) {
  if (m.context != RM_LINE) return false;
  uint8_t p = m.player;
  uint8_t ms = s.marker[m.from], md = s.marker[m.to];
  s.marker[m.from] = 0;
  s.marker[m.to] = p;
  int start = 0, dir = 0;
  int len = recovery_detected_run(g, s, m.to, p, &start, &dir);
  bool bad = len < line_threshold(g, s.num_players);
  if (!bad && m.option == 2) {
    // The window must lie in the detected run, be consecutive and contain the destination.
    int T = line_threshold(g, s.num_players);
    bool has_dst = false;
    for (int i = 0, c = m.line_start; i < T; i++, c = g.nbr[c][m.line_dir]) {
      if (c == NO_CELL || s.marker[c] != p) { bad = true; break; }
      bool in_run = false;
      for (int j = 0, x = start; j < len; j++, x = g.nbr[x][dir])
        if (x == c) in_run = true;
      if (!in_run) { bad = true; break; }
      if (c == m.to) has_dst = true;
    }
    if (!has_dst) bad = true;
  }
  s.marker[m.from] = ms;
  s.marker[m.to] = md;
  return bad;
}

RR_HD inline void apply_recovery_slide(const Geometry& g, State& s, const Move& m) {
  uint8_t p = m.player;
  int extraction = recovery_extraction_stack(s, p);  // chosen on the pre-move board
  if (m.context == RM_STACK_STRIKE) {
    marker_remove(s, m.from);
    stack_eliminate_top(s, m.to, 1, p);
    recovery_extract(s, extraction, p);
    return;
  }
  marker_remove(s, m.from);
  marker_set(s, m.to, p);
  if (m.context == RM_FALLBACK) {
    recovery_extract(s, extraction, p);
    return;
  }
  int start = 0, dir = 0;
  int len = recovery_detected_run(g, s, m.to, p, &start, &dir);
  if (m.option == 2) {
    int T = line_threshold(g, s.num_players);
    for (int i = 0, c = m.line_start; i < T; i++, c = g.nbr[c][m.line_dir]) cell_collapse(s, c, p);
    s.terr[p] += (int16_t)T;
    return;
  }
  for (int i = 0, c = start; i < len; i++, c = g.nbr[c][dir]) cell_collapse(s, c, p);
  s.terr[p] += (int16_t)len;
  recovery_extract(s, extraction, p);
}

}  // namespace rr
