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
  ENV_LIST_OVERFLOW,  // the surface exceeds MAX_MOVES (or cannot be read in one pass): unsteppable
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

// Distinct actions of one state never exceed its legal moves, so a row of this many fits all.
constexpr int ENV_MAX_ACTIONS = MAX_MOVES;

// The env reads each surface straight from the generator, with no move list (a list is 128 KB,
// which a GPU would need once per game). Only territory options are kept aside: an option's
// canonical action is the lowest index among the options with the same effect, so it is known
// once all of them are in. The generator lists a state's options together (they come from one
// region scan), before the move that closes the surface, and never more than MAX_REGIONS.
// Packed to 4 bytes each (2 KB in all, on a GPU thread's stack): an option differs from
// make_move(MT_CHOOSE_TERRITORY_OPTION, player) only in its seed cell, region pass and
// controller, and `put` refuses any that would not unpack to the same move.
struct TerritoryOptions {
  int n;
  uint8_t player;
  int16_t to[MAX_REGIONS];
  uint8_t pass[MAX_REGIONS], controller[MAX_REGIONS];
  RR_HD Move at(int i) const {
    Move m = make_move(MT_CHOOSE_TERRITORY_OPTION, player);
    m.to = to[i];
    m.option = pass[i];
    m.count = controller[i];
    return m;
  }
  RR_HD bool put(const Move& m) {
    if (n >= MAX_REGIONS || (n > 0 && m.player != player)) return false;
    player = m.player;
    to[n] = m.to;
    pass[n] = m.option;
    controller[n] = m.count;
    if (!same_move(at(n), m)) return false;
    n++;
    return true;
  }
};

// canonical_action_index reads the options of a surface through this (MoveList has its own).
RR_HD inline Move legal_move_at(const TerritoryOptions& o, int i) { return o.at(i); }

// Bookkeeping shared by the env's sinks: moves are numbered exactly as on a MoveList (ml_take),
// so the surface overflows MAX_MOVES on the same push; `broken` marks a surface these sinks
// cannot read in one pass (options after the options were resolved, more than MAX_REGIONS of
// them, or one that does not pack: none can come from the generator, and the state is then
// refused like an overflow). The sinks' per-move work is kept out of line on the device:
// inlined into the generator it took rr_env_observe from 6.6 to 14.4 KB of stack per thread,
// options not counted (nvcc 13, sm_90).
struct EnvSink {
  int n;
  bool overflow, broken;
  const EnvTables* t;
  State* s;
  TerritoryOptions* opts;
  RR_HD EnvSink(const EnvTables& tables, State& st, TerritoryOptions& o) : t(&tables), s(&st), opts(&o) {
    n = 0;
    overflow = broken = false;
    o.n = 0;
  }
  // True when `m` was put aside (a territory option) or is past the overflow: nothing more to do.
  RR_HD bool set_aside(const Move& m, bool resolved) {
    if (ml_take(n, overflow) < 0) return true;
    if (m.type != MT_CHOOSE_TERRITORY_OPTION) return false;
    if (resolved || !opts->put(m)) broken = true;
    return true;
  }
  RR_HD int32_t canonical(const Move& m) const { return canonical_action_index(t->geo, t->space, *s, m, *opts); }
  RR_HD bool failed() const { return overflow || broken; }
};

// Writes one game's mask row and action list while the generator runs (see env_mask).
struct MaskSink : EnvSink {
  uint8_t* mask_row;
  int32_t* list_row;
  int32_t distinct = 0;
  bool resolved = false;  // the options have been added
  RR_HD MaskSink(const EnvTables& t, State& s, TerritoryOptions& o, uint8_t* row, int32_t* list)
      : EnvSink(t, s, o), mask_row(row), list_row(list) {}
  RR_HD RR_DEVICE_NOINLINE void add(const Move& m) {
    if (!env_playable(t->geo, *s, m)) return;
    int32_t a = canonical(m);
    if (a < 0 || mask_row[a]) return;
    mask_row[a] = 1;
    list_row[distinct++] = a;
  }
  // Add the options put aside, in surface order: at the first move after them, or at the end.
  RR_HD RR_DEVICE_NOINLINE void resolve() {
    if (resolved || opts->n == 0) return;
    resolved = true;
    for (int i = 0; i < opts->n; i++) add(opts->at(i));
  }
  RR_HD friend void ml_clear(MaskSink&) {}
  RR_HD friend void ml_push(MaskSink& k, const Move& m) {
    if (k.set_aside(m, k.resolved)) return;
    k.resolve();
    k.add(m);
  }
};

