// Shared by the binding files of ringrift._core (csrc/bindings.cpp and csrc/bindings/*.cpp, one
// per area): the name tables, the argument parsers, the Game object, and the per-board tables
// of the export that the batch environment reuses. Thin: every rule lives in csrc/engine.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings/checked_args.h"
#include "bindings/state_check.h"
#include "engine/engine.h"
#include "export/encoder.h"
#include "selfplay/batch_env.h"
#include "selfplay/batch_runner.h"
#include "selfplay/layout.h"
#include "selfplay/slot_driver.h"

namespace py = pybind11;

namespace rr {
namespace exportpy {
// Per-board tables of the export, built once (shared with the batch environment).

inline BoardType board_arg(const std::string& name) {
  int b = board_from_name(name.c_str());
  if (b < 0) throw py::value_error("unknown board '" + name + "' (expected square8, hex8, square19 or hexagonal)");
  return (BoardType)b;
}

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// The recorded games both NPZ encoders replay (native and upstream's): move records, per-game
// offsets into them and player counts, plus optional per-move hashes and per-game flags. Checked
// once here (the encoders trust every offset); the arrays stay alive as long as this object.
struct GameBatch {
  CArray<uint8_t> moves, num_players;
  CArray<int64_t> offsets;
  CArray<uint64_t> hashes_keep;
  CArray<uint8_t> verify_keep, expect_over_keep;
  py::ssize_t M = 0, G = 0;
  const uint64_t* hashes = nullptr;
  const uint8_t* verify = nullptr;
  const uint8_t* expect_over = nullptr;

  GameBatch(CArray<uint8_t> moves_, CArray<int64_t> offsets_, CArray<uint8_t> num_players_, const py::object& hashes_,
            const py::object& verify_, const py::object& expect_over_)
      : moves(std::move(moves_)), num_players(std::move(num_players_)), offsets(std::move(offsets_)) {
    if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
      throw py::value_error("moves must have shape (M, 16)");
    if (offsets.ndim() != 1 || offsets.shape(0) < 1)
      throw py::value_error("game_offsets must be a one-dimensional array of length G + 1");
    M = moves.shape(0);
    G = offsets.shape(0) - 1;
    if (num_players.ndim() != 1 || num_players.shape(0) != G)
      throw py::value_error("num_players must have one entry per game");
    const int64_t* off = offsets.data();
    for (py::ssize_t i = 0; i < G; i++)
      if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > M)
        throw py::value_error("game_offsets must be non-decreasing and within the move array");
    for (py::ssize_t i = 0; i < G; i++)
      if (num_players.data()[i] < 2 || num_players.data()[i] > MAX_PLAYERS)
        throw py::value_error("num_players entries must be 2, 3 or 4");
    hashes = optional(hashes_, M, "hashes", hashes_keep);
    verify = optional(verify_, G, "verify", verify_keep);
    expect_over = optional(expect_over_, G, "expect_over", expect_over_keep);
  }
  const Move* move_records() const { return reinterpret_cast<const Move*>(moves.data()); }
  const int64_t* game_offsets() const { return offsets.data(); }

