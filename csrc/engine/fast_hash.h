// The self-play step hash: a cheap 64-bit hash of the whole rules state, for recording a game
// after every move. The reference hash (hash.h) streams a text fingerprint character by
// character and costs about a third of a recorded self-play step; this one mixes 64-bit words
// and costs a few percent. It is exact in the sense that it reads every field that decides how
// the game goes on (the reference hash leaves out the rings below a stack's cap, the stacks'
// insertion order and the turn bookkeeping), so two states with the same reference fingerprint
// can still differ here, never the other way round. Collisions are checked over self-play
// corpora in tests/test_fast_hash.py (against the reference fingerprint as the key).
//
// Host and device code, no tables and no heap: the same function serves the CPU thread pool,
// the CUDA kernel and the NVRTC kernels. It reads the state only (no incremental bookkeeping in
// the rules files), scanning the stack list and the marker and collapsed arrays. It is two
// parts, the board and the rest, so that the self-play driver rescans the board only after the
// moves that can change it (about half of a game's moves are bookkeeping: game_driver.h).
#pragma once
#include "hash.h"
#include "state.h"

namespace rr {

// Which per-step hash a game record carries (stored per game in the game DB).
enum StepHashKind : uint8_t {
  HASH_REFERENCE = 0,  // state_hash (hash.h): the reference engine's 64-bit hash
  HASH_FAST = 1,       // fast_state_hash, all 64 bits
  HASH_FAST32 = 2,     // fast_state_hash, low 32 bits (what the game DB stores per step)
  HASH_AUTO = 255,     // checkers only: take the kind that the first stored step matches
};

struct FastHashMixer {
  uint64_t h = 0x6A09E667F3BCC909ull;
  RR_HD void add(uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
  }
  // Adds n bytes of an array, 8 at a time, as little-endian words (the host's one unaligned
  // load; the device assembles them byte by byte, with the same result).
  RR_HD void add_bytes(const uint8_t* p, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
#if defined(__CUDA_ARCH__)
      w = 0;
      for (int k = 0; k < 8; k++) w |= (uint64_t)p[i + k] << (8 * k);
#else
      __builtin_memcpy(&w, p + i, 8);  // x86-64 and AArch64 hosts are little-endian
#endif
      add(w);
    }
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

// The board part: every stack in insertion order (the order the rules walk them in) with its
// controller, height and cap, and for a stack with rings of several colours every ring's owner
// from the top down (so the rings below the cap count too); the markers; the collapsed spaces.
RR_HD inline uint64_t fast_board_hash(const Geometry& g, const State& s) {
  FastHashMixer m;
  int stacks = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    m.add((uint64_t)(uint16_t)c | ((uint64_t)(uint16_t)s.height[c] << 16) | ((uint64_t)s.cap[c] << 32) |
          ((uint64_t)s.ctrl[c] << 40));
    if (s.height[c] > s.cap[c]) {  // rings below the cap: their owners, 21 rings (3 bits each) a word
      uint64_t owners = 0;
      int room = 21;
      for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r]) {
        owners = (owners << 3) | s.ring_owner[r];
        if (--room == 0) {
          m.add(owners);
          owners = 0;
          room = 21;
        }
      }
      m.add(owners);
    }
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

// Move types whose rules step never touches the board (stacks, markers, collapsed spaces): only
// the phase, the turn and counters change (rules.h, transition and end_turn). A recorder may keep
// the board part of the previous step's hash after them; tests/test_fast_hash.py checks every
// recorded hash of its corpora against a full fast_state_hash.
RR_HD inline bool move_keeps_board(uint8_t type) {
  switch (type) {
    case MT_SKIP_PLACEMENT:
    case MT_NO_PLACEMENT_ACTION:
    case MT_SKIP_CAPTURE:
    case MT_NO_MOVEMENT_ACTION:
    case MT_SKIP_RECOVERY:
    case MT_NO_LINE_ACTION:
    case MT_SKIP_TERRITORY_PROCESSING:
    case MT_NO_TERRITORY_ACTION:
      return true;
    default:
      return false;
  }
}

// The hash of `kind` (HASH_REFERENCE, HASH_FAST or HASH_FAST32) of a state.
RR_HD inline uint64_t step_hash(const Geometry& g, const State& s, int kind) {
  if (kind == HASH_REFERENCE) return state_hash(g, s);
  uint64_t h = fast_state_hash(g, s);
  return kind == HASH_FAST32 ? (h & 0xFFFFFFFFull) : h;
}

// Compares a stored per-step hash with the state. With kind == HASH_AUTO (a caller that does not
// know what a record carries) the first call settles the kind: the one that matches, cheapest
// first; later calls use it. Returns whether the stored value matches.
RR_HD inline bool step_hash_matches(const Geometry& g, const State& s, uint64_t stored, int& kind) {
  if (kind != HASH_AUTO) return step_hash(g, s, kind) == stored;
  uint64_t f = fast_state_hash(g, s);
  if (f == stored) {
    kind = HASH_FAST;
    return true;
  }
  if ((f & 0xFFFFFFFFull) == stored) {
    kind = HASH_FAST32;
    return true;
  }
  if (state_hash(g, s) == stored) {
    kind = HASH_REFERENCE;
    return true;
  }
  return false;
}

}  // namespace rr
