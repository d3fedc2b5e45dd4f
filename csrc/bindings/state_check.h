// Structural check of a State that arrives as raw bytes (_core.load_state_bytes): every field in
// range and every derived structure (ring chains, free list, insertion-ordered lists, counters)
// consistent, so that no rule can index outside a table or follow a broken chain. Host-only and
// not on any hot path: a batch slot is checked once when it is copied into a Game.
#pragma once
#include <string>

#include "bindings/checked_args.h"

namespace rr {
namespace pyarg {

// An empty string when `s` is a well-formed state of board g, else what is wrong.
inline std::string state_problem(const Geometry& g, const State& s) {
  const int N = g.num_cells, np = s.num_players;
  auto bad = [](const std::string& what) { return what; };
  auto cell_or_none = [&](int c) { return c == NO_CELL || (c >= 0 && c < N); };
  if (s.board != g.board) return bad("board");
  if (np < 2 || np > MAX_PLAYERS) return bad("num_players");
  if (s.swap_rule > 1 || s.rings_per_player != g.rings_per_player) return bad("configuration");
  if (s.victory_threshold < 0 || s.victory_threshold > MAX_RINGS || s.territory_minimum < 0 ||
      s.territory_minimum > N)
    return bad("victory thresholds");
  if (s.phase >= NUM_PHASES || s.status > ST_COMPLETED || s.current < 1 || s.current > np || s.winner > np ||
      s.reason > VR_TIMEOUT || s.last_actor > np)
    return bad("phase, status, current player, winner or reason");
  if (s.move_count < 0 || s.move_count > MAX_MOVE_COUNT) return bad("move count");
  if (!cell_or_none(s.must_move) || !cell_or_none(s.chain_pos) || !cell_or_none(s.capture_origin))
    return bad("mustMoveFrom, chain or capture position");
  if ((s.pending_line | s.pending_territory | s.turn_used_recovery | s.turn_had_action | s.no_region_hint |
       s.p1_moved | s.p2_moved_non_swap | s.swap_done) > 1)
    return bad("flags");
  for (int i = 0; i < s.n_touched && i < TOUCH_MAX; i++)
    if (s.touched[i] < 0 || s.touched[i] >= N) return bad("touched cells");
  const int seat_bits = ((1 << (np + 1)) - 1) & ~1;
  const LpsTracker& t = s.lps;
  if (t.round_index < 0 || t.round_index > MAX_LPS_ROUNDS || t.consecutive_rounds < 0 ||
      t.consecutive_rounds > MAX_LPS_ROUNDS || t.first_player > np || t.exclusive_completed > np ||
      t.consecutive_player > np || (t.mask_set & ~seat_bits) || (t.mask_val & ~seat_bits))
    return bad("lps tracker");
  for (int p = 1; p <= np; p++)
    if (s.hand[p] < 0 || s.hand[p] > MAX_RINGS || s.elim[p] < 0 || s.elim[p] > 2 * MAX_RINGS || s.elim_colour[p] < 0 ||
        s.elim_colour[p] > MAX_RINGS || s.terr[p] < 0 || s.terr[p] > 2 * N)
      return bad("per-player counts of player " + std::to_string(p));
  // Rings: every ring of the pool is on exactly one stack chain or on the free list.
  std::vector<uint8_t> seen(MAX_RINGS, 0);
  int board_rings[MAX_PLAYERS + 1] = {0}, ctrl_stacks[MAX_PLAYERS + 1] = {0};
  int markers[MAX_PLAYERS + 1] = {0}, collapsed[MAX_PLAYERS + 1] = {0};
  int stacks = 0, rings = 0, hands = 0;
  for (int c = 0; c < MAX_CELLS; c++) {
    if (c >= N) {
      if (s.top[c] != NO_CELL || s.marker[c] || s.collapsed[c] || s.ctrl[c]) return bad("a cell off the board is used");
      continue;
    }
    if (s.marker[c] > np || s.collapsed[c] > np) return bad("marker or collapsed owner at cell " + std::to_string(c));
    if (s.marker[c]) markers[s.marker[c]]++;
    if (s.collapsed[c]) collapsed[s.collapsed[c]]++;
    if (s.top[c] == NO_CELL) {
      if (s.bottom[c] != NO_CELL || s.height[c] || s.cap[c] || s.ctrl[c]) return bad("empty cell " + std::to_string(c));
      continue;
    }
    if (s.marker[c] || s.collapsed[c]) return bad("a stack shares cell " + std::to_string(c));
    int h = 0, cap = 0, last = NO_CELL;
    bool in_cap = true;
    for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r]) {
      if (r < 0 || r >= MAX_RINGS || seen[r]) return bad("ring chain of cell " + std::to_string(c));
      seen[r] = 1;
      const int owner = s.ring_owner[r];
      if (owner < 1 || owner > np) return bad("ring owner on cell " + std::to_string(c));
      in_cap = in_cap && owner == s.ring_owner[s.top[c]];
      cap += in_cap;
      board_rings[owner]++;
      h++;
      last = r;
    }
    if (h != s.height[c] || last != s.bottom[c] || s.cap[c] != (cap > 255 ? 255 : cap) ||
        s.ctrl[c] != s.ring_owner[s.top[c]])
      return bad("stack summary of cell " + std::to_string(c));
    ctrl_stacks[s.ctrl[c]]++;
    stacks++;
    rings += h;
  }
  int free_rings = 0;
  for (int r = s.free_ring; r != NO_CELL; r = s.ring_next[r]) {
    if (r < 0 || r >= MAX_RINGS || seen[r]) return bad("free ring list");
    seen[r] = 1;
    free_rings++;
  }
  if (rings + free_rings != MAX_RINGS) return bad("ring pool");
  for (int p = 1; p <= np; p++) {
    hands += s.hand[p];
    if (board_rings[p] != s.board_rings[p] || ctrl_stacks[p] != s.ctrl_stacks[p] || markers[p] != s.marker_count[p] ||
        collapsed[p] != s.collapsed_count[p])
      return bad("per-player board counters of player " + std::to_string(p));
  }
  if (hands + rings > MAX_RINGS) return bad("more rings than the pool");
  if (stacks != s.num_stacks) return bad("stack count");
  // Insertion-ordered lists: exactly the stacks / markers, each once, links consistent.
  auto list_ok = [&](const int16_t* prev, const int16_t* next, int head, int tail, bool (*member)(const State&, int),
                     int expect) {
    int n = 0, before = NO_CELL;
    std::vector<uint8_t> on(N, 0);
    for (int c = head; c != NO_CELL; c = next[c]) {
      if (c < 0 || c >= N || on[c] || !member(s, c) || prev[c] != before) return false;
      on[c] = 1;
      before = c;
      n++;
    }
    return n == expect && before == tail;
  };
  if (!list_ok(s.s_prev, s.s_next, s.s_head, s.s_tail, [](const State& x, int c) { return x.top[c] != NO_CELL; },
               stacks))
    return bad("stack order list");
  int all_markers = 0;
  for (int p = 1; p <= np; p++) all_markers += markers[p];
  if (!list_ok(s.m_prev, s.m_next, s.m_head, s.m_tail, [](const State& x, int c) { return x.marker[c] != 0; },
               all_markers))
    return bad("marker order list");
  if (s.status == ST_ACTIVE) {
    if (s.phase == PH_GAME_OVER) return bad("an active game in phase game_over");
    if (s.phase == PH_CAPTURE && (s.capture_origin == NO_CELL || s.ctrl[s.capture_origin] != s.current))
      return bad("capture origin");
    if (s.phase == PH_CHAIN_CAPTURE && (s.chain_pos == NO_CELL || s.ctrl[s.chain_pos] != s.current))
      return bad("chain capture position");
    if (s.phase == PH_FORCED_ELIMINATION && s.ctrl_stacks[s.current] == 0) return bad("forced elimination");
  }
  return "";
}

}  // namespace pyarg
}  // namespace rr
