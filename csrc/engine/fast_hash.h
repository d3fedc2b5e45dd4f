// The self-play step hashes: cheap 64-bit hashes of the whole rules state, for recording a game
// after every move. The reference hash (hash.h) streams a text fingerprint character by
// character and costs about a third of a recorded self-play step; these mix 64-bit words. They
// read every field that decides how the game goes on (the reference hash leaves out the rings
// below a stack's cap and the turn bookkeeping), so two states with the same reference
// fingerprint can still differ here, never the other way round. Collisions are checked over
// self-play corpora in tests/test_fast_hash.py (against the reference fingerprint as the key).
//
// Two of them, both kept because game DBs store them: the fast hash (fast_state_hash, which also
// reads the stacks' insertion order; rows written before the cells hash carry it) scans the
// board; the cells hash (cells_state_hash, what self-play records now) is an XOR of per-cell
// keys that the recorder keeps up to date from the cells each move touched.
//
// Host and device code, no tables and no heap: the same functions serve the CPU thread pool,
// the CUDA kernel and the NVRTC kernels.
#pragma once
#if !defined(__CUDACC_RTC__)
#include <cstddef>  // offsetof
#endif
#include "hash.h"
#include "state.h"

namespace rr {

// Which per-step hash a game record carries (stored per game in the game DB).
enum StepHashKind : uint8_t {
  HASH_REFERENCE = 0,  // state_hash (hash.h): the reference engine's 64-bit hash
  HASH_FAST = 1,       // fast_state_hash, all 64 bits
  HASH_FAST32 = 2,     // fast_state_hash, low 32 bits (game DBs written before the cells hash)
  HASH_CELLS = 3,      // cells_state_hash, all 64 bits
  HASH_CELLS32 = 4,    // cells_state_hash, low 32 bits (what the game DB stores per step now)
  HASH_AUTO = 255,     // checkers only: take the kind that the first stored step matches
};

struct FastHashMixer {
  uint64_t h = 0x6A09E667F3BCC909ull;
  RR_HD void add(uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  // Adds n bytes of an array, 8 at a time, as little-endian words.
  RR_HD void add_bytes(const uint8_t* p, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) add(load_le64(p + i));
    uint64_t w = 0;
    for (int k = 0; i + k < n; k++) w |= (uint64_t)p[i + k] << (8 * k);
    add(w ^ ((uint64_t)n << 56));  // the length closes the array
  }
  RR_HD uint64_t finish() const {
    uint64_t x = h;  // murmur3's fmix64: every input bit reaches every output bit
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
  }
};

RR_HD inline uint64_t pack16x4(int a, int b, int c, int d) {
  return (uint64_t)(uint16_t)a | ((uint64_t)(uint16_t)b << 16) | ((uint64_t)(uint16_t)c << 32) |
         ((uint64_t)(uint16_t)d << 48);
}

RR_HD inline uint64_t pack8x8(int a, int b, int c, int d, int e, int f, int g, int h) {
  return (uint64_t)(uint8_t)a | ((uint64_t)(uint8_t)b << 8) | ((uint64_t)(uint8_t)c << 16) |
         ((uint64_t)(uint8_t)d << 24) | ((uint64_t)(uint8_t)e << 32) | ((uint64_t)(uint8_t)f << 40) |
         ((uint64_t)(uint8_t)g << 48) | ((uint64_t)(uint8_t)h << 56);
}

// The owners of the stack at c's rings from the top down, 3 bits a ring, 21 rings a word: calls
// add(word) for each full word and once more for the last (possibly partial, possibly empty) one.
template <class Add>
RR_HD inline void for_each_owner_word(const State& s, int c, Add add) {
  uint64_t owners = 0;
  int room = 21;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r]) {
    owners = (owners << 3) | s.ring_owner[r];
    if (--room == 0) {
      add(owners);
      owners = 0;
      room = 21;
    }
  }
  add(owners);
}

// The board part: every stack in insertion order (the order the rules walk them in) with its
// controller, height and cap, and for a stack with rings of several colours every ring's owner
// from the top down (so the rings below the cap count too); the markers; the collapsed spaces.
RR_HD inline uint64_t fast_board_hash(const Geometry& g, const State& s) {
  FastHashMixer m;
  int stacks = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    m.add((uint64_t)(uint16_t)c | ((uint64_t)(uint16_t)s.height[c] << 16) | ((uint64_t)s.cap[c] << 32) |
          ((uint64_t)s.ctrl[c] << 40));
    if (s.height[c] > s.cap[c])  // rings below the cap: their owners
      for_each_owner_word(s, c, [&](uint64_t owners) { m.add(owners); });
    stacks++;
  }
  m.add(0xFFFF0000ull | (uint64_t)(uint16_t)stacks);
  m.add_bytes(s.marker, g.num_cells);
  m.add_bytes(s.collapsed, g.num_cells);
  return m.finish();
}

