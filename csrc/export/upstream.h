// Upstream's default training encoding (synaptent/RingRift ai-service, export_replay_dataset.py
// with its default options), computed from our engine's states: the base feature frame of a
// state (14 planes on square boards, 16 on hex boards), four frames per sample (the state and
// the three states before it, newest first), 20 globals, upstream's board-aware policy index of
// the played move, and its outcome values. docs/upstream_npz.md describes every number and
// each upstream quirk reproduced here. Host-only (std::thread); nothing allocates per sample.
//
// Arithmetic that upstream does in Python floats (double) is done in double and rounded to
// float32 once at the end, as numpy does when it stores the value, so the arrays are bit-equal.
#pragma once
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "export/encoder.h"  // ExportGameStatus, record_sane

namespace rr {
namespace up {

constexpr int HISTORY = 3;                // previous frames per sample
constexpr int FRAMES = HISTORY + 1;
constexpr int SQ_PLANES = 14;             // base planes per frame, square boards
constexpr int HEX_PLANES = 16;            // base planes per frame, hex boards
constexpr int GLOBALS = 20;
constexpr int MP_SLOTS = 4;               // values_mp columns (absolute seats 1..4)
constexpr int TERRITORY_BUCKETS = 8;      // choose_territory_option region-size buckets
constexpr int TERRITORY_PLAYERS = 4;

// Square policy layout (upstream's ActionEncoderSquare, board-aware): N = size, D = N - 1.
constexpr int SQ_DIRS[8][2] = {{-1, -1}, {0, -1}, {1, -1}, {-1, 0}, {1, 0}, {-1, 1}, {0, 1}, {1, 1}};
// Hex policy directions (axial dx, dy), upstream's HEX_DIRS order.
constexpr int HEX_DIRS[6][2] = {{1, 0}, {0, 1}, {-1, 1}, {-1, 0}, {0, -1}, {1, -1}};
// Neighbour order of upstream's BoardGeometry.get_adjacent_positions on hex boards; it fixes
// the order of the floating-point sums of planes 12 / 13.
constexpr int HEX_NBR_ORDER[6][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {1, -1}, {-1, 1}};

struct Layout {
  uint8_t board;
  uint8_t hex;
  int planes;        // base planes per frame
  int S;             // spatial size (8, 9, 19, 25)
  int R;             // rings per player (the globals' normaliser)
  int territory_threshold;  // upstream's territory_victory_threshold (floor(cells / 2) + 1, any player count)
  int policy_size;
  // square blocks
  int sq_move_base, sq_line_base, sq_elim_base, sq_skip_placement, sq_swap, sq_skip_recovery, sq_line_choice,
      sq_territory_base, sq_no_placement;
  // hex blocks
  int hex_move_base, hex_special;
  int D;             // distance slots
  int16_t pix[MAX_CELLS];     // cell -> offset inside one plane (S * S)
  int16_t pidx[MAX_CELLS];    // cell -> policy cell index (square y * N + x, hex (y + r) * N + (x + r))
  int16_t nbr[MAX_CELLS][8];  // neighbours in upstream's order, NO_CELL off the board
  uint8_t num_nbr;            // 8 square, 6 hex
};

inline void build_layout(const Geometry& g, Layout& L) {
  std::memset(&L, 0, sizeof(L));
  L.board = g.board;
  L.hex = g.hex;
  L.planes = g.hex ? HEX_PLANES : SQ_PLANES;
  L.S = g.hex ? 2 * g.radius + 1 : g.size;
  L.R = g.rings_per_player;
  L.territory_threshold = g.num_cells / 2 + 1;
  const int N = L.S, D = N - 1;
  L.D = D;
  const int r = g.hex ? g.radius : 0;
  for (int c = 0; c < g.num_cells; c++) {
    const int x = g.cx[c], y = g.cy[c];
    // square planes are [x][y]; hex planes are [y + r][x + r]
    L.pix[c] = (int16_t)(g.hex ? (y + r) * N + (x + r) : x * N + y);
    L.pidx[c] = (int16_t)(g.hex ? (y + r) * N + (x + r) : y * N + x);
    if (g.hex) {
      L.num_nbr = 6;
      for (int k = 0; k < 6; k++) L.nbr[c][k] = (int16_t)cell_at(g, x + HEX_NBR_ORDER[k][0], y + HEX_NBR_ORDER[k][1]);
    } else {
      L.num_nbr = 8;
      int k = 0;
      for (int dx = -1; dx <= 1; dx++)
        for (int dy = -1; dy <= 1; dy++)
          if (dx || dy) L.nbr[c][k++] = (int16_t)cell_at(g, x + dx, y + dy);
    }
  }
  if (g.hex) {
    L.hex_move_base = N * N * 3;
    L.hex_special = L.hex_move_base + N * N * 6 * D;
    L.policy_size = g.board == HEX8 ? 4500 : L.hex_special + 1;
  } else {
    const int cells = N * N;
    L.sq_move_base = cells * 3;
    L.sq_line_base = L.sq_move_base + cells * 8 * D;
    L.sq_elim_base = L.sq_line_base + cells * 4;
    L.sq_skip_placement = L.sq_elim_base + cells;
    L.sq_swap = L.sq_skip_placement + 1;
    L.sq_skip_recovery = L.sq_swap + 1;
    L.sq_line_choice = L.sq_skip_recovery + 1;
    L.sq_territory_base = L.sq_line_choice + 4;
    L.sq_no_placement = L.sq_territory_base + cells * TERRITORY_BUCKETS * TERRITORY_PLAYERS;
    L.policy_size = g.board == SQUARE8 ? 7000 : 67000;
  }
}

// Moves upstream's exporter cannot encode (INVALID_MOVE_INDEX): no sample, the state still
// enters the history. Decided by the move type alone, so samples can be counted up front.
inline bool policy_invalid_type(const Layout& L, uint8_t t) {
  return t == MT_RESIGN || t == MT_TIMEOUT || (L.hex && t == MT_SWAP_SIDES);
}

inline int py_floordiv(int a, int b) {  // Python's // (b > 0)
  int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// (dir, dist) of a straight move as upstream computes it, or false.
inline bool up_direction(const Layout& L, const Geometry& g, int from, int to, int* dir, int* dist) {
  const int dx = g.cx[to] - g.cx[from], dy = g.cy[to] - g.cy[from];
  const int ax = dx < 0 ? -dx : dx, ay = dy < 0 ? -dy : dy;
  const int d = ax > ay ? ax : ay;
  if (d == 0 || d > L.D) return false;
  const int ux = py_floordiv(dx, d), uy = py_floordiv(dy, d);
  const int n = L.hex ? 6 : 8;
  for (int k = 0; k < n; k++) {
    const int* v = L.hex ? HEX_DIRS[k] : SQ_DIRS[k];
    if (v[0] == ux && v[1] == uy) {
      *dir = k;
      *dist = d;
      return true;
    }
  }
  return false;
}

// Upstream's board-aware policy index of move `m` played in state `s` (the state before it),
// from the move JSON our converter writes for it (ringrift.engine.json_io.move_to_json), or -1.
inline int32_t policy_index(const Layout& L, const Geometry& g, const State& s, const Move& m) {
  const int N = L.S;
  auto cell_ok = [&](int c) { return c >= 0 && c < g.num_cells; };
  switch (m.type) {
    case MT_PLACE_RING: {
      const int k = m.count ? m.count : 1;
      if (!cell_ok(m.to) || k < 1 || k > 3) return -1;
      return L.pidx[m.to] * 3 + (k - 1);
    }
    case MT_MOVE_STACK:
    case MT_OVERTAKING_CAPTURE:
    case MT_CONTINUE_CAPTURE_SEGMENT:
    case MT_RECOVERY_SLIDE: {
      int dir, dist;
      if (!cell_ok(m.from) || !cell_ok(m.to) || !up_direction(L, g, m.from, m.to, &dir, &dist)) return -1;
      const int nd = L.hex ? 6 : 8;
      const int base = L.hex ? L.hex_move_base : L.sq_move_base;
      return base + L.pidx[m.from] * (nd * L.D) + dir * L.D + (dist - 1);
    }
    case MT_SWAP_SIDES:
      return L.hex ? -1 : L.sq_swap;
    case MT_RESIGN:
    case MT_TIMEOUT:
      return -1;
    default:
      break;
  }
  if (L.hex) return L.hex_special;  // every other move type shares one index on hex boards
  switch (m.type) {
    case MT_PROCESS_LINE: {
      // the JSON's `to` (our line start), else the first cell of formedLines[0] (also the start)
      const int p = cell_ok(m.to) ? m.to : m.line_start;
      if (!cell_ok(p)) return -1;
      return L.sq_line_base + L.pidx[p] * 4;
    }
    case MT_ELIMINATE_RINGS_FROM_STACK:
      if (!cell_ok(m.to)) return -1;
      return L.sq_elim_base + L.pidx[m.to];
    case MT_SKIP_PLACEMENT: return L.sq_skip_placement;
    case MT_SKIP_RECOVERY: return L.sq_skip_recovery;
    case MT_CHOOSE_LINE_OPTION: return L.sq_line_choice;  // our JSON has no placementCount: option slot 0
    case MT_CHOOSE_TERRITORY_OPTION: {
      // disconnectedRegions[0] as our converter stores it: the region's cells in the state
      // before the move, controllingPlayer = the record's count.
      int16_t cells[MAX_CELLS];
      const int n = cell_ok(m.to) ? region_cells(g, s, m.to, m.option, cells) : 0;
      int p = m.to, size = 1;
      if (n > 0) {
        size = n;
        p = cells[0];
        for (int i = 1; i < n; i++) {
          const int c = cells[i];
          if (g.cy[c] < g.cy[p] || (g.cy[c] == g.cy[p] && g.cx[c] < g.cx[p])) p = c;
        }
      }
      if (!cell_ok(p)) return -1;
      const int bucket = size - 1 < TERRITORY_BUCKETS - 1 ? size - 1 : TERRITORY_BUCKETS - 1;
      const int player = (((int)m.count - 1) % TERRITORY_PLAYERS + TERRITORY_PLAYERS) % TERRITORY_PLAYERS;
      return L.sq_territory_base + L.pidx[p] * (TERRITORY_BUCKETS * TERRITORY_PLAYERS) + bucket * TERRITORY_PLAYERS +
             player;
    }
    case MT_NO_PLACEMENT_ACTION: return L.sq_no_placement;
    case MT_NO_MOVEMENT_ACTION: return L.sq_no_placement + 1;
    case MT_SKIP_CAPTURE: return L.sq_no_placement + 2;
    case MT_NO_LINE_ACTION: return L.sq_no_placement + 3;
    case MT_NO_TERRITORY_ACTION: return L.sq_no_placement + 4;
    case MT_SKIP_TERRITORY_PROCESSING: return L.sq_no_placement + 5;
    case MT_FORCED_ELIMINATION: return L.sq_no_placement + 6;
    default: return -1;
  }
}

// ---- globals ---------------------------------------------------------------------------------

inline double clamp01(double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); }

// Upstream's victory_progress_for_player: the largest of ring-elimination progress, territory
// progress (against upstream's player-count-independent territory threshold) and the
// last-player-standing streak.
inline double victory_progress(const Layout& L, const State& s, int p) {
  const double elim = clamp01((double)s.elim[p] / (double)(s.victory_threshold > 0 ? s.victory_threshold : 1));
  const double terr = clamp01((double)s.terr[p] / (double)L.territory_threshold);
  double best = elim > terr ? elim : terr;
  double lps = 0.0;
  const int rounds = s.lps.consecutive_rounds, req = s.lps_rounds_required > 0 ? s.lps_rounds_required : 3;
  if (s.lps.consecutive_player == p && rounds > 0) {
    if (rounds >= req || req == 1) lps = 1.0;
    else lps = 0.90 + 0.09 * clamp01((double)rounds / (double)(req - 1));
  }
  return best > lps ? best : lps;
}

// The opponent of globals 6 and 8: the other player in 2p; in 3p/4p the first seat (in seat
// order) with the highest victory progress.
inline int threat_opponent(const Layout& L, const State& s) {
  const int n = s.num_players, me = s.current;
  if (n <= 2) {
    for (int p = 1; p <= n; p++)
      if (p != me) return p;
    return 0;
  }
  int best = 0;
  double best_progress = -1.0;
  for (int p = 1; p <= n; p++) {
    if (p == me) continue;
    const double v = victory_progress(L, s, p);
    if (v > best_progress) {
      best_progress = v;
      best = p;
    }
  }
  return best;
}

// ---- base frame -------------------------------------------------------------------------------

inline float f32(double v) { return (float)v; }
inline double dmin1(double v) { return v < 1.0 ? v : 1.0; }

// Writes one base frame (planes x S x S floats, zeroed first) and, when `globals` is not null,
// the 20 globals of state `s` from the point of view of its player to move.
inline void encode_frame(const Layout& L, const Geometry& g, const State& s, float* planes, float* globals) {
  const int hw = L.S * L.S;
  std::memset(planes, 0, sizeof(float) * (size_t)L.planes * hw);
  const int me = s.current;
  const int nn = L.num_nbr;
  const double lib_norm = L.hex ? 6.0 : 8.0, line_norm = L.hex ? 3.0 : 4.0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    const int px = L.pix[c];
    const bool mine = s.ctrl[c] == me;
    planes[(mine ? 0 : 1) * hw + px] = f32(dmin1(s.height[c] / 5.0));
    int lib = 0;
    for (int k = 0; k < nn; k++) {
      const int q = L.nbr[c][k];
      if (q != NO_CELL && s.top[q] == NO_CELL && !s.collapsed[q]) lib++;
    }
    planes[(mine ? 6 : 7) * hw + px] = f32(dmin1(lib / lib_norm));
  }
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) {
    const int px = L.pix[c];
    const int owner = s.marker[c];
    const bool mine = owner == me;
    planes[(mine ? 2 : 3) * hw + px] = 1.0f;
    int same = 0;
    for (int k = 0; k < nn; k++) {
      const int q = L.nbr[c][k];
      if (q != NO_CELL && s.marker[q] == owner) same++;
    }
    planes[(mine ? 8 : 9) * hw + px] = f32(dmin1(same / line_norm));
  }
  int my_collapsed = 0, all_collapsed = 0;
  for (int c = 0; c < g.num_cells; c++)
    if (s.collapsed[c]) {
      const bool mine = s.collapsed[c] == me;
      planes[(mine ? 4 : 5) * hw + L.pix[c]] = 1.0f;
      all_collapsed++;
      my_collapsed += mine;
    }
  if (!L.hex) {
    float* p12 = planes + 12 * hw;
    for (int i = 0; i < hw; i++) p12[i] = 1.0f;  // every square is playable
  } else {
    for (int c = 0; c < g.num_cells; c++) {
      const int px = L.pix[c];
      int friendly = 0, enemy = 0, open = 0;
      double fh = 0.0, eh = 0.0;
      for (int k = 0; k < 6; k++) {
        const int q = L.nbr[c][k];
        if (q == NO_CELL) continue;
        if (s.top[q] != NO_CELL) {
          const double h = s.height[q] / 5.0;
          if (s.ctrl[q] == me) {
            friendly++;
            fh += h;
          } else {
            enemy++;
            eh += h;
          }
        }
        if (s.marker[q]) {
          if (s.marker[q] == me) friendly++;
          else enemy++;
        }
        if (!s.collapsed[q]) open++;
      }
      if (friendly > 0 && enemy > 0) {
        planes[10 * hw + px] = f32(dmin1(friendly / 3.0));
        planes[11 * hw + px] = f32(dmin1(enemy / 3.0));
      }
      planes[12 * hw + px] = f32(dmin1(fh / 6.0));
      planes[13 * hw + px] = f32(dmin1(eh / 6.0));
      planes[14 * hw + px] = 1.0f;  // upstream's occupancy test never matches: a constant mask
      planes[15 * hw + px] = f32(open / 6.0);
    }
  }
  if (!globals) return;
  for (int i = 0; i < GLOBALS; i++) globals[i] = 0.0f;
  const int ph = s.phase;
  int slot = -1;
  if (ph == PH_RING_PLACEMENT) slot = 0;
  else if (ph == PH_MOVEMENT) slot = 1;
  else if (ph == PH_CAPTURE) slot = 2;
  else if (ph == PH_LINE_PROCESSING) slot = 3;
  else if (ph == PH_TERRITORY_PROCESSING) slot = 4;
  else if (L.hex && ph == PH_CHAIN_CAPTURE) slot = 2;
  else if (L.hex && ph == PH_FORCED_ELIMINATION) slot = 4;
  if (slot >= 0) globals[slot] = 1.0f;
  const double R = (double)L.R;
  const int opp = threat_opponent(L, s);
  if (me >= 1 && me <= s.num_players) {
    globals[5] = f32(s.hand[me] / R);
    globals[7] = f32(s.elim[me] / R);
  }
  if (opp >= 1) {
    globals[6] = f32(s.hand[opp] / R);
    globals[8] = f32(s.elim[opp] / R);
  }
  globals[9] = 1.0f;
  if (!L.hex) {
    globals[10] = ph == PH_CHAIN_CAPTURE ? 1.0f : 0.0f;
    globals[11] = ph == PH_FORCED_ELIMINATION ? 1.0f : 0.0f;
    return;
  }
  int markers = 0, my_markers = 0;
  for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) {
    markers++;
    my_markers += s.marker[c] == me;
  }
  const int stacks = s.num_stacks;
  int my_stacks = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) my_stacks += s.ctrl[c] == me;
  globals[10] = f32(dmin1(markers / 50.0));
  globals[11] = f32(dmin1(stacks / 30.0));
  if (all_collapsed > 0) globals[12] = f32((double)my_collapsed / all_collapsed);
  if (markers > 0) globals[13] = f32((double)my_markers / markers);
  if (stacks > 0) globals[14] = f32((double)my_stacks / stacks);
  globals[15] = ph == PH_CHAIN_CAPTURE ? 1.0f : 0.0f;
  globals[16] = ph == PH_FORCED_ELIMINATION ? 1.0f : 0.0f;
}