// Finds the move an action names while the generator runs (see env_decode).
struct FindSink : EnvSink {
  int32_t action;
  bool exact = false, alias = false;
  Move m_exact, m_alias;
  RR_HD FindSink(const EnvTables& t, State& s, TerritoryOptions& o, int32_t a) : EnvSink(t, s, o), action(a) {}
  RR_HD RR_DEVICE_NOINLINE void consider(const Move& m) {
    if (exact || canonical(m) != action || !env_playable(t->geo, *s, m)) return;
    if (action_index(t->geo, t->space, m) == action) {
      exact = true;
      m_exact = m;
    } else if (!alias) {
      alias = true;
      m_alias = m;
    }
  }
  RR_HD friend void ml_clear(FindSink&) {}
  RR_HD friend void ml_push(FindSink& k, const Move& m) {
    if (!k.set_aside(m, false)) k.consider(m);
  }
};

// Rewrite one game's mask row and action list for state `s`. The row is cleared through the
// previous list (its first `prev` entries) rather than by a sweep: rows are as wide as the action
// space (246,705 bytes on hexagonal) and hold a few hundred set bits at most, so a sweep would
// cost more than the rules. `list_row` receives the distinct actions in surface order. Returns
// their number, or -1 when the surface overflowed (the row is then left empty).
RR_HD inline int32_t env_mask(const EnvTables& t, State& s, Scratch& sc, TerritoryOptions& opts, uint8_t* mask_row,
                              int32_t* list_row, int32_t prev) {
  for (int32_t i = 0; i < prev; i++) mask_row[list_row[i]] = 0;
  if (s.status != ST_ACTIVE) return 0;
  MaskSink k(t, s, opts, mask_row, list_row);
  legal_moves(t.geo, s, sc, k);
  k.resolve();
  if (k.failed()) {  // bits were set as the moves came: take them back
    for (int32_t i = 0; i < k.distinct; i++) mask_row[list_row[i]] = 0;
    return -1;
  }
  return k.distinct;
}

// Decode one slot's action into the move to play (nothing changes yet, so a batch with a bad
// action can be refused whole): the playable move whose own index is the action when there is
// one (so recorded games keep the move a player would name), else the first playable move, in
// surface order, whose canonical index is the action. An action names options only or other
// moves only, so options being judged last does not change which is first. ENV_NO_ACTION leaves
// the slot alone: `*out` is not written.
RR_HD inline EnvError env_decode(const EnvTables& t, State& s, Scratch& sc, TerritoryOptions& opts, int32_t action,
                                 Move* out) {
  if (action == ENV_NO_ACTION) return ENV_OK;
  if (s.status != ST_ACTIVE) return ENV_GAME_OVER;
  if (action < 0 || action >= t.space.size()) return ENV_OUT_OF_RANGE;
  FindSink k(t, s, opts, action);
  legal_moves(t.geo, s, sc, k);
  if (k.failed()) return ENV_LIST_OVERFLOW;
  for (int i = 0; i < opts.n; i++) k.consider(opts.at(i));
  if (!k.exact && !k.alias) return ENV_NOT_PLAYABLE;
  *out = k.exact ? k.m_exact : k.m_alias;
  return ENV_OK;
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
  TerritoryOptions opts;
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
    info.num_actions[i] = env_mask(t, states[i], w.sc, w.opts, mask + i * A, actions + (long long)i * ENV_MAX_ACTIONS, prev);
    if (planes) encode_features(t.geo, t.grid, states[i], planes + i * FEAT_PLANES * hw, globals + i * FEAT_GLOBALS);
    env_write_info(states[i], info, i);
  }
}

inline void env_decode_host(const EnvTables& t, State* states, EnvHostScratch& w, const int32_t* actions, int b,
                            int e, Move* chosen, uint8_t* error) {
  for (int i = b; i < e; i++) error[i] = env_decode(t, states[i], w.sc, w.opts, actions[i], &chosen[i]);
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