// The whole hash from the board part: the turn, result and transient rule fields
// (no_region_hint is a cache and is left out) and the per-player counters, then the board.
RR_HD inline uint64_t fast_hash_with_board(const State& s, uint64_t board) {
  FastHashMixer m;
  m.add(pack8x8(s.board, s.num_players, s.phase, s.status, s.current, s.winner, s.reason, s.last_actor));
  m.add(pack16x4(s.must_move, s.chain_pos, s.capture_origin,
                 s.pending_line | (s.pending_territory << 4) | (s.turn_used_recovery << 8) |
                     (s.turn_had_action << 12)));
  m.add(pack8x8(s.p1_moved, s.p2_moved_non_swap, s.swap_done, s.lps.first_player, s.lps.mask_set, s.lps.mask_val,
                s.lps.exclusive_completed, s.lps.consecutive_player));
  m.add(pack16x4(s.lps.round_index, s.lps.consecutive_rounds, s.swap_rule, s.lps_rounds_required));
  for (int p = 1; p <= s.num_players; p++) m.add(pack16x4(s.hand[p], s.elim[p], s.terr[p], s.elim_colour[p]));
  m.add(board);
  return m.finish();
}

RR_HD inline uint64_t fast_state_hash(const Geometry& g, const State& s) {
  return fast_hash_with_board(s, fast_board_hash(g, s));
}

// ---- the cells hash: the same state, hashed so that a step costs what it changes ----------------
// The board part is an XOR over cells of a key per occupied cell (its stack with every ring's
// owner, its marker, its collapsed owner), so a recorder can keep it up to date from the cells the
// rules noted as touched (state.h: touch_cell) instead of rescanning the board after every move:
// on square8 that halves the recording cost, on the big boards it removes most of it. Unlike
// fast_board_hash it leaves out the insertion order of stacks and markers (as the reference
// hash does); every other field it reads is the same.

// A 64-bit key from a small integer (splitmix64's finaliser: distinct inputs, well-spread keys).
RR_HD inline uint64_t cell_key_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key of the stack at c (0 for none): cell, height, cap and controller, and for a stack
// with rings of several colours every ring's owner from the top down.
RR_HD inline uint64_t stack_cell_key(const State& s, int c) {
  if (s.top[c] == NO_CELL) return 0;
  uint64_t k = cell_key_mix((uint64_t)(uint16_t)c | ((uint64_t)(uint16_t)s.height[c] << 16) |
                            ((uint64_t)s.cap[c] << 32) | ((uint64_t)s.ctrl[c] << 40) | (1ull << 48));
  if (s.height[c] > s.cap[c]) {  // rings below the cap: their owners (the last word tagged)
    uint64_t last = 0;
    bool first = true;
    for_each_owner_word(s, c, [&](uint64_t owners) {
      if (!first) k = cell_key_mix(k ^ last);
      last = owners;
      first = false;
    });
    k = cell_key_mix(k ^ last ^ 0x5A5A000000000000ull);
  }
  return k;
}

RR_HD inline uint64_t marker_cell_key(int c, int owner) {
  return owner ? cell_key_mix((uint64_t)(uint16_t)c | ((uint64_t)owner << 16) | (2ull << 48)) : 0;
}
RR_HD inline uint64_t collapsed_cell_key(int c, int owner) {
  return owner ? cell_key_mix((uint64_t)(uint16_t)c | ((uint64_t)owner << 16) | (3ull << 48)) : 0;
}

// Everything on cell c, as one key (0 for an empty cell).
RR_HD inline uint64_t cell_key(const State& s, int c) {
  return stack_cell_key(s, c) ^ marker_cell_key(c, s.marker[c]) ^ collapsed_cell_key(c, s.collapsed[c]);
}

// The board part from scratch: the XOR of every occupied cell's key.
RR_HD inline uint64_t cells_board_hash(const Geometry& g, const State& s) {
  uint64_t b = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) b ^= stack_cell_key(s, c);
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) b ^= marker_cell_key(c, s.marker[c]);
  int collapsed = 0;
  for (int p = 0; p <= MAX_PLAYERS; p++) collapsed += s.collapsed_count[p];
  for (int c = 0; collapsed > 0 && c < g.num_cells; c++)
    if (s.collapsed[c]) {
      b ^= collapsed_cell_key(c, s.collapsed[c]);
      collapsed--;
    }
  return b;
}

