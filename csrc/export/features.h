// Board planes and global features of one state, from the point of view of the player to move
// (docs/npz_format.md, "Feature planes"). Host/device code: the state is read, never changed.
//
// Players are taken relative to the mover: slot 0 is the player to move, slot k the k-th seat
// after it in turn order (seat ((mover - 1 + k) mod n) + 1). There are always four slots; slots
// k >= num_players are zero. Cells sit at (row, col) = (y + off, x + off) of an H x W grid with
// H = W = grid_w (size on square boards, 2 * radius + 1 on hex boards, off = radius on hex
// boards and 0 on square boards); grid points that are not cells stay zero (mask plane = 0).
#pragma once
#include "engine/engine.h"

namespace rr {

constexpr int FEAT_SLOTS = MAX_PLAYERS;
constexpr int FEAT_PER_SLOT = 6;
enum FeatSlotPlane : uint8_t {
  FP_STACK = 0,   // 1 where the slot's player controls a stack
  FP_HEIGHT,      // height of that stack, min(h, 10) / 10
  FP_CAP,         // its cap height, min(cap, 10) / 10
  FP_BURIED,      // rings of this colour below the cap of any stack, min(n, 10) / 10
  FP_MARKER,      // 1 where the slot's player has a marker
  FP_COLLAPSED,   // 1 on collapsed cells (territory) owned by the slot's player
};
constexpr int FEAT_MASK_PLANE = FEAT_SLOTS * FEAT_PER_SLOT;  // 24: 1 on board cells
constexpr int FEAT_ANCHOR_PLANE = FEAT_MASK_PLANE + 1;       // 25: the stack that must act
constexpr int FEAT_PLANES = FEAT_ANCHOR_PLANE + 1;           // 26
constexpr float FEAT_CLIP = 10.0f;

// Globals.
constexpr int FG_PHASE = 0;                          // 8: phase one-hot (PHASES order)
constexpr int FG_SLOT = FG_PHASE + NUM_PHASES;       // 4 x 6 per slot, below
constexpr int FG_PER_SLOT = 6;
enum FeatSlotGlobal : uint8_t {
  FGS_PRESENT = 0,    // the slot is a seat of this game (slot < num_players)
  FGS_ALIVE,          // the player still owns a ring (in hand or on the board)
  FGS_HAND,           // rings in hand / rings per player
  FGS_ELIMINATED,     // eliminated rings credited to the player / ring-elimination threshold
  FGS_TERRITORY,      // collapsed cells owned / territory-victory minimum
  FGS_ON_BOARD,       // rings of this colour on the board / rings per player
};
constexpr int FG_FLAGS = FG_SLOT + FEAT_SLOTS * FG_PER_SLOT;  // 32
enum FeatFlag : uint8_t {
  FGF_PENDING_LINE = 0,       // a line-reward elimination is owed
  FGF_PENDING_TERRITORY,      // a territory self-elimination is owed
  FGF_USED_RECOVERY,          // the mover made a recovery slide this turn
  FGF_HAD_ACTION,             // the mover made a non-bookkeeping move this turn
  FGF_SWAP_OFFERED,           // swap_sides (pie rule) is on offer
  NUM_FEAT_FLAGS
};
constexpr int FG_NUM_PLAYERS = FG_FLAGS + NUM_FEAT_FLAGS;  // 37: 3, one-hot of 2 / 3 / 4 players
constexpr int FG_LPS = FG_NUM_PLAYERS + 3;                 // 40: 4 per slot, LPS exclusive rounds / required
constexpr int FEAT_GLOBALS = FG_LPS + FEAT_SLOTS;          // 44

struct FeatureGrid {
  int16_t h, w;
  int16_t pix[MAX_CELLS];  // cell -> row * w + col
};

RR_HD inline void build_feature_grid(const Geometry& g, FeatureGrid& f) {
  f.h = f.w = g.grid_w;
  int off = g.hex ? g.radius : 0;
  for (int c = 0; c < g.num_cells; c++) f.pix[c] = (int16_t)((g.cy[c] + off) * f.w + (g.cx[c] + off));
}

RR_HD inline float feat_clip(int v) { return (float)(v < (int)FEAT_CLIP ? v : (int)FEAT_CLIP) / FEAT_CLIP; }

RR_HD inline float safe_ratio(int v, int d) { return d > 0 ? (float)v / (float)d : 0.0f; }

// Write the planes (FEAT_PLANES x h x w floats) and globals (FEAT_GLOBALS floats) of `s`.
RR_HD inline void encode_features(const Geometry& g, const FeatureGrid& f, const State& s, float* planes,
                                  float* globals) {
  const int hw = f.h * f.w;
  for (int i = 0; i < FEAT_PLANES * hw; i++) planes[i] = 0.0f;
  for (int i = 0; i < FEAT_GLOBALS; i++) globals[i] = 0.0f;
  const int n = s.num_players;
  const int mover = s.current;
  int slot[MAX_PLAYERS + 1];
  slot[0] = 0;
  for (int p = 1; p <= MAX_PLAYERS; p++) slot[p] = p <= n ? (p - mover + n) % n : 0;
  float* mask = planes + FEAT_MASK_PLANE * hw;
  for (int c = 0; c < g.num_cells; c++) mask[f.pix[c]] = 1.0f;
  // Stacks: controller planes, and rings below the cap by colour.
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    const int px = f.pix[c];
    float* base = planes + slot[s.ctrl[c]] * FEAT_PER_SLOT * hw;
    base[FP_STACK * hw + px] = 1.0f;
    base[FP_HEIGHT * hw + px] = feat_clip(s.height[c]);
    base[FP_CAP * hw + px] = feat_clip(s.cap[c]);
    if (s.height[c] > s.cap[c]) {
      int below[MAX_PLAYERS + 1] = {0, 0, 0, 0, 0};
      int r = s.top[c];
      for (int i = 0; i < s.cap[c] && r != NO_CELL; i++) r = s.ring_next[r];
      for (; r != NO_CELL; r = s.ring_next[r]) below[s.ring_owner[r]]++;
      for (int p = 1; p <= n; p++)
        if (below[p]) planes[(slot[p] * FEAT_PER_SLOT + FP_BURIED) * hw + px] = feat_clip(below[p]);
    }
  }
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c])
    planes[(slot[s.marker[c]] * FEAT_PER_SLOT + FP_MARKER) * hw + f.pix[c]] = 1.0f;
  for (int c = 0; c < g.num_cells; c++)
    if (s.collapsed[c]) planes[(slot[s.collapsed[c]] * FEAT_PER_SLOT + FP_COLLAPSED) * hw + f.pix[c]] = 1.0f;
  int anchor = NO_CELL;
  if (s.phase == PH_MOVEMENT) anchor = s.must_move;
  else if (s.phase == PH_CAPTURE) anchor = s.capture_origin;
  else if (s.phase == PH_CHAIN_CAPTURE) anchor = s.chain_pos;
  if (anchor != NO_CELL) planes[FEAT_ANCHOR_PLANE * hw + f.pix[anchor]] = 1.0f;

  // Globals.
  if (s.phase < NUM_PHASES) globals[FG_PHASE + s.phase] = 1.0f;
  for (int p = 1; p <= n; p++) {
    float* gs = globals + FG_SLOT + slot[p] * FG_PER_SLOT;
    gs[FGS_PRESENT] = 1.0f;
    gs[FGS_ALIVE] = player_has_any_rings(s, p) ? 1.0f : 0.0f;
    gs[FGS_HAND] = safe_ratio(s.hand[p], s.rings_per_player);
    gs[FGS_ELIMINATED] = safe_ratio(s.elim[p], s.victory_threshold);
    gs[FGS_TERRITORY] = safe_ratio(s.collapsed_count[p], s.territory_minimum);
    gs[FGS_ON_BOARD] = safe_ratio(s.board_rings[p], s.rings_per_player);
    if (s.lps.consecutive_player == p)
      globals[FG_LPS + slot[p]] = safe_ratio(s.lps.consecutive_rounds, s.lps_rounds_required);
  }
  globals[FG_FLAGS + FGF_PENDING_LINE] = s.pending_line ? 1.0f : 0.0f;
  globals[FG_FLAGS + FGF_PENDING_TERRITORY] = s.pending_territory ? 1.0f : 0.0f;
  globals[FG_FLAGS + FGF_USED_RECOVERY] = s.turn_used_recovery ? 1.0f : 0.0f;
  globals[FG_FLAGS + FGF_HAD_ACTION] = s.turn_had_action ? 1.0f : 0.0f;
  globals[FG_FLAGS + FGF_SWAP_OFFERED] = swap_offered(s) ? 1.0f : 0.0f;
  if (n >= 2 && n <= 4) globals[FG_NUM_PLAYERS + (n - 2)] = 1.0f;
}