// ---- values -------------------------------------------------------------------------------------

// Seats ranked by (eliminated rings, territory spaces), best first, ties in seat order (a
// stable sort): rank[p] = 1..n. Upstream ranks this way for values_mp in every game and for
// values in 3p/4p; the winner field only decides 2p values.
inline void seat_ranks(const State& s, int* rank /* MAX_PLAYERS + 1 */) {
  const int n = s.num_players;
  for (int p = 1; p <= n; p++) {
    int r = 1;
    for (int q = 1; q <= n; q++) {
      if (q == p) continue;
      const bool ahead = s.elim[q] != s.elim[p] ? s.elim[q] > s.elim[p]
                         : s.terr[q] != s.terr[p] ? s.terr[q] > s.terr[p]
                         : q < p;
      r += ahead;
    }
    rank[p] = r;
  }
}

inline double rank_value(int rank, int n) { return n > 1 ? 1.0 - 2.0 * (rank - 1) / (double)(n - 1) : 0.0; }

// ---- the job -------------------------------------------------------------------------------------

struct Job {
  BoardType board = SQUARE8;
  const Move* moves = nullptr;
  const int64_t* game_off = nullptr;  // G + 1
  int64_t games = 0;
  const uint8_t* num_players = nullptr;
  const uint8_t* verify = nullptr;       // may be null
  const uint64_t* hashes = nullptr;      // may be null
  const uint8_t* expect_over = nullptr;  // may be null
  int threads = 1;
  std::vector<int64_t> sample_off;  // G + 1 (plan)
  // outputs (sample_off[G] rows)
  float* features = nullptr;   // (N, FRAMES * planes, S, S)
  float* globals = nullptr;    // (N, 20)
  float* values = nullptr;     // (N,)
  float* values_mp = nullptr;  // (N, 4) by absolute seat
  int32_t* policy = nullptr;   // (N,)
  uint8_t* phases = nullptr;   // (N,) our phase index of the state before the move
  uint8_t* move_types = nullptr;  // (N,) our move type index
  int32_t* move_numbers = nullptr;  // (N,) index of the move in its game
  // per game
  int8_t* status = nullptr;
  int32_t* fail_step = nullptr;
  uint8_t* final_winner = nullptr;

