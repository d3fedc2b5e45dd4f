// Batch export encoder: replays games from their 16-byte move records and writes one training
// sample per pre-move state (planes, globals, played action, outcome values) into preallocated
// arrays. Host-only (std::thread); games are independent, so the output does not depend on the
// thread count. Nothing here allocates per sample.
#pragma once
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "engine/fast_hash.h"
#include "export/action_space.h"
#include "export/features.h"
#include "export/symmetry.h"

namespace rr {

enum ExportGameStatus : int8_t {
  EG_OK = 0,
  EG_BAD_RECORD = 1,   // a record that cannot be a move of the state (wrong player, phase, cells)
  EG_ILLEGAL = 2,      // (verified games) a move that is not on the legal surface
  EG_HASH = 3,         // a stored hash differs from the replay (every step when verified, else the last)
  EG_UNFINISHED = 4,   // the replay ends in an active state although the game has a winner, or vice versa
};

// Moves that are always the only legal move of their state (RULES.md 4.4): dropped by drop_forced.
RR_HD inline bool is_forced_only(uint8_t t) {
  return t == MT_NO_PLACEMENT_ACTION || t == MT_NO_MOVEMENT_ACTION || t == MT_NO_LINE_ACTION ||
         t == MT_NO_TERRITORY_ACTION;
}

// Move i of a replayed game whose first move is a: applied checked (legal surface, then the stored
// hash) when the game is verified, else unchecked. hash_kind starts as HASH_AUTO for each game
// (stored hashes may be reference or fast step hashes, fast_hash.h) and is settled by the first check. On failure sets status and fail (the step) and
// returns false. Shared by the native and upstream encoders.
template <class ScratchT, class ListT>
inline bool replay_record(const Geometry& g, State& st, const Move& m, ScratchT& sc, ListT& list, bool verify,
                          const uint64_t* hashes, int& hash_kind, int64_t i, int64_t a, int8_t& status,
                          int32_t& fail) {
  if (!verify) {
    step_unchecked(g, st, m, sc);
    return true;
  }
  if (step_checked(g, st, m, sc, list) != AE_OK) status = EG_ILLEGAL;
  else if (hashes && !step_hash_matches(g, st, hashes[i], hash_kind)) status = EG_HASH;
  else return true;
  fail = (int32_t)(i - a);
  return false;
}

// After a replay of moves [a, b) of game gi: an unverified one checks the stored final hash, and
// every one must end as stored (finished or not).
inline void replay_finish(const Geometry& g, const State& st, bool verify, const uint64_t* hashes, int& hash_kind,
                          const uint8_t* expect_over, int64_t gi, int64_t a, int64_t b, int8_t& status, int32_t& fail) {
  if (status == EG_OK && b > a && hashes && !verify && !step_hash_matches(g, st, hashes[b - 1], hash_kind)) {
    status = EG_HASH;
    fail = (int32_t)(b - 1 - a);
  }
  if (status == EG_OK && expect_over && (expect_over[gi] != 0) != (st.status == ST_COMPLETED)) {
    status = EG_UNFINISHED;
    fail = (int32_t)(b - a);
  }
}

// Cheap structural check that a record can be applied to `s` without reading outside the state
// (the fast path trusts validated games but never crashes on a damaged record).
inline bool record_sane(const Geometry& g, const State& s, const Move& m) {
  if (s.status != ST_ACTIVE || m.type >= NUM_MOVE_TYPES || m.player != s.current) return false;
  if (!type_allowed_in_phase(m.type, s.phase)) return false;
  auto ok_or_none = [&](int c) { return c == NO_CELL || valid_cell(g, c); };
  if (!ok_or_none(m.from) || !ok_or_none(m.to) || !ok_or_none(m.target) || !ok_or_none(m.line_start)) return false;
  auto walk_ok = [&](int start, int dir, int len) {
    if (!valid_cell(g, start) || dir >= g.num_dirs || len < 1) return false;
    int c = start;
    for (int i = 1; i < len; i++) {
      c = g.nbr[c][dir];
      if (c == NO_CELL) return false;
    }
    return true;
  };
  const uint8_t p = m.player;
  switch (m.type) {
    case MT_PLACE_RING:
      return valid_cell(g, m.to) && m.count >= 1 && m.count <= 3 && s.hand[p] >= 1 && s.free_ring != NO_CELL &&
             !s.collapsed[m.to] && !s.marker[m.to];
    case MT_MOVE_STACK:
    case MT_OVERTAKING_CAPTURE:
    case MT_CONTINUE_CAPTURE_SEGMENT: {
      if (!valid_cell(g, m.from) || !valid_cell(g, m.to) || m.from == m.to) return false;
      if (s.ctrl[m.from] != p || s.top[m.to] != NO_CELL || s.collapsed[m.to]) return false;
      if (dir_between(g, m.from, m.to) < 0) return false;
      if (m.type == MT_MOVE_STACK) return true;
      return valid_cell(g, m.target) && m.target != m.from && m.target != m.to && s.top[m.target] != NO_CELL &&
             dir_between(g, m.from, m.target) == dir_between(g, m.from, m.to);
    }
    case MT_RECOVERY_SLIDE:
      if (!valid_cell(g, m.from) || !valid_cell(g, m.to) || s.marker[m.from] != p || s.collapsed[m.to]) return false;
      if (m.context == RM_STACK_STRIKE) return s.top[m.to] != NO_CELL;
      if (s.top[m.to] != NO_CELL || s.marker[m.to]) return false;
      if (m.context == RM_LINE && m.option == 2) return walk_ok(m.line_start, m.line_dir, line_threshold(g, s.num_players));
      return true;
    case MT_PROCESS_LINE:
      return walk_ok(m.line_start, m.line_dir, m.line_len);
    case MT_CHOOSE_LINE_OPTION:
      if (!walk_ok(m.line_start, m.line_dir, m.line_len)) return false;
      return m.window == WINDOW_ALL || m.window + line_threshold(g, s.num_players) <= m.line_len;
    case MT_CHOOSE_TERRITORY_OPTION:
      return valid_cell(g, m.to) && m.option < TERRITORY_PASSES;
    case MT_ELIMINATE_RINGS_FROM_STACK:
    case MT_FORCED_ELIMINATION:
      return valid_cell(g, m.to) && s.top[m.to] != NO_CELL;
    default:
      return true;
  }
}

struct ExportJob {
  BoardType board = SQUARE8;
  // inputs
  const Move* moves = nullptr;        // all games' records back to back
  const int64_t* game_off = nullptr;  // G + 1 offsets into moves
  int64_t games = 0;
  const uint8_t* num_players = nullptr;  // per game
  const uint8_t* verify = nullptr;       // per game: full legality and per-step hash check (may be null)
  const uint64_t* hashes = nullptr;      // per move (may be null: no hash checks)
  const uint8_t* expect_over = nullptr;  // per game: 1 = the stored game has a winner (may be null)
  bool drop_forced = false;
  int threads = 1;
  // sample layout (filled by plan())
  std::vector<int64_t> sample_off;  // G + 1
  // outputs, sample_off[G] rows each
  float* features = nullptr;   // (N, FEAT_PLANES, h, w)
  float* globals = nullptr;    // (N, FEAT_GLOBALS)
  float* values = nullptr;     // (N,)
  float* values_mp = nullptr;  // (N, 4) by absolute seat: column p - 1 = seat p
  int32_t* policy = nullptr;   // (N,) canonical action index of the played move
  int32_t* policy_sym = nullptr;  // (N, S) or null: that index in the image of the sample under symmetry t
  uint8_t* movers = nullptr;   // (N,) seat of the player to move
  uint8_t* phases = nullptr;   // (N,) phase before the move
  int32_t* ply = nullptr;      // (N,) move number within the game (0-based)
  uint8_t* records = nullptr;  // (N, 16) the played move record
  // per game outputs
  int8_t* status = nullptr;        // ExportGameStatus
  int32_t* fail_step = nullptr;    // step of the failure, -1 when ok
  uint8_t* final_winner = nullptr;