// ---- outcome values ----------------------------------------------------------------------

// Value of finishing at rank r (0 = first) among n players: 1 - 2r / (n - 1), i.e.
// 2p: +1, -1; 3p: +1, 0, -1; 4p: +1, +1/3, -1/3, -1.
RR_HD inline float rank_value(int r, int n) { return n > 1 ? 1.0f - 2.0f * (float)r / (float)(n - 1) : 0.0f; }

// Per-seat values of a final state (index 1..n). The winner ranks first; the other seats are
// ranked by eliminated rings credited to them (more is better), then by collapsed cells owned
// (more is better), then by seat number (lower is better). A game that has not ended (capped)
// is a draw: every seat gets 0.
RR_HD inline void outcome_values(const State& s, float* v /* MAX_PLAYERS + 1 */) {
  const int n = s.num_players;
  for (int p = 0; p <= MAX_PLAYERS; p++) v[p] = 0.0f;
  if (s.status != ST_COMPLETED || s.winner < 1 || s.winner > n) return;
  for (int p = 1; p <= n; p++) {
    int rank = 0;
    if (p != s.winner) {
      rank = 1;
      for (int q = 1; q <= n; q++) {
        if (q == p || q == s.winner) continue;
        bool ahead = s.elim[q] != s.elim[p] ? s.elim[q] > s.elim[p]
                     : s.collapsed_count[q] != s.collapsed_count[p] ? s.collapsed_count[q] > s.collapsed_count[p]
                     : q < p;
        if (ahead) rank++;
      }
    }
    v[p] = rank_value(rank, n);
  }
}

}  // namespace rr
