// The fixed-size game state and the board primitives every rule is built from.
// Rings are physical objects in a pool; a stack is a singly linked list of ring ids from its top
// to its bottom, so moving a stack, capturing (append at the bottom) and eliminating are O(1)
// and the state never allocates. Stacks and markers also keep the reference's map insertion
// order as intrusive doubly linked lists, because the recovery auto-pick and the order of the
// legal-move list depend on it.
#pragma once
#include "geometry.h"

namespace rr {

struct LpsTracker {
  int16_t round_index;
  uint8_t first_player;          // currentRoundFirstPlayer, 0 = unset
  uint8_t mask_set;              // bit p: player p has an entry in the round's actor mask
  uint8_t mask_val;              // bit p: that entry is true (p had a real action)
  uint8_t exclusive_completed;   // exclusivePlayerForCompletedRound, 0 = none
  uint8_t consecutive_player;    // 0 = none
  int16_t consecutive_rounds;
};

struct State {
  // configuration
  uint8_t board;
  uint8_t num_players;
  uint8_t swap_rule;
  uint8_t lps_rounds_required;
  int16_t rings_per_player;
  int16_t victory_threshold;
  int16_t territory_minimum;
  // turn and result
  uint8_t phase;
  uint8_t status;
  uint8_t current;
  uint8_t winner;
  uint8_t reason;
  uint8_t last_actor;  // player of the last applied move (stalemate ladder), 0 before any move
  int32_t move_count;
  // transient rule fields (see RULES.md 3.5 / 3.6)
  int16_t must_move;       // mustMoveFromStackKey
  int16_t chain_pos;       // chainCapturePosition
  int16_t capture_origin;  // landing of the move_stack that opened the capture phase
  uint8_t pending_line;    // pendingLineRewardElimination (hashed)
  uint8_t pending_territory;  // a territory self-elimination is owed
  uint8_t turn_used_recovery;
  uint8_t turn_had_action;
  uint8_t no_region_hint;  // set when the territory surface is known to hold no region (a cache)
  uint8_t p1_moved, p2_moved_non_swap, swap_done;  // pie-rule eligibility
  LpsTracker lps;
  // per player, index 1..num_players
  int16_t hand[MAX_PLAYERS + 1];
  int16_t elim[MAX_PLAYERS + 1];          // eliminatedRings credited to the player
  int16_t elim_colour[MAX_PLAYERS + 1];   // rings of this colour eliminated (not hashed; conservation)
  int16_t terr[MAX_PLAYERS + 1];          // territorySpaces counter
  int16_t board_rings[MAX_PLAYERS + 1];   // rings of this colour on the board
  int16_t ctrl_stacks[MAX_PLAYERS + 1];   // stacks controlled
  int16_t collapsed_count[MAX_PLAYERS + 1];
  int16_t marker_count[MAX_PLAYERS + 1];
  int16_t num_stacks;
  // per cell
  int16_t top[MAX_CELLS];     // top ring id, NO_CELL when no stack
  int16_t bottom[MAX_CELLS];  // bottom ring id
  int16_t height[MAX_CELLS];
  uint8_t cap[MAX_CELLS];
  uint8_t ctrl[MAX_CELLS];       // controlling player, 0 = no stack
  uint8_t marker[MAX_CELLS];     // marker owner, 0 = none
  uint8_t collapsed[MAX_CELLS];  // collapsed owner, 0 = not collapsed
  // insertion-ordered lists
  int16_t s_prev[MAX_CELLS], s_next[MAX_CELLS], s_head, s_tail;
  int16_t m_prev[MAX_CELLS], m_next[MAX_CELLS], m_head, m_tail;
  // ring pool
  uint8_t ring_owner[MAX_RINGS];
  int16_t ring_next[MAX_RINGS];
  int16_t free_ring;
  // Cells whose stack, marker or collapsed owner changed since a step hasher last looked (the
  // self-play recorder's incremental step hash, fast_hash.h: CellHashTracker): n_touched counts
  // the notes since the hasher cleared it, and touched[] keeps the first TOUCH_MAX of them; a
  // count above TOUCH_MAX tells the hasher to read the whole board. Bookkeeping for that hasher
  // only: the rules never read it, and without a hasher the count just wraps.
  uint16_t n_touched;
  int16_t touched[TOUCH_MAX];
};

// Note that cell c's stack, marker or collapsed owner is about to change (or just changed).
// Branch-free: it runs on every board change, recorded or not.
RR_HD inline void touch_cell(State& s, int c) {
  s.touched[s.n_touched & (TOUCH_MAX - 1)] = (int16_t)c;
  s.n_touched++;
}

// ---- ordered list helpers -------------------------------------------------------------

RR_HD inline void olist_append(int16_t* prev, int16_t* next, int16_t& head, int16_t& tail, int c) {
  prev[c] = tail;
  next[c] = NO_CELL;
  if (tail != NO_CELL) next[tail] = (int16_t)c; else head = (int16_t)c;
  tail = (int16_t)c;
}
RR_HD inline void olist_remove(int16_t* prev, int16_t* next, int16_t& head, int16_t& tail, int c) {
  if (prev[c] != NO_CELL) next[prev[c]] = next[c]; else head = next[c];
  if (next[c] != NO_CELL) prev[next[c]] = prev[c]; else tail = prev[c];
  prev[c] = next[c] = NO_CELL;
}

// ---- stacks ------------------------------------------------------------------------------

// Recompute controller and cap of the stack at c from its rings, keeping the counters right.
RR_HD inline void stack_refresh(State& s, int c) {
  touch_cell(s, c);
  if (s.ctrl[c]) s.ctrl_stacks[s.ctrl[c]]--;
  int r = s.top[c];
  uint8_t owner = s.ring_owner[r];
  int cap = 0;
  while (r != NO_CELL && s.ring_owner[r] == owner) {
    cap++;
    r = s.ring_next[r];
  }
  s.ctrl[c] = owner;
  s.cap[c] = (uint8_t)(cap > 255 ? 255 : cap);
  s.ctrl_stacks[owner]++;
}

// Detach the stack at c from the cell (its rings stay linked); returns nothing, caller re-homes it.
RR_HD inline void stack_detach(State& s, int c) {
  touch_cell(s, c);
  olist_remove(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
  s.ctrl_stacks[s.ctrl[c]]--;
  s.ctrl[c] = 0;
  s.top[c] = s.bottom[c] = NO_CELL;
  s.height[c] = 0;
  s.cap[c] = 0;
  s.num_stacks--;
}

// Attach a ring chain as the stack at an empty cell c, appended to the stack order.
RR_HD inline void stack_attach(State& s, int c, int16_t top, int16_t bottom, int16_t height) {
  s.top[c] = top;
  s.bottom[c] = bottom;
  s.height[c] = height;
  s.ctrl[c] = 0;
  olist_append(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
  s.num_stacks++;
  stack_refresh(s, c);
}

// Move a stack to the end of the insertion order (the reference deletes and re-sets the key).
RR_HD inline void stack_reinsert(State& s, int c) {
  olist_remove(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
  olist_append(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
}

RR_HD inline int16_t ring_alloc(State& s, uint8_t owner) {
  int16_t r = s.free_ring;
  s.free_ring = s.ring_next[r];
  s.ring_owner[r] = owner;
  s.ring_next[r] = NO_CELL;
  return r;
}
RR_HD inline void ring_free(State& s, int16_t r) {
  s.ring_next[r] = s.free_ring;
  s.free_ring = r;
}

// Put n rings of player p on top of cell c (creating the stack if needed).
RR_HD inline void stack_push_rings(State& s, int c, uint8_t p, int n) {
  for (int i = 0; i < n; i++) {
    int16_t r = ring_alloc(s, p);
    if (s.top[c] == NO_CELL) {
      s.top[c] = s.bottom[c] = r;
      s.height[c] = 1;
      s.ctrl[c] = 0;
      olist_append(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
      s.num_stacks++;
    } else {
      s.ring_next[r] = s.top[c];
      s.top[c] = r;
      s.height[c]++;
    }
  }
  s.board_rings[p] += (int16_t)n;
  stack_refresh(s, c);
}

// Remove the whole (now empty) stack at c.
RR_HD inline void stack_erase_empty(State& s, int c) {
  touch_cell(s, c);
  olist_remove(s.s_prev, s.s_next, s.s_head, s.s_tail, c);
  if (s.ctrl[c]) s.ctrl_stacks[s.ctrl[c]]--;
  s.ctrl[c] = 0;
  s.top[c] = s.bottom[c] = NO_CELL;
  s.height[c] = 0;
  s.cap[c] = 0;
  s.num_stacks--;
}

// Eliminate the top k rings of the stack at c, crediting `credit`. Returns rings removed.
RR_HD inline int stack_eliminate_top(State& s, int c, int k, uint8_t credit) {
  int removed = 0;
  while (removed < k && s.top[c] != NO_CELL) {
    int16_t r = s.top[c];
    s.top[c] = s.ring_next[r];
    s.board_rings[s.ring_owner[r]]--;
    s.elim_colour[s.ring_owner[r]]++;
    ring_free(s, r);
    s.height[c]--;
    removed++;
  }
  s.elim[credit] += (int16_t)removed;
  if (s.height[c] == 0) {
    s.bottom[c] = NO_CELL;
    stack_erase_empty(s, c);
  } else {
    stack_refresh(s, c);
  }
  return removed;
}

// Index (0 = top) of the bottom-most ring of player p strictly below the top, or -1.
RR_HD inline int stack_bottommost_buried(const State& s, int c, uint8_t p) {
  int idx = 0, found = -1;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r], idx++)
    if (idx > 0 && s.ring_owner[r] == p) found = idx;
  return found;
}

// Remove the ring at depth idx (> 0) of the stack at c, crediting `credit`.
RR_HD inline void stack_extract_at(State& s, int c, int idx, uint8_t credit) {
  int16_t prev = s.top[c];
  for (int i = 1; i < idx; i++) prev = s.ring_next[prev];
  int16_t r = s.ring_next[prev];
  s.ring_next[prev] = s.ring_next[r];
  if (s.bottom[c] == r) s.bottom[c] = prev;
  s.board_rings[s.ring_owner[r]]--;
  s.elim_colour[s.ring_owner[r]]++;
  ring_free(s, r);
  s.height[c]--;
  s.elim[credit]++;
  stack_refresh(s, c);
}

// ---- markers and collapsed cells -----------------------------------------------------------

RR_HD inline void marker_set(State& s, int c, uint8_t p) {
  touch_cell(s, c);
  if (s.marker[c]) {
    s.marker_count[s.marker[c]]--;  // a flip keeps the marker's insertion position
  } else {
    olist_append(s.m_prev, s.m_next, s.m_head, s.m_tail, c);
  }
  s.marker[c] = p;
  s.marker_count[p]++;
}
RR_HD inline void marker_remove(State& s, int c) {
  if (!s.marker[c]) return;
  touch_cell(s, c);
  s.marker_count[s.marker[c]]--;
  s.marker[c] = 0;
  olist_remove(s.m_prev, s.m_next, s.m_head, s.m_tail, c);
}

// Collapse c for player p: clears a marker; a stack there goes back to its owners' hands
// (never happens in canonical play, kept for completeness). Does not touch territorySpaces.
RR_HD inline void cell_collapse(State& s, int c, uint8_t p) {
  marker_remove(s, c);
  if (s.top[c] != NO_CELL) {
    for (int16_t r = s.top[c]; r != NO_CELL;) {
      int16_t nx = s.ring_next[r];
      s.hand[s.ring_owner[r]]++;
      s.board_rings[s.ring_owner[r]]--;
      ring_free(s, r);
      r = nx;
    }
    stack_erase_empty(s, c);
  }
  if (!s.collapsed[c]) {
    touch_cell(s, c);
    s.collapsed[c] = p;
    s.collapsed_count[p]++;
  }
}

RR_HD inline bool player_has_any_rings(const State& s, int p) { return s.hand[p] > 0 || s.board_rings[p] > 0; }

// Bitboards of the cells whose byte in a per-cell array of State (marker, ctrl, collapsed) has
// some value. Cells lie along the grid bits in the geometry's runs (geometry.h: one run on a
// square board, one or two per row on a hex board), so a run's bytes map to consecutive bits.

// Sets 16 bits (one run chunk) of `out` at grid bit b, across a word boundary where needed.
RR_HD inline void bb_put16(BB& out, uint64_t bits, int b) {
  out.w[b >> 6] |= bits << (b & 63);
  if ((b & 63) > 48) out.w[(b >> 6) + 1] |= bits >> (64 - (b & 63));
}

#if RR_HOST_SSE2
// Walks the board in chunks of 16 consecutive cells of a run: chunk(c, b, keep) for each chunk
// that can be loaded whole (cells c..c+15 at grid bits b..b+15, `keep` the ones in the run), and
// cell(c, bit) one by one for the cells of a chunk at the end of the arrays (no load past them)
// or of a geometry without the run table. On an SSE2 host 16 cells then take one compare and
// one movemask per mask, where walking the lists of stacks and markers costs a few instructions
// per stack or marker and the portable fold below 8 cells per load (the same bits either way).
template <class Chunk, class Cell>
inline void for_each_cell_chunk16(const Geometry& g, Chunk&& chunk, Cell&& cell) {
  for (int r = 0; r < g.num_bit_runs; r++) {
    int c = g.run_cell[r], b = g.run_bit[r];
    for (int left = g.run_len[r]; left > 0; c += 16, b += 16, left -= 16) {
      int n = left < 16 ? left : 16;
      if (c + 16 <= MAX_CELLS) {
        chunk(c, b, (1ull << n) - 1);
      } else {
        for (int j = 0; j < n; j++) cell(c + j, b + j);
      }
    }
  }
  if (g.num_bit_runs == 0)
    for (int c = 0; c < g.num_cells; c++) cell(c, g.cell_bit[c]);
}

// The 16 bits of the bytes at p that equal v, or are nonzero when v < 0.
inline uint64_t match16(const uint8_t* p, int v) {
  __m128i x = _mm_loadu_si128((const __m128i*)p);
  uint64_t eq = (uint64_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8((char)(v < 0 ? 0 : v))));
  return v < 0 ? ~eq & 0xFFFFull : eq;
}

// The masks a region scan reads, from one pass over the cell arrays: ctrl[p] and markers[p]
// (p = 1..np) and the collapsed cells.
template <int NW>
inline void scan_masks_sse2(const Geometry& g, const State& s, int np, BB* ctrl, BB* markers, BB& collapsed) {
  for (int i = 0; i < NW; i++) {
    collapsed.w[i] = 0;
    for (int p = 1; p <= np; p++) ctrl[p].w[i] = markers[p].w[i] = 0;
  }
  for_each_cell_chunk16(
      g,
      [&](int c, int b, uint64_t keep) {
        bb_put16(collapsed, match16(s.collapsed + c, -1) & keep, b);
        for (int p = 1; p <= np; p++) {
          bb_put16(ctrl[p], match16(s.ctrl + c, p) & keep, b);
          bb_put16(markers[p], match16(s.marker + c, p) & keep, b);
        }
      },
      [&](int c, int bit) {
        if (s.collapsed[c]) bb_set(collapsed, bit);
        if (s.ctrl[c]) bb_set(ctrl[s.ctrl[c]], bit);
        if (s.marker[c]) bb_set(markers[s.marker[c]], bit);
      });
}

// Stacks (any controller), markers (any colour) and collapsed cells, the same way (placement).
template <int NW>
inline void occupancy_masks_sse2(const Geometry& g, const State& s, BB& stacks, BB& markers, BB& collapsed) {
  for (int i = 0; i < NW; i++) stacks.w[i] = markers.w[i] = collapsed.w[i] = 0;
  for_each_cell_chunk16(
      g,
      [&](int c, int b, uint64_t keep) {
        bb_put16(stacks, match16(s.ctrl + c, -1) & keep, b);
        bb_put16(markers, match16(s.marker + c, -1) & keep, b);
        bb_put16(collapsed, match16(s.collapsed + c, -1) & keep, b);
      },
      [&](int c, int bit) {
        if (s.ctrl[c]) bb_set(stacks, bit);
        if (s.marker[c]) bb_set(markers, bit);
        if (s.collapsed[c]) bb_set(collapsed, bit);
      });
}
#endif

// Collapsed cells as a bitboard (empty when nothing has collapsed). Portable path: branch-free
// per cell (which cells are collapsed is unpredictable, and a mispredicted branch costs more than
// the OR); a run of cells on consecutive grid bits packs 8 cells from one 8-byte load: the three
// folds OR each byte's bits into its bit 0 (bits from the next byte only reach bits 4-7, which
// the mask drops) and the multiply gathers bit 0 of each byte into the top byte. A run's last
// load may take cells past its end, which the length mask drops.
template <int NW>
RR_HD inline void collapsed_bits_n(const Geometry& g, const State& s, BB& out) {
  for (int i = 0; i < NW; i++) out.w[i] = 0;
  int n = 0;
  for (int p = 0; p <= MAX_PLAYERS; p++) n += s.collapsed_count[p];
  if (n == 0) return;
#if RR_HOST_SSE2
  for_each_cell_chunk16(
      g, [&](int c, int b, uint64_t keep) { bb_put16(out, match16(s.collapsed + c, -1) & keep, b); },
      [&](int c, int bit) {
        if (s.collapsed[c]) bb_set(out, bit);
      });
#else
  for (int r = 0; r < g.num_bit_runs; r++) {
    int c = g.run_cell[r], b = g.run_bit[r];
    for (int left = g.run_len[r]; left > 0; c += 8, b += 8, left -= 8) {
      uint64_t bits = 0;
      if (c + 8 <= MAX_CELLS) {
        uint64_t t = load_le64(&s.collapsed[c]);
        t |= t >> 4;
        t |= t >> 2;
        t |= t >> 1;
        t &= 0x0101010101010101ull;
        bits = (t * 0x0102040810204080ull) >> 56;
      } else {  // the last cells of the array: no load past its end
        for (int j = 0; j < 8 && c + j < MAX_CELLS; j++) bits |= (uint64_t)(s.collapsed[c + j] != 0) << j;
      }
      if (left < 8) bits &= (1ull << left) - 1;
      out.w[b >> 6] |= bits << (b & 63);
      if ((b & 63) > 56) out.w[(b >> 6) + 1] |= bits >> (64 - (b & 63));
    }
  }
  if (g.num_bit_runs == 0)  // a geometry without the run table
    for (int c = 0; c < g.num_cells; c++) {
      int bit = g.cell_bit[c];
      out.w[bit >> 6] |= (uint64_t)(s.collapsed[c] != 0) << (bit & 63);
    }
#endif
}

// The region scan's masks (as scan_masks_sse2) from the stack and marker lists: the portable path.
template <int NW>
RR_HD inline void scan_masks_lists(const Geometry& g, const State& s, int np, BB* ctrl, BB* markers, BB& collapsed) {
  for (int i = 0; i < NW; i++)
    for (int p = 1; p <= np; p++) ctrl[p].w[i] = markers[p].w[i] = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) bb_set(ctrl[s.ctrl[c]], g.cell_bit[c]);
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) bb_set(markers[s.marker[c]], g.cell_bit[c]);
  collapsed_bits_n<NW>(g, s, collapsed);
}

// ---- initial state ---------------------------------------------------------------------------

RR_HD inline void init_state(State& s, const Geometry& g, int num_players, bool swap_rule) {
  // Plain field-wise reset (no memset on device paths that may not have it).
  uint8_t* raw = (uint8_t*)&s;
  for (unsigned i = 0; i < sizeof(State); i++) raw[i] = 0;
  s.board = g.board;
  s.num_players = (uint8_t)num_players;
  s.swap_rule = (swap_rule && num_players == 2) ? 1 : 0;
  s.lps_rounds_required = 3;
  int R = g.rings_per_player;
  s.rings_per_player = (int16_t)R;
  // round(R * (2/3 + (n-1)/3)) == round(R * (n+1) / 3)
  s.victory_threshold = (int16_t)((2 * R * (num_players + 1) + 3) / 6);
  s.territory_minimum = (int16_t)(g.num_cells / num_players + 1);
  s.phase = PH_RING_PLACEMENT;
  s.status = ST_ACTIVE;
  s.current = 1;
  s.must_move = s.chain_pos = s.capture_origin = NO_CELL;
  for (int p = 1; p <= num_players; p++) s.hand[p] = (int16_t)R;
  for (int c = 0; c < MAX_CELLS; c++) {
    s.top[c] = s.bottom[c] = NO_CELL;
    s.s_prev[c] = s.s_next[c] = s.m_prev[c] = s.m_next[c] = NO_CELL;
  }
  s.s_head = s.s_tail = s.m_head = s.m_tail = NO_CELL;
  // The whole pool is free: canonical play uses R per player; loaded positions may hold more.
  // (the last link set apart, so that the loop is a plain ramp the compiler vectorizes)
  for (int r = 0; r + 1 < MAX_RINGS; r++) s.ring_next[r] = (int16_t)(r + 1);
  s.ring_next[MAX_RINGS - 1] = NO_CELL;
  s.free_ring = 0;
}

}  // namespace rr