  // Sample counts per game (records only; no replay).
  void plan() {
    sample_off.assign((size_t)games + 1, 0);
    for (int64_t gi = 0; gi < games; gi++) {
      int64_t a = game_off[gi], b = game_off[gi + 1], k = b - a;
      if (drop_forced) {
        k = 0;
        for (int64_t i = a; i < b; i++) k += !is_forced_only(moves[i].type);
      }
      sample_off[gi + 1] = sample_off[gi] + k;
    }
  }
};

struct ExportWorker {
  const Geometry& g;
  const ActionSpace& as;
  const FeatureGrid& fg;
  const Symmetries& sym;
  std::unique_ptr<State> s{new State};
  std::unique_ptr<State> image{new State};  // a territory sample's image under a symmetry
  std::unique_ptr<Scratch> sc{new Scratch};
  std::unique_ptr<MoveList> list{new MoveList()};

  ExportWorker(const Geometry& g_, const ActionSpace& a_, const FeatureGrid& f_, const Symmetries& y_)
      : g(g_), as(a_), fg(f_), sym(y_) {}

  void run_game(ExportJob& J, int64_t gi) {
    State& st = *s;
    const int np = J.num_players[gi];
    const bool verify = J.verify && J.verify[gi];
    const int64_t a = J.game_off[gi], b = J.game_off[gi + 1];
    const int64_t first = J.sample_off[gi];
    const size_t plane_stride = (size_t)FEAT_PLANES * fg.h * fg.w;
    int64_t k = first;
    int8_t status = EG_OK;
    int hash_kind = HASH_AUTO;  // settled by the game's first hash check
    int32_t fail = -1;
    init_state(st, g, np, false);
    for (int64_t i = a; i < b; i++) {
      const Move& m = J.moves[i];
      if (!record_sane(g, st, m)) {
        status = EG_BAD_RECORD;
        fail = (int32_t)(i - a);
        break;
      }
      const bool keep = !(J.drop_forced && is_forced_only(m.type));
      if (keep) {
        encode_features(g, fg, st, J.features + (size_t)k * plane_stride, J.globals + (size_t)k * FEAT_GLOBALS);
        // The legal list is only read for territory moves (duplicate regions).
        if (m.type == MT_CHOOSE_TERRITORY_OPTION) legal_moves(g, st, *sc, *list);
        J.policy[k] = canonical_action_index(g, as, st, m, *list);
        if (J.policy_sym) {
          int32_t* row = J.policy_sym + (size_t)k * sym.n;
          row[0] = J.policy[k];  // symmetry 0 is the identity
          for (int t = 1; t < sym.n; t++) row[t] = sym_action_index(g, as, sym, t, st, m, *image, *sc, *list);
        }
        J.movers[k] = m.player;
        J.phases[k] = st.phase;
        J.ply[k] = (int32_t)(i - a);
        std::memcpy(J.records + (size_t)k * sizeof(Move), &m, sizeof(Move));
        k++;
      }
      if (!replay_record(g, st, m, *sc, *list, verify, J.hashes, hash_kind, i, a, status, fail)) break;
    }
    replay_finish(g, st, verify, J.hashes, hash_kind, J.expect_over, gi, a, b, status, fail);
    J.status[gi] = status;
    J.fail_step[gi] = fail;
    J.final_winner[gi] = status == EG_OK ? st.winner : 0;
    // Outcome values for every sample of the game (zeros for a failed game; the caller drops it).
    float v[MAX_PLAYERS + 1];
    outcome_values(st, v);
    if (status != EG_OK)
      for (int p = 0; p <= MAX_PLAYERS; p++) v[p] = 0.0f;
    const int64_t end = J.sample_off[gi + 1];
    for (int64_t j = first; j < end; j++) {
      if (j >= k) {  // never written (failed game): keep the rows defined
        std::memset(J.features + (size_t)j * plane_stride, 0, plane_stride * sizeof(float));
        std::memset(J.globals + (size_t)j * FEAT_GLOBALS, 0, FEAT_GLOBALS * sizeof(float));
        std::memset(J.records + (size_t)j * sizeof(Move), 0, sizeof(Move));
        J.policy[j] = -1;
        if (J.policy_sym)
          for (int t = 0; t < sym.n; t++) J.policy_sym[(size_t)j * sym.n + t] = -1;
        J.movers[j] = 0;
        J.phases[j] = 0;
        J.ply[j] = -1;
      }
      int mover = J.movers[j];
      J.values[j] = (mover >= 1 && mover <= np) ? v[mover] : 0.0f;
      // by absolute seat, as upstream's values_mp (the same row for every sample of a game)
      float* mp = J.values_mp + (size_t)j * FEAT_SLOTS;
      for (int q = 0; q < FEAT_SLOTS; q++) mp[q] = q < np ? v[q + 1] : 0.0f;
    }
  }
};

// Replays J.games games on min(J.threads, games) threads (inline when one): each thread makes its
// own worker with make_worker() and takes the next game index until none is left. Shared by the
// native and upstream encoders.
template <class Job, class MakeWorker>
inline void run_games_on_threads(Job& J, MakeWorker make_worker) {
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    auto w = make_worker();
    for (int64_t gi = next++; gi < J.games; gi = next++) w.run_game(J, gi);
  };
  int n = J.threads > 0 ? J.threads : 1;
  if (n > J.games) n = (int)(J.games > 0 ? J.games : 1);
  if (n <= 1) {
    work();
    return;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < n; t++) pool.emplace_back(work);
  for (auto& t : pool) t.join();
}

// Run the job (plan() must have been called and the outputs allocated).
inline void run_export(ExportJob& J) {
  const Geometry& g = host_geometry(J.board);
  ActionSpace as;
  build_action_space(g, as);
  FeatureGrid fg;
  build_feature_grid(g, fg);
  std::unique_ptr<Symmetries> sym(new Symmetries);
  build_symmetries(g, *sym);
  run_games_on_threads(J, [&]() { return ExportWorker(g, as, fg, *sym); });
}

}  // namespace rr