// The rest of the cells hash reads the head of State as it lies in memory, 8 bytes at a time:
// every field of it but move_count and the no_region_hint cache, in this order. Those bytes
// hold no padding, and stored game DBs depend on them, so a change to these fields or their
// order is a new hash kind, not an edit: the asserts below stop a build that moved them.
#if !defined(__CUDACC_RTC__)
static_assert(offsetof(State, board) == 0 && offsetof(State, territory_minimum) == 8 &&
                  offsetof(State, phase) == 10 && offsetof(State, last_actor) == 15 &&
                  offsetof(State, move_count) == 16 && offsetof(State, must_move) == 20 &&
                  offsetof(State, capture_origin) == 24 && offsetof(State, pending_line) == 26 &&
                  offsetof(State, no_region_hint) == 30 && offsetof(State, swap_done) == 33 &&
                  offsetof(State, lps) == 34 && sizeof(LpsTracker) == 10 && offsetof(State, hand) == 44 &&
                  offsetof(State, elim) == 54 && offsetof(State, elim_colour) == 64 &&
                  offsetof(State, terr) == 74 && offsetof(State, board_rings) == 84 && MAX_PLAYERS == 4,
              "the cells hash reads State's first 84 bytes by offset: moving these fields changes every "
              "stored cells hash (fast_hash.h)");
#endif

// The whole cells hash: the configuration, turn, result, transient rule fields, last-player-
// standing tracker and the per-seat hand, eliminated, eliminated-colour and territory counters
// (bytes 0-15 and 20-83 of State, byte 30 left out), then the board part (tagged, so that it
// never equals a fast hash of the same state by design).
RR_HD inline uint64_t cells_hash_with_board(const State& s, uint64_t board) {
  const uint8_t* b = reinterpret_cast<const uint8_t*>(&s);
  FastHashMixer m;
  m.add(load_le64(b));
  m.add(load_le64(b + 8));
  m.add(load_le64(b + 20));
  m.add(load_le64(b + 28) & ~(0xFFull << 16));  // byte 30: no_region_hint, a cache
  for (int o = 36; o < 84; o += 8) m.add(load_le64(b + o));
  m.add(board ^ 0xC3115C3115C3115Cull);
  return m.finish();
}

RR_HD inline uint64_t cells_state_hash(const Geometry& g, const State& s) {
  return cells_hash_with_board(s, cells_board_hash(g, s));
}

// Keeps the cells hash's board part of one game up to date, host side: reset() reads every cell
// once, update() after each step re-reads only the cells the rules touched (state.h) and clears
// the list. 8 bytes a cell; the CUDA kernel recomputes cells_board_hash instead (same value).
struct CellHashTracker {
  uint64_t key[MAX_CELLS];
  uint64_t board = 0;

  RR_HD void reset(const Geometry& g, State& s) {
    board = 0;
    for (int c = 0; c < g.num_cells; c++) board ^= (key[c] = cell_key(s, c));
    s.n_touched = 0;
  }
  RR_HD void update(const Geometry& g, State& s) {
    const int n = s.n_touched;
    if (n > TOUCH_MAX) return reset(g, s);  // more cells than the list holds: read them all
    for (int i = 0; i < n; i++) {
      int c = s.touched[i];
      if ((unsigned)c >= (unsigned)g.num_cells) return reset(g, s);  // a damaged list: read it all
      if (i > 0 && c == s.touched[i - 1]) continue;  // a third of the notes repeat the one before
      uint64_t k = cell_key(s, c);
      board ^= key[c] ^ k;
      key[c] = k;
    }
    s.n_touched = 0;
  }
};

// The hash of `kind` (HASH_REFERENCE, HASH_FAST, HASH_FAST32, HASH_CELLS or HASH_CELLS32) of a state.
RR_HD inline uint64_t step_hash(const Geometry& g, const State& s, int kind) {
  if (kind == HASH_REFERENCE) return state_hash(g, s);
  uint64_t h = (kind == HASH_CELLS || kind == HASH_CELLS32) ? cells_state_hash(g, s) : fast_state_hash(g, s);
  return (kind == HASH_FAST32 || kind == HASH_CELLS32) ? (h & 0xFFFFFFFFull) : h;
}

// Compares a stored per-step hash with the state. With kind == HASH_AUTO (a caller that does not
// know what a record carries) the first call settles the kind: the one that matches, cheapest
// first; later calls use it. Returns whether the stored value matches.
RR_HD inline bool step_hash_matches(const Geometry& g, const State& s, uint64_t stored, int& kind) {
  if (kind != HASH_AUTO) return step_hash(g, s, kind) == stored;
  // Each of our 64-bit hashes, whole or as its low 32 bits, then the reference hash.
  const int kinds[2][2] = {{HASH_CELLS, HASH_CELLS32}, {HASH_FAST, HASH_FAST32}};
  for (int k = 0; k < 2; k++) {
    uint64_t h = k == 0 ? cells_state_hash(g, s) : fast_state_hash(g, s);
    if (h == stored || (h & 0xFFFFFFFFull) == stored) {
      kind = kinds[k][h == stored ? 0 : 1];
      return true;
    }
  }
  if (state_hash(g, s) == stored) {
    kind = HASH_REFERENCE;
    return true;
  }
  return false;
}

}  // namespace rr
