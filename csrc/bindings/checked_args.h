// Argument checks at the Python boundary of ringrift._core, in one place.
//
// The rules core (csrc/engine) trusts its inputs: cells, directions and players index fixed-size
// tables, and its hot loops (self-play, export) must stay free of checks. Every value that comes
// from Python is therefore checked here, once, before it reaches the core: a bad value raises
// ValueError naming the argument and its allowed range, never wraps into a narrower field and
// never reads outside a table.
#pragma once
#include <pybind11/pybind11.h>

#include <climits>
#include <string>

#include "engine/engine.h"
#include "export/action_space.h"

namespace rr {
namespace pyarg {

// A Python int (or any object with __index__, e.g. a numpy integer), never a bool or a float,
// kept at full width so that the range check sees the real value: an int beyond 64 bits is
// clamped to the int64 range (still out of every range checked here) instead of raising
// pybind11's TypeError for "incompatible arguments".
struct Int {
  long long v = 0;
};

}  // namespace pyarg
}  // namespace rr

namespace pybind11 {
namespace detail {
template <>
struct type_caster<rr::pyarg::Int> {
  PYBIND11_TYPE_CASTER(rr::pyarg::Int, const_name("int"));
  bool load(handle src, bool) {
    PyObject* o = src.ptr();
    if (!o || PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o)) return false;
    object idx = reinterpret_steal<object>(PyNumber_Index(o));
    if (!idx) {
      PyErr_Clear();
      return false;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
    if (x == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    value.v = overflow > 0 ? LLONG_MAX : overflow < 0 ? LLONG_MIN : x;
    return true;
  }
  static handle cast(const rr::pyarg::Int& i, return_value_policy, handle) { return PyLong_FromLongLong(i.v); }
};
}  // namespace detail
}  // namespace pybind11

namespace rr {
namespace pyarg {

namespace py = pybind11;

inline std::string show(long long v) {
  if (v == LLONG_MAX) return "a value beyond 2**63";
  if (v == LLONG_MIN) return "a value below -2**63";
  return std::to_string(v);
}

// v within [lo, hi], else ValueError "what: v is out of range [lo, hi]".
inline long long in_range(long long v, long long lo, long long hi, const std::string& what) {
  if (v < lo || v > hi)
    throw py::value_error(what + ": " + show(v) + " is out of range [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
  return v;
}
inline long long in_range(Int a, long long lo, long long hi, const std::string& what) { return in_range(a.v, lo, hi, what); }

inline std::string board_str(const Geometry& g) { return board_name(g.board); }

// A cell index of board g.
inline int cell(const Geometry& g, long long c, const std::string& what) {
  if (c < 0 || c >= g.num_cells)
    throw py::value_error(what + ": cell " + show(c) + " is out of range [0, " + std::to_string(g.num_cells - 1) +
                          "] of the " + board_str(g) + " board");
  return (int)c;
}
inline int cell(const Geometry& g, Int c, const std::string& what) { return cell(g, c.v, what); }

// A movement direction index of board g (8 on square boards, 6 on hex boards).
inline int dir(const Geometry& g, long long d, const std::string& what) {
  if (d < 0 || d >= g.num_dirs)
    throw py::value_error(what + ": direction " + show(d) + " is out of range [0, " + std::to_string(g.num_dirs - 1) +
                          "] of the " + board_str(g) + " board");
  return (int)d;
}
inline int dir(const Geometry& g, Int d, const std::string& what) { return dir(g, d.v, what); }

// ---- moves ---------------------------------------------------------------------------------

// Field ranges of a Move that hold on every board (a Move exists before it meets a game): each
// value fits its record field and means something, so no field wraps and no later lookup can
// index past a table. The board-specific ranges are checked by move_on_board.
constexpr int MOVE_MAX_CONTEXT = 3;                    // ElimContext / RecoveryMode
constexpr int MOVE_MAX_OPTION = TERRITORY_PASSES - 1;  // recovery option 1/2, territory pass 0..4

inline void move_fields(const Move& m) {
  in_range(m.type, 0, NUM_MOVE_TYPES - 1, "move type");
  in_range(m.player, 1, MAX_PLAYERS, "move player");
  in_range(m.from, -1, MAX_CELLS - 1, "move from_cell");
  in_range(m.to, -1, MAX_CELLS - 1, "move to");
  in_range(m.target, -1, MAX_CELLS - 1, "move target");
  in_range(m.line_start, -1, MAX_CELLS - 1, "move line_start");
  in_range(m.line_dir, 0, MAX_DIRS - 1, "move line_dir");
  if (m.window != WINDOW_ALL) in_range(m.window, 0, WINDOW_ALL - 1, "move window");
  in_range(m.context, 0, MOVE_MAX_CONTEXT, "move context");
  in_range(m.option, 0, MOVE_MAX_OPTION, "move option");
}

// Whether the line of `len` cells from `start` along `dir` stays on the board.
inline bool line_on_board(const Geometry& g, int start, int d, int len) {
  if (start < 0 || start >= g.num_cells || d >= g.num_dirs || len < 1) return false;
  for (int i = 1, c = start; i < len; i++)
    if ((c = g.nbr[c][d]) == NO_CELL) return false;
  return true;
}

// A move's fields on board g with num_players seats: every cell on the board, its line (if it
// names one) on the board, its choose_line_option window inside the line, its territory pass
// in range. Structural only (legality needs the state: Game.apply). ValueError otherwise.
inline void move_on_board(const Geometry& g, int num_players, const Move& m) {
  move_fields(m);
  in_range(m.player, 1, num_players, "move player (a seat of this " + std::to_string(num_players) + "-player game)");
  const int16_t cells[4] = {m.from, m.to, m.target, m.line_start};
  const char* names[4] = {"from_cell", "to", "target", "line_start"};
  for (int i = 0; i < 4; i++)
    if (cells[i] != NO_CELL) cell(g, cells[i], std::string("move ") + names[i]);
  const bool line_move = m.type == MT_PROCESS_LINE || m.type == MT_CHOOSE_LINE_OPTION ||
                         (m.type == MT_RECOVERY_SLIDE && m.context == RM_LINE && m.line_start != NO_CELL);
  if (line_move) {
    dir(g, m.line_dir, "move line_dir");
    if (!line_on_board(g, m.line_start, m.line_dir, m.line_len))
      throw py::value_error("move line: a line of " + std::to_string(m.line_len) + " cells from line_start " +
                            std::to_string(m.line_start) + " along direction " + std::to_string(m.line_dir) +
                            " is not on the " + board_str(g) + " board");
  }
  const int T = line_threshold(g, num_players);
  if ((m.type == MT_PROCESS_LINE || m.type == MT_CHOOSE_LINE_OPTION) && m.line_len < T)
    throw py::value_error("move line_len: a line of this game has at least " + std::to_string(T) + " cells, got " +
                          std::to_string(m.line_len));
  if (m.type == MT_CHOOSE_LINE_OPTION && m.window != WINDOW_ALL) {
    if (m.window + T > m.line_len)
      throw py::value_error("move window: " + std::to_string(m.window) + " + line length " + std::to_string(T) +
                            " exceeds the line's " + std::to_string(m.line_len) + " cells");
  }
  if (m.type == MT_CHOOSE_TERRITORY_OPTION) cell(g, m.to, "move to (territory region seed)");
}

}  // namespace pyarg
}  // namespace rr

namespace rr {
namespace pyarg {

// Upper bounds of counters that the rules only ever increase, for loaded states and arguments:
// far above any real game (self-play caps games at a few thousand moves), and low enough that
// no counter can overflow its field in the moves that follow (int32 move count, int16 rounds).
constexpr long long MAX_MOVE_COUNT = 1 << 24;  // moveCount of a loaded state; self-play max_moves
constexpr long long MAX_LPS_ROUNDS = 1 << 14;  // lps roundIndex / consecutiveRounds (int16 fields)
constexpr long long MAX_THREADS = 1024;        // native threads one call may start

// The `threads` argument of every batched call: 0 (all cores) .. MAX_THREADS.
inline int thread_count(Int a) { return (int)in_range(a, 0, MAX_THREADS, "threads (0 = all cores)"); }

// An integer value inside a Python container (a dict entry, a list item): ValueError when it is
// not an int (bools and floats included) instead of pybind11's "Unable to cast" RuntimeError.
inline long long int_value(py::handle h, const std::string& what) {
  py::detail::make_caster<Int> c;
  if (!c.load(h, true))
    throw py::value_error(what + ": expected an integer, got " + std::string(py::str(py::type::handle_of(h).attr("__name__"))));
  return py::detail::cast_op<Int>(c).v;
}

// A non-negative 64-bit value (seeds): ValueError when negative or wider than 64 bits.
inline uint64_t u64(py::handle h, const std::string& what) {
  if (!h || PyBool_Check(h.ptr()) || PyFloat_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
    throw py::value_error(what + ": expected a non-negative integer");
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!idx) {
    PyErr_Clear();
    throw py::value_error(what + ": expected a non-negative integer");
  }
  unsigned long long v = PyLong_AsUnsignedLongLong(idx.ptr());
  if (v == (unsigned long long)-1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(what + ": expected an integer in [0, 2**64)");
  }
  return (uint64_t)v;
}

}  // namespace pyarg
}  // namespace rr