 private:
  template <class T>
  static const T* optional(const py::object& o, py::ssize_t n, const char* what, CArray<T>& keep) {
    if (o.is_none()) return nullptr;
    keep = CArray<T>::ensure(o);
    if (!keep || keep.ndim() != 1 || keep.shape(0) != n)
      throw py::value_error(std::string(what) + " must be a one-dimensional array of length " + std::to_string(n));
    return keep.data();
  }
};

inline const ActionSpace& action_space_of(BoardType b) {
  static const struct Spaces {
    ActionSpace a[NUM_BOARDS];
    Spaces() {
      for (int i = 0; i < NUM_BOARDS; i++) build_action_space(host_geometry((BoardType)i), a[i]);
    }
  } spaces;
  return spaces.a[b];
}

inline const FeatureGrid& feature_grid_of(BoardType b) {
  static const struct Grids {
    FeatureGrid f[NUM_BOARDS];
    Grids() {
      for (int i = 0; i < NUM_BOARDS; i++) build_feature_grid(host_geometry((BoardType)i), f[i]);
    }
  } grids;
  return grids.f[b];
}

// The features array of an encoder's output, shape (N, C, H, W): a view of the caller's float32
// buffer when one is given and holds enough elements, else a new array. Reusing one buffer
// across chunks saves the kernel's zeroing of fresh pages, which costs about as much as the
// encoding itself (the encoders write every element, so the buffer's old contents never show).
inline py::array_t<float> features_array(const py::object& buffer, py::ssize_t N, py::ssize_t C, py::ssize_t H,
                                         py::ssize_t W) {
  if (!buffer.is_none()) {
    if (!py::isinstance<py::array>(buffer)) throw py::value_error("features_buffer must be a numpy float32 array");
    py::array buf = buffer.cast<py::array>();
    if (!buf.dtype().is(py::dtype::of<float>()) || !(buf.flags() & py::array::c_style) || !buf.writeable())
      throw py::value_error("features_buffer must be a writeable C-contiguous float32 array");
    if (buf.size() >= N * C * H * W)
      return py::array_t<float>({N, C, H, W}, {C * H * W * 4, H * W * 4, W * 4, (py::ssize_t)4},
                                static_cast<float*>(buf.mutable_data()), buf);
  }
  return py::array_t<float>({N, C, H, W});
}

inline const Symmetries& symmetries_of(BoardType b) {
  static const struct All {
    std::unique_ptr<Symmetries> y[NUM_BOARDS];
    All() {
      for (int i = 0; i < NUM_BOARDS; i++) {
        y[i].reset(new Symmetries);
        build_symmetries(host_geometry((BoardType)i), *y[i]);
      }
    }
  } all;
  return *all.y[b];
}

inline int symmetry_arg(const Symmetries& y, pyarg::Int t) {
  if (t.v < 0 || t.v >= y.n)
    throw py::value_error("symmetry " + pyarg::show(t.v) + " out of range: this board has " + std::to_string(y.n) +
                          " (0 .. " + std::to_string(y.n - 1) + ")");
  return (int)t.v;
}

inline std::vector<std::string> plane_names() {
  static const char* per_slot[FEAT_PER_SLOT] = {"stack", "height", "cap", "buried", "marker", "collapsed"};
  std::vector<std::string> out;
  for (int k = 0; k < FEAT_SLOTS; k++)
    for (int i = 0; i < FEAT_PER_SLOT; i++) out.push_back("p" + std::to_string(k) + "_" + per_slot[i]);
  out.push_back("valid_cell");
  out.push_back("anchor");
  return out;
}

inline std::vector<std::string> global_names() {
  static const char* phases[NUM_PHASES] = {"ring_placement",  "movement",        "capture",
                                           "chain_capture",   "line_processing", "territory_processing",
                                           "forced_elimination", "game_over"};
  static const char* per_slot[FG_PER_SLOT] = {"present", "alive", "hand", "eliminated", "territory", "on_board"};
  static const char* flags[NUM_FEAT_FLAGS] = {"pending_line", "pending_territory", "used_recovery", "had_action",
                                              "swap_offered"};
  std::vector<std::string> out;
  for (int i = 0; i < NUM_PHASES; i++) out.push_back(std::string("phase_") + phases[i]);
  for (int k = 0; k < FEAT_SLOTS; k++)
    for (int i = 0; i < FG_PER_SLOT; i++) out.push_back("p" + std::to_string(k) + "_" + per_slot[i]);
  for (int i = 0; i < NUM_FEAT_FLAGS; i++) out.push_back(flags[i]);
  for (int n = 2; n <= 4; n++) out.push_back("players_" + std::to_string(n));
  for (int k = 0; k < FEAT_SLOTS; k++) out.push_back("p" + std::to_string(k) + "_lps_rounds");
  return out;
}

// The legal moves of `game` that canonical action indices `actions` name (as decode_action
// decodes one: a structural match first, then a canonical alias). A search target lists the
// root's playable canonical actions, so an index that names no legal move is a target that does
// not belong to this state: ValueError naming it.
template <class GameT>
std::vector<Move> decode_actions(GameT& game, const int32_t* actions, py::ssize_t n) {
  const Geometry& g = game.geo();
  const ActionSpace& a = action_space_of((BoardType)g.board);
  std::vector<Move> legal = game.legal_moves();
  std::unique_ptr<MoveList> l(new MoveList());
  for (const Move& x : legal) ml_push(*l, x);
  std::vector<int32_t> structural(legal.size()), canonical(legal.size());
  for (size_t i = 0; i < legal.size(); i++) {
    structural[i] = action_index(g, a, legal[i]);
    canonical[i] = canonical_action_index(g, a, game.st(), legal[i], *l);
  }
  std::vector<Move> out((size_t)n);
  for (py::ssize_t e = 0; e < n; e++) {
    size_t hit = legal.size();
    for (size_t i = 0; i < legal.size() && hit == legal.size(); i++)
      if (structural[i] == actions[e]) hit = i;
    for (size_t i = 0; i < legal.size() && hit == legal.size(); i++)
      if (canonical[i] == actions[e]) hit = i;
    if (hit == legal.size())
      throw py::value_error("action index " + std::to_string(actions[e]) + " is not a legal move in this state");
    out[(size_t)e] = legal[hit];
  }
  return out;
}

}  // namespace exportpy

