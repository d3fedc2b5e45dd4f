// Core definitions shared by host and device code: sizes, enums and the Move record.
// Everything here is plain data so that a batch of games is a flat array of fixed-size states.
#pragma once
#if defined(__CUDACC_RTC__)
// NVRTC (run-time compilation on GPU workers) has no C library headers: define the few
// fixed-width types the core uses, with the sizes the host compiler gives them.
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif

#if defined(__CUDACC__)
#define RR_HD __host__ __device__
// Keeps a function out of line in device code: a kernel that inlines every big step holds
// registers and stack for all of them at once, while calls made one after another reuse the
// same stack. Host builds are unaffected.
#define RR_DEVICE_NOINLINE __noinline__
#else
#define RR_HD
#define RR_DEVICE_NOINLINE
#endif

namespace rr {

// Sizes large enough for the largest board (hexagonal, radius 12: 469 cells, 4 x 96 rings).
constexpr int MAX_CELLS = 469;
constexpr int MAX_PLAYERS = 4;
constexpr int MAX_RINGS = 4 * 96;
// Cells a step may note as changed before a step hasher falls back to a full rescan (state.h);
// a power of two (the note index is masked with it).
constexpr int TOUCH_MAX = 32;
static_assert((TOUCH_MAX & (TOUCH_MAX - 1)) == 0, "TOUCH_MAX must be a power of two");
constexpr int MAX_MOVES = 8192;
constexpr int MAX_DIRS = 8;
constexpr int MAX_BIT_RUNS = 32;  // runs of cells on consecutive grid bits (geometry.h): rows of a hex board
constexpr int16_t NO_CELL = -1;

enum BoardType : uint8_t { SQUARE8 = 0, HEX8 = 1, SQUARE19 = 2, HEXAGONAL = 3, NUM_BOARDS = 4 };

enum Phase : uint8_t {
  PH_RING_PLACEMENT = 0,
  PH_MOVEMENT,
  PH_CAPTURE,
  PH_CHAIN_CAPTURE,
  PH_LINE_PROCESSING,
  PH_TERRITORY_PROCESSING,
  PH_FORCED_ELIMINATION,
  PH_GAME_OVER,
  NUM_PHASES
};

enum Status : uint8_t { ST_ACTIVE = 0, ST_COMPLETED = 1 };

enum MoveType : uint8_t {
  MT_PLACE_RING = 0,
  MT_SKIP_PLACEMENT,
  MT_NO_PLACEMENT_ACTION,
  MT_SWAP_SIDES,
  MT_MOVE_STACK,
  MT_OVERTAKING_CAPTURE,
  MT_CONTINUE_CAPTURE_SEGMENT,
  MT_SKIP_CAPTURE,
  MT_NO_MOVEMENT_ACTION,
  MT_RECOVERY_SLIDE,
  MT_SKIP_RECOVERY,
  MT_PROCESS_LINE,
  MT_CHOOSE_LINE_OPTION,
  MT_NO_LINE_ACTION,
  MT_CHOOSE_TERRITORY_OPTION,
  MT_ELIMINATE_RINGS_FROM_STACK,
  MT_SKIP_TERRITORY_PROCESSING,
  MT_NO_TERRITORY_ACTION,
  MT_FORCED_ELIMINATION,
  MT_RESIGN,
  MT_TIMEOUT,
  NUM_MOVE_TYPES
};

// Elimination contexts of eliminate_rings_from_stack.
enum ElimContext : uint8_t { EC_NONE = 0, EC_LINE = 1, EC_TERRITORY = 2, EC_RECOVERY = 3 };

// Recovery slide modes.
enum RecoveryMode : uint8_t { RM_NONE = 0, RM_LINE = 1, RM_FALLBACK = 2, RM_STACK_STRIKE = 3 };

enum VictoryReason : uint8_t {
  VR_NONE = 0,
  VR_RING_ELIMINATION,
  VR_TERRITORY_CONTROL,
  VR_LAST_PLAYER_STANDING,
  VR_TIEBREAKER,
  VR_RESIGNATION,
  VR_TIMEOUT
};

// One move, 16 bytes. Cells are indices into the board's cell table (NO_CELL when unused).
// Line moves name their line by (line_start, line_dir, line_len): the cells run from line_start
// along direction line_dir. `window` is the offset of a minimum-length segment inside the line
// (choose_line_option option 2), or WINDOW_ALL for collapse-all. Territory moves name their
// region by (to = seed cell, region_pass): the region is the flood-fill component containing
// the seed, with border colour region_pass (1..4) or the collapsed-only pass (0).
struct Move {
  uint8_t type;
  uint8_t player;
  uint8_t count;      // place_ring: rings placed; eliminations: rings removed; territory: controlling player
  uint8_t line_dir;   // direction index of a line / recovery run
  int16_t from;
  int16_t to;
  int16_t target;     // capture target
  int16_t line_start; // first cell of a line / recovery run
  uint8_t line_len;
  uint8_t window;     // choose_line_option segment offset, or WINDOW_ALL
  uint8_t context;    // ElimContext or RecoveryMode
  uint8_t option;     // recovery option (1/2); territory region pass
};
constexpr uint8_t WINDOW_ALL = 0xFF;
static_assert(sizeof(Move) == 16, "Move is stored as a 16-byte record in game databases");

RR_HD inline Move make_move(uint8_t type, uint8_t player) {
  Move m;
  m.type = type;
  m.player = player;
  m.count = 0;
  m.line_dir = 0;
  m.from = NO_CELL;
  m.to = NO_CELL;
  m.target = NO_CELL;
  m.line_start = NO_CELL;
  m.line_len = 0;
  m.window = WINDOW_ALL;
  m.context = 0;
  m.option = 0;
  return m;
}

RR_HD inline bool same_move(const Move& a, const Move& b) {
  return a.type == b.type && a.player == b.player && a.count == b.count && a.line_dir == b.line_dir &&
         a.from == b.from && a.to == b.to && a.target == b.target && a.line_start == b.line_start &&
         a.line_len == b.line_len && a.window == b.window && a.context == b.context && a.option == b.option;
}

// The legal-move generator writes to any output with `n`, `overflow`, ml_clear and ml_push:
// this list, or the list-free sinks of move_sinks.h. All of them count with ml_take, so `n`
// saturates at MAX_MOVES and `overflow` is set the same way whatever the output is.
struct MoveList {
  int n;
  bool overflow;
  Move m[MAX_MOVES];
};

RR_HD inline const Move& legal_move_at(const MoveList& l, int i) { return l.m[i]; }

// Index of the next pushed move, or -1 (overflow set) when MAX_MOVES moves are already there.
RR_HD inline int ml_take(int& n, bool& overflow) {
  if (n < MAX_MOVES) return n++;
  overflow = true;
  return -1;
}

RR_HD inline void ml_clear(MoveList& l) {
  l.n = 0;
  l.overflow = false;
}
RR_HD inline void ml_push(MoveList& l, const Move& m) {
  int i = ml_take(l.n, l.overflow);
  if (i >= 0) l.m[i] = m;
}

// Error codes of apply (the rules path has no exceptions).
enum ApplyError : uint8_t {
  AE_OK = 0,
  AE_GAME_OVER,
  AE_WRONG_PLAYER,
  AE_WRONG_PHASE,
  AE_NOT_LEGAL,
  AE_REFERENCE_THROWS,  // listed by the reference surface but its transition function throws
};

}  // namespace rr