  void plan(const Layout& L) {
    sample_off.assign((size_t)games + 1, 0);
    for (int64_t gi = 0; gi < games; gi++) {
      int64_t k = 0;
      for (int64_t i = game_off[gi]; i < game_off[gi + 1]; i++) k += !policy_invalid_type(L, moves[i].type);
      sample_off[gi + 1] = sample_off[gi] + k;
    }
  }
};

struct Worker {
  const Geometry& g;
  const Layout& L;
  std::unique_ptr<State> s{new State};
  std::unique_ptr<Scratch> sc{new Scratch};
  std::unique_ptr<MoveList> list{new MoveList()};
  // Base frames of states that give no sample (a move upstream cannot encode); the frames of
  // the other states are read back from their own output rows.
  std::vector<float> scratch;

  Worker(const Geometry& g_, const Layout& l_) : g(g_), L(l_) {
    scratch.assign((size_t)L.planes * L.S * L.S * HISTORY, 0.0f);
  }

  void run_game(Job& J, int64_t gi) {
    State& st = *s;
    const int np = J.num_players[gi];
    const bool verify = J.verify && J.verify[gi];
    const int64_t a = J.game_off[gi], b = J.game_off[gi + 1];
    const int64_t first = J.sample_off[gi];
    const size_t frame = (size_t)L.planes * L.S * L.S;
    const size_t row = frame * FRAMES;
    int64_t k = first;
    int8_t status = EG_OK;
    int hash_kind = HASH_AUTO;  // settled by the game's first hash check
    int32_t fail = -1;
    const float* hist[HISTORY];  // base frames of the previous states, hist[head] the newest
    int have = 0, head = 0, spare = 0;
    init_state(st, g, np, false);
    for (int64_t i = a; i < b; i++) {
      const Move& m = J.moves[i];
      if (!record_sane(g, st, m)) {
        status = EG_BAD_RECORD;
        fail = (int32_t)(i - a);
        break;
      }
      const float* frame_of_state;
      if (!policy_invalid_type(L, m.type)) {
        const int32_t idx = policy_index(L, g, st, m);
        if (idx < 0 || idx >= L.policy_size) {
          status = EG_BAD_RECORD;
          fail = (int32_t)(i - a);
          break;
        }
        float* out = J.features + (size_t)k * row;
        encode_frame(L, g, st, out, J.globals + (size_t)k * GLOBALS);
        for (int h = 0; h < HISTORY; h++) {
          float* slot = out + frame * (h + 1);
          if (h < have) std::memcpy(slot, hist[(head - h + HISTORY) % HISTORY], frame * sizeof(float));
          else std::memset(slot, 0, frame * sizeof(float));
        }
        J.policy[k] = idx;
        J.phases[k] = st.phase;
        J.move_types[k] = m.type;
        J.move_numbers[k] = (int32_t)(i - a);
        frame_of_state = out;
        k++;
      } else {
        // a scratch slot is reused only after HISTORY more states, when it has left the history
        float* buf = scratch.data() + frame * spare;
        spare = (spare + 1) % HISTORY;
        encode_frame(L, g, st, buf, nullptr);
        frame_of_state = buf;
      }
      head = (head + 1) % HISTORY;
      hist[head] = frame_of_state;
      if (have < HISTORY) have++;
      if (!replay_record(g, st, m, *sc, *list, verify, J.hashes, hash_kind, i, a, status, fail)) break;
    }
    replay_finish(g, st, verify, J.hashes, hash_kind, J.expect_over, gi, a, b, status, fail);
    J.status[gi] = status;
    J.fail_step[gi] = fail;
    J.final_winner[gi] = status == EG_OK ? st.winner : 0;
    const int winner = status == EG_OK && st.status == ST_COMPLETED ? st.winner : 0;
    int rank[MAX_PLAYERS + 1];
    seat_ranks(st, rank);
    float mp[MP_SLOTS] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (winner)
      for (int p = 1; p <= np && p <= MP_SLOTS; p++) mp[p - 1] = f32(rank_value(rank[p], np));
    const int64_t end = J.sample_off[gi + 1];
    for (int64_t j = first; j < end; j++) {
      if (j >= k) {  // never written (failed game; the caller drops it): keep the rows defined
        std::memset(J.features + (size_t)j * row, 0, row * sizeof(float));
        std::memset(J.globals + (size_t)j * GLOBALS, 0, GLOBALS * sizeof(float));
        J.policy[j] = -1;
        J.phases[j] = 0;
        J.move_types[j] = 0;
        J.move_numbers[j] = -1;
        J.values[j] = 0.0f;
        for (int q = 0; q < MP_SLOTS; q++) J.values_mp[(size_t)j * MP_SLOTS + q] = 0.0f;
        continue;
      }
      // the sample's mover: the record's player (== the state's player to move)
      const int mover = J.moves[a + J.move_numbers[j]].player;
      float v = 0.0f;
      if (winner) v = np == 2 ? (winner == mover ? 1.0f : -1.0f) : f32(rank_value(rank[mover], np));
      J.values[j] = v;
      for (int q = 0; q < MP_SLOTS; q++) J.values_mp[(size_t)j * MP_SLOTS + q] = mp[q];
    }
  }
};

inline void run(Job& J, const Layout& L) {
  const Geometry& g = host_geometry(J.board);
  run_games_on_threads(J, [&]() { return Worker(g, L); });
}

}  // namespace up
}  // namespace rr