namespace bind {

inline const char* const MOVE_TYPE_NAMES[NUM_MOVE_TYPES] = {
    "place_ring",         "skip_placement",        "no_placement_action",        "swap_sides",
    "move_stack",         "overtaking_capture",    "continue_capture_segment",   "skip_capture",
    "no_movement_action", "recovery_slide",        "skip_recovery",              "process_line",
    "choose_line_option", "no_line_action",        "choose_territory_option",    "eliminate_rings_from_stack",
    "skip_territory_processing", "no_territory_action", "forced_elimination",   "resign",
    "timeout"};

inline const char* const REASON_NAMES[] = {"",
                                    "ring_elimination",
                                    "territory_control",
                                    "last_player_standing",
                                    "tiebreaker_by_player_number",
                                    "resignation",
                                    "timeout"};

inline int parse_enum(const std::string& name, const char* const* names, int n, const char* what) {
  for (int i = 0; i < n; i++)
    if (name == names[i]) return i;
  throw py::value_error(std::string("unknown ") + what + " '" + name + "'");
}

inline BoardType parse_board(const std::string& name) {
  int b = board_from_name(name.c_str());
  if (b < 0)
    throw py::value_error("unknown board '" + name + "' (expected square8, hex8, square19 or hexagonal)");
  return (BoardType)b;
}

inline const char* const PHASE_NAMES[NUM_PHASES] = {"ring_placement",       "movement",
                                             "capture",              "chain_capture",
                                             "line_processing",      "territory_processing",
                                             "forced_elimination",   "game_over"};

// A game: one state plus its scratch buffers (heap-held: MoveList is large).
class Game {
 public:
  Game(const std::string& board, pyarg::Int num_players, bool swap_rule) {
    if (num_players.v < 2 || num_players.v > MAX_PLAYERS)
      throw py::value_error("num_players must be 2, 3 or 4, got " + pyarg::show(num_players.v));
    g_ = &host_geometry(parse_board(board));
    alloc();
    init_state(*s_, *g_, (int)num_players.v, swap_rule);
  }
  Game(const Game& o) : g_(o.g_) {
    alloc();
    *s_ = *o.s_;
  }

  const Geometry& geo() const { return *g_; }
  State& st() { return *s_; }
  const State& st() const { return *s_; }

  std::vector<Move> legal_moves() {
    legal_moves_into();
    return std::vector<Move>(list_->m, list_->m + list_->n);
  }
  int num_legal_moves() {
    legal_moves_into();
    return list_->n;
  }
  int apply(const Move& m) { return (int)step_checked(*g_, *s_, m, *sc_, *list_); }
  // No legality check (the caller knows the move is legal), but never a read outside the state:
  // a move that cannot be a move of this state at all raises ValueError.
  void apply_unchecked(const Move& m) {
    if (!record_sane(*g_, *s_, m))
      throw py::value_error("the move cannot be applied to this state (wrong player, phase or cells)");
    step_unchecked(*g_, *s_, m, *sc_);
  }

  std::string fingerprint_str() const {
    std::vector<char> buf(64 * 1024);
    StringSink k{buf.data(), (int)buf.size(), 0};
    fingerprint(*g_, *s_, k);
    return std::string(buf.data(), (size_t)std::min(k.len, (int)buf.size() - 1));
  }
  std::string hash_str() const {
    char out[17];
    snprintf(out, sizeof(out), "%016llx", (unsigned long long)state_hash(*g_, *s_));
    return out;
  }

 private:
  void alloc() {
    s_ = std::make_unique<State>();
    sc_ = std::make_unique<Scratch>();
    list_ = std::make_unique<MoveList>();
  }
  void legal_moves_into() {
    rr::legal_moves(*g_, *s_, *sc_, *list_);
    if (list_->overflow) throw std::runtime_error("legal move list overflow (MAX_MOVES too small)");
  }
  const Geometry* g_;
  std::unique_ptr<State> s_;
  std::unique_ptr<Scratch> sc_;
  std::unique_ptr<MoveList> list_;
};

inline py::object cell_or_none(int c) { return c == NO_CELL ? py::object(py::none()) : py::object(py::int_(c)); }

// Policy names in Policy order (selfplay/policy.h); Python takes its list from here (_core.POLICIES).
inline const std::vector<std::string> POLICY_NAMES = {"random", "heuristic"};

inline uint8_t parse_policy(const std::string& policy) {
  for (size_t i = 0; i < POLICY_NAMES.size(); i++)
    if (policy == POLICY_NAMES[i]) return (uint8_t)i;
  std::string names;
  for (const std::string& n : POLICY_NAMES) names += (names.empty() ? "" : " or ") + n;
  throw py::value_error("unknown policy '" + policy + "' (expected " + names + ")");
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a((py::ssize_t)v.size());
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

// One registration function per area; PYBIND11_MODULE (csrc/bindings.cpp) calls them in order.
void register_engine(py::module_& mod);    // bindings/engine.cpp: Move, Game, JSON helpers, records
void register_selfplay(py::module_& mod);  // bindings/selfplay.cpp: batched self-play, struct layouts
void register_export(py::module_& mod);    // bindings/export.cpp: submodule ringrift._core.export
void register_env(py::module_& mod);       // bindings/env.cpp: batch environment host twin
void register_upstream_export(py::module_& mod);  // bindings/upstream_export.cpp: submodule ringrift._core.upstream
void register_db(py::module_& mod);        // bindings/db.cpp: the game DB's packed step blobs
void register_search(py::module_& mod);    // bindings/search.cpp: batched Gumbel search trees

}  // namespace bind
}  // namespace rr
