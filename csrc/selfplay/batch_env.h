// A batch environment: many games of one board, advanced in lock step by an outside policy (a
// neural network in the loop), over arrays that stay where the caller allocated them (numpy on
// the host, cupy on the GPU). Everything here is per slot and host/device code: the CUDA kernels
// in env_kernel.cu run one slot per thread, the binding file's host twin loops the same
// functions, so CI checks on the CPU the code a GPU runs.
//
// Actions are canonical action indices (export/action_space.h, docs/npz_format.md): the mask of
// a state has a 1 at the canonical index of every playable move, and step accepts exactly those
// indices. "Playable" is the legal surface minus the few moves the reference's transition
// function rejects (reference_rejects), so a policy that samples from the mask never plays a
// move the reference would refuse.
#pragma once
#include "export/action_space.h"
#include "export/features.h"
#include "selfplay/policy.h"

namespace rr {

// Read-only per-board tables; the host builds them, the GPU gets one copy.
struct EnvTables {
  Geometry geo;
  ActionSpace space;
  FeatureGrid grid;
};

// Why an action could not be decoded (0 = decoded, or the slot was skipped).
enum EnvError : uint8_t {
  ENV_OK = 0,
  ENV_GAME_OVER,      // an action was given for a finished game (give -1 to leave a slot alone)
  ENV_OUT_OF_RANGE,   // not an index of the board's action space
  ENV_NOT_PLAYABLE,   // no playable move of this state has that canonical index
  ENV_LIST_OVERFLOW,  // the legal surface overflowed MAX_MOVES: the state cannot be stepped
};

constexpr int32_t ENV_NO_ACTION = -1;

// Per-slot outputs: summary fields a driver loop needs without reading State bytes.
struct EnvInfo {
  uint8_t* current;     // [n] player to move (1..4)
  uint8_t* phase;       // [n] Phase
  uint8_t* done;        // [n] 1 once the game is over
  uint8_t* winner;      // [n] 0 = none yet
  uint8_t* reason;      // [n] VictoryReason
  int32_t* move_count;  // [n] moves played
  int32_t* num_actions; // [n] set bits in the slot's mask row (after observe; -1 = surface overflowed)
  float* values;        // [n * MAX_PLAYERS] outcome value per seat 1..4 (0 until the game ends)
};

RR_HD inline void env_write_info(const State& s, const EnvInfo& o, int slot) {
  o.current[slot] = s.current;
  o.phase[slot] = s.phase;
  o.done[slot] = s.status != ST_ACTIVE ? 1 : 0;
  o.winner[slot] = s.winner;
  o.reason[slot] = s.reason;
  o.move_count[slot] = s.move_count;
  float v[MAX_PLAYERS + 1];
  outcome_values(s, v);
  for (int p = 0; p < MAX_PLAYERS; p++) o.values[slot * MAX_PLAYERS + p] = v[p + 1];
}

RR_HD inline bool env_playable(const Geometry& g, State& s, const Move& m) { return !reference_rejects(g, s, m); }

// Fill the legal surface of `s` into `l`; false when it overflowed (the state is unsteppable).
RR_HD inline bool env_surface(const EnvTables& t, State& s, Scratch& sc, MoveList& l) {
  legal_moves(t.geo, s, sc, l);
  return !l.overflow;
}

// Distinct actions of one state never exceed its legal moves, so a row of this many fits all.
constexpr int ENV_MAX_ACTIONS = MAX_MOVES;

// Rewrite one game's mask row and action list for state `s`. The row is cleared through the
// previous list (its first `prev` entries) rather than by a sweep: rows are as wide as the action
// space (246,705 bytes on hexagonal) and hold a few hundred set bits at most, so a sweep would
// cost more than the rules. `list_row` receives the distinct actions in surface order. Returns
// their number, or -1 when the surface overflowed (the row is then left empty).
RR_HD inline int32_t env_mask(const EnvTables& t, State& s, Scratch& sc, MoveList& l, uint8_t* mask_row,
                              int32_t* list_row, int32_t prev) {
  for (int32_t i = 0; i < prev; i++) mask_row[list_row[i]] = 0;
  if (s.status != ST_ACTIVE) return 0;
  if (!env_surface(t, s, sc, l)) return -1;
  int32_t distinct = 0;
  for (int i = 0; i < l.n; i++) {
    if (!env_playable(t.geo, s, l.m[i])) continue;
    int32_t a = canonical_action_index(t.geo, t.space, s, l.m[i], l);
    if (a < 0 || mask_row[a]) continue;
    mask_row[a] = 1;
    list_row[distinct++] = a;
  }
  return distinct;
}

// The playable move that `action` names: the move whose own index is the action when there is
// one (so recorded games keep the move a player would name), else the first move, in surface
// order, whose canonical index is the action. `l` must hold the surface of `s`.
RR_HD inline EnvError env_find(const EnvTables& t, State& s, const MoveList& l, int32_t action, Move* out) {
  int alias = -1;
  for (int i = 0; i < l.n; i++) {
    const Move& m = l.m[i];
    if (canonical_action_index(t.geo, t.space, s, m, l) != action || !env_playable(t.geo, s, m)) continue;
    if (action_index(t.geo, t.space, m) == action) {
      *out = m;
      return ENV_OK;
    }
    if (alias < 0) alias = i;
  }
  if (alias < 0) return ENV_NOT_PLAYABLE;
  *out = l.m[alias];
  return ENV_OK;
}

// Decode one slot's action into the move to play (nothing changes yet, so a batch with a bad
// action can be refused whole). ENV_NO_ACTION leaves the slot alone: `*out` is not written.
RR_HD inline EnvError env_decode(const EnvTables& t, State& s, Scratch& sc, MoveList& l, int32_t action, Move* out) {
  if (action == ENV_NO_ACTION) return ENV_OK;
  if (s.status != ST_ACTIVE) return ENV_GAME_OVER;
  if (action < 0 || action >= t.space.size()) return ENV_OUT_OF_RANGE;
  if (!env_surface(t, s, sc, l)) return ENV_LIST_OVERFLOW;
  return env_find(t, s, l, action, out);
}

// Play a decoded move (the same step the self-play drivers take).
RR_HD inline void env_apply(const EnvTables& t, State& s, Scratch& sc, int32_t action, const Move& m) {
  if (action != ENV_NO_ACTION) step_unchecked(t.geo, s, m, sc);
}

#ifndef __CUDACC_RTC__
// ---- host twin: the kernels' loops over a slot range [b, e) (the binding splits a batch over
// threads, each with its own scratch) --------------------------------------------------------

struct EnvHostScratch {
  Scratch sc;
  MoveList l;
};

inline void env_reset_host(const EnvTables& t, State* states, const uint8_t* reset, int b, int e, int num_players,
                           const EnvInfo& info) {
  for (int i = b; i < e; i++) {
    if (!reset[i]) continue;
    init_state(states[i], t.geo, num_players, false);
    env_write_info(states[i], info, i);
  }
}

inline void env_observe_host(const EnvTables& t, State* states, EnvHostScratch& w, int b, int e, const uint8_t* only,
                             uint8_t* mask, int32_t* actions, float* planes, float* globals, const EnvInfo& info) {
  const long long A = t.space.size(), hw = (long long)t.grid.h * t.grid.w;
  for (int i = b; i < e; i++) {
    if (!only[i]) continue;  // the game did not change: its mask and features stand
    int32_t prev = info.num_actions[i] > 0 ? info.num_actions[i] : 0;
    info.num_actions[i] = env_mask(t, states[i], w.sc, w.l, mask + i * A, actions + (long long)i * ENV_MAX_ACTIONS, prev);
    if (planes) encode_features(t.geo, t.grid, states[i], planes + i * FEAT_PLANES * hw, globals + i * FEAT_GLOBALS);
    env_write_info(states[i], info, i);
  }
}

inline void env_decode_host(const EnvTables& t, State* states, EnvHostScratch& w, const int32_t* actions, int b,
                            int e, Move* chosen, uint8_t* error) {
  for (int i = b; i < e; i++) error[i] = env_decode(t, states[i], w.sc, w.l, actions[i], &chosen[i]);
}

inline void env_apply_host(const EnvTables& t, State* states, EnvHostScratch& w, const int32_t* actions,
                           const Move* chosen, int b, int e, const EnvInfo& info) {
  for (int i = b; i < e; i++) {
    env_apply(t, states[i], w.sc, actions[i], chosen[i]);
    env_write_info(states[i], info, i);
  }
}
#endif

}  // namespace rr
