// ringrift._core, engine area: Move, Game (state, legal moves, apply, JSON load/dump helpers),
// move records and replay verification. Every argument is checked (bindings/checked_args.h).
#include "bindings/common.h"

namespace rr {
namespace bind {

std::vector<int> line_cells(const Geometry& g, int start, int dir, int len) {
  std::vector<int> out;
  for (int i = 0, c = start; i < len && c != NO_CELL; i++, c = g.nbr[c][dir]) out.push_back(c);
  return out;
}

// Cells a move refers to beyond from/to/target: line positions, collapsed segment, region.
// ValueError when the move does not fit the game's board (pyarg::move_on_board).
py::dict move_cells(Game& game, const Move& m) {
  const Geometry& g = game.geo();
  pyarg::move_on_board(g, game.st().num_players, m);
  py::dict d;
  int T = line_threshold(g, game.st().num_players);
  if (m.type == MT_PROCESS_LINE || m.type == MT_CHOOSE_LINE_OPTION) {
    auto line = line_cells(g, m.line_start, m.line_dir, m.line_len);
    d["line"] = line;
    if (m.type == MT_CHOOSE_LINE_OPTION) {
      if (m.window == WINDOW_ALL) d["collapse"] = line;
      else d["collapse"] = std::vector<int>(line.begin() + m.window, line.begin() + m.window + T);
    }
  } else if (m.type == MT_RECOVERY_SLIDE) {
    if (m.context == RM_LINE) d["line"] = line_cells(g, m.line_start, m.line_dir, m.line_len);
    // The stack whose buried ring pays for the slide, chosen on the pre-move board as
    // apply_recovery_slide chooses it; a line's option 2 is free.
    std::vector<int> extraction;
    int c = (m.context == RM_LINE && m.option == 2) ? NO_CELL : recovery_extraction_stack(game.st(), m.player);
    if (c != NO_CELL) extraction.push_back(c);
    d["extraction"] = extraction;
  } else if (m.type == MT_CHOOSE_TERRITORY_OPTION) {
    int16_t cells[MAX_CELLS];
    int n = region_cells(g, game.st(), m.to, m.option, cells);
    d["region"] = std::vector<int>(cells, cells + n);
  }
  return d;
}

std::vector<int> stack_rings(const State& s, int c) {
  std::vector<int> rings;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r]) rings.push_back(s.ring_owner[r]);
  return rings;
}

// Load a position. `stacks`: (cell, rings top-first) in insertion order; `markers` and
// `collapsed`: (cell, owner), markers in insertion order. `extras` holds the rule fields the
// reference keeps in its move history (see transient_fields). Validated: every number is
// bounded by what the rules can reach (pyarg limits), bad input raises ValueError naming the
// field, and the game is left unchanged.
using IntList = std::vector<pyarg::Int>;

void load_position(Game& game, const std::string& phase, pyarg::Int current, const std::string& status,
                   pyarg::Int winner, const IntList& hand, const IntList& elim, const IntList& terr,
                   const std::vector<std::pair<pyarg::Int, IntList>>& stacks,
                   const std::vector<std::pair<pyarg::Int, pyarg::Int>>& markers,
                   const std::vector<std::pair<pyarg::Int, pyarg::Int>>& collapsed, pyarg::Int must_move,
                   pyarg::Int chain_pos, bool pending_line, const py::dict& extras) {
  using pyarg::in_range;
  const Geometry& g = game.geo();
  State& s0 = game.st();
  const int np = s0.num_players;
  std::unique_ptr<State> sp(new State);
  State& s = *sp;
  init_state(s, g, np, s0.swap_rule);
  auto check_cell = [&](pyarg::Int c, const char* what) { return pyarg::cell(g, c, what); };
  auto check_player = [&](pyarg::Int p, const char* what) {
    return (int)in_range(p, 1, np, std::string("player out of range in ") + what);
  };
  auto opt_cell = [&](pyarg::Int c, const char* what) -> int16_t {
    if (c.v == -1) return NO_CELL;
    return (int16_t)check_cell(c, what);
  };
  // extras: known keys only, integer values, each within what the rules can reach.
  static const char* const EXTRA_KEYS[] = {"captureOrigin", "pendingTerritoryElimination", "turnHadAction",
                                           "turnUsedRecovery", "lastActor", "moveCount", "victoryThreshold",
                                           "territoryMinimum", "p1Moved", "p2MovedNonSwap", "swapDone", "lps"};
  for (auto item : extras) {
    std::string k = py::str(item.first);
    bool known = false;
    for (const char* e : EXTRA_KEYS) known = known || k == e;
    if (!known) throw py::value_error("unknown state field ringrift." + k);
  }
  auto extra_int = [&](const char* key, long long dflt, long long lo, long long hi) -> int {
    if (!extras.contains(key)) return (int)dflt;
    return (int)in_range(pyarg::int_value(extras[key], std::string("ringrift.") + key), lo, hi,
                         std::string("ringrift.") + key);
  };
  if ((int)hand.size() != np || (int)elim.size() != np || (int)terr.size() != np)
    throw py::value_error("per-player lists must have num_players entries");
  s.phase = (uint8_t)parse_enum(phase, PHASE_NAMES, NUM_PHASES, "phase");
  s.current = (uint8_t)check_player(current, "currentPlayer");
  if (status == "active") s.status = ST_ACTIVE;
  else if (status == "completed" || status == "finished") s.status = ST_COMPLETED;
  else throw py::value_error("unknown gameStatus '" + status + "'");
  s.winner = (uint8_t)in_range(winner, 0, np, "winner");
  int on_board[MAX_PLAYERS + 1] = {0};
  long long total = 0;
  std::vector<bool> occupied(g.num_cells, false);
  for (auto& st : stacks) {
    const int c = check_cell(st.first, "stacks");
    if (st.second.empty()) throw py::value_error("empty stack at " + std::string(g.key[c]));
    if (occupied[c]) throw py::value_error("two stacks at " + std::string(g.key[c]));
    occupied[c] = true;
    // Bounded before counting: a stack cannot hold more rings than the engine's pool.
    if ((long long)st.second.size() > MAX_RINGS)
      throw py::value_error("the stack at " + std::string(g.key[c]) + " holds more than " + std::to_string(MAX_RINGS) +
                            " rings");
    for (pyarg::Int r : st.second) on_board[check_player(r, "stack rings")]++;
    total += (long long)st.second.size();
    if (total > MAX_RINGS) break;  // reported below
  }
  for (int p = 1; p <= np; p++) {
    const std::string who = "player " + std::to_string(p);
    s.hand[p] = (int16_t)in_range(hand[p - 1], 0, MAX_RINGS, who + " ringsInHand");
    s.elim[p] = (int16_t)in_range(elim[p - 1], 0, MAX_RINGS, who + " eliminatedRings");
    s.terr[p] = (int16_t)in_range(terr[p - 1], 0, g.num_cells, who + " territorySpaces");
    total += s.hand[p];
  }
  // The reference does not bound a position's rings by the ring supply (its test vectors exceed
  // it); the engine's ring pool is the only limit.
  if (total > MAX_RINGS)
    throw py::value_error("the position holds " + std::to_string(total) +
                          " or more rings in hands and on the board, more than the engine's " +
                          std::to_string(MAX_RINGS));
  for (auto& st : stacks) {
    // Push bottom-first so the list ends top-first; hands are already set.
    for (auto it = st.second.rbegin(); it != st.second.rend(); ++it) {
      const int p = (int)it->v;
      int16_t keep = s.hand[p];
      stack_push_rings(s, (int)st.first.v, (uint8_t)p, 1);
      s.hand[p] = keep;
    }
  }
  // Eliminated rings by colour are not serialized; derive them from conservation.
  for (int p = 1; p <= np; p++) {
    int gone = s.rings_per_player - s.hand[p] - s.board_rings[p];
    s.elim_colour[p] = (int16_t)(gone > 0 ? gone : 0);
  }
  for (auto& mk : markers) {
    const int c = check_cell(mk.first, "markers");
    const int p = check_player(mk.second, "markers");
    if (s.top[c] != NO_CELL || s.marker[c]) throw py::value_error("marker shares a cell at " + std::string(g.key[c]));
    marker_set(s, c, (uint8_t)p);
  }
  for (auto& cl : collapsed) {
    const int c = check_cell(cl.first, "collapsedSpaces");
    const int p = check_player(cl.second, "collapsedSpaces");
    if (s.top[c] != NO_CELL || s.marker[c] || s.collapsed[c])
      throw py::value_error("collapsed space shares a cell at " + std::string(g.key[c]));
    s.collapsed[c] = (uint8_t)p;
    s.collapsed_count[p]++;
  }
  s.must_move = opt_cell(must_move, "mustMoveFromStackKey");
  s.chain_pos = opt_cell(chain_pos, "chainCapturePosition");
  s.capture_origin = extras.contains("captureOrigin")
                         ? opt_cell(pyarg::Int{pyarg::int_value(extras["captureOrigin"], "ringrift.captureOrigin")},
                                    "ringrift.captureOrigin")
                         : NO_CELL;
  s.pending_line = pending_line;
  s.pending_territory = (uint8_t)extra_int("pendingTerritoryElimination", 0, 0, 1);
  s.turn_had_action = (uint8_t)extra_int("turnHadAction", 0, 0, 1);
  s.turn_used_recovery = (uint8_t)extra_int("turnUsedRecovery", 0, 0, 1);
  s.last_actor = (uint8_t)extra_int("lastActor", 0, 0, np);
  s.move_count = extra_int("moveCount", 0, 0, pyarg::MAX_MOVE_COUNT);
  int vt = extra_int("victoryThreshold", 0, 0, MAX_RINGS), tm = extra_int("territoryMinimum", 0, 0, g.num_cells);
  if (vt > 0) s.victory_threshold = (int16_t)vt;
  if (tm > 0) s.territory_minimum = (int16_t)tm;
  // Pie rule: a loaded mid-game position has a history; player 1 has moved unless this is move one.
  bool fresh = s.current == 1 && s.phase == PH_RING_PLACEMENT && s.num_stacks == 0 && markers.empty();
  s.p1_moved = (uint8_t)extra_int("p1Moved", fresh ? 0 : 1, 0, 1);
  s.p2_moved_non_swap = (uint8_t)extra_int("p2MovedNonSwap", 0, 0, 1);
  s.swap_done = (uint8_t)extra_int("swapDone", 0, 0, 1);
  if (extras.contains("lps")) {
    py::object lps_obj = extras["lps"];
    if (!py::isinstance<py::dict>(lps_obj)) throw py::value_error("ringrift.lps must be an object");
    py::dict lps = lps_obj;
    static const char* const LPS_KEYS[] = {"roundIndex", "firstPlayer", "maskSet", "maskValue",
                                           "exclusiveCompleted", "consecutivePlayer", "consecutiveRounds"};
    for (auto item : lps) {
      std::string k = py::str(item.first);
      bool known = false;
      for (const char* e : LPS_KEYS) known = known || k == e;
      if (!known) throw py::value_error("unknown state field ringrift.lps." + k);
    }
    auto li = [&](const char* k, long long hi) -> int {
      if (!lps.contains(k)) return 0;
      const std::string what = std::string("ringrift.lps.") + k;
      return (int)in_range(pyarg::int_value(lps[k], what), 0, hi, what);
    };
    // Actor masks have one bit per seat, bits 1..num_players.
    const int seat_bits = ((1 << (np + 1)) - 1) & ~1;
    auto mask = [&](const char* k) -> uint8_t {
      int v = li(k, seat_bits);
      if (v & ~seat_bits)
        throw py::value_error(std::string("ringrift.lps.") + k + ": " + std::to_string(v) +
                              " has bits outside the seats 1.." + std::to_string(np));
      return (uint8_t)v;
    };
    s.lps.round_index = (int16_t)li("roundIndex", pyarg::MAX_LPS_ROUNDS);
    s.lps.first_player = (uint8_t)li("firstPlayer", np);
    s.lps.mask_set = mask("maskSet");
    s.lps.mask_val = mask("maskValue");
    s.lps.exclusive_completed = (uint8_t)li("exclusiveCompleted", np);
    s.lps.consecutive_player = (uint8_t)li("consecutivePlayer", np);
    s.lps.consecutive_rounds = (int16_t)li("consecutiveRounds", pyarg::MAX_LPS_ROUNDS);
  }
  if (s.phase == PH_GAME_OVER) s.status = ST_COMPLETED;
  if (s.status == ST_ACTIVE) {
    // Phases whose surface starts from a cell need that cell, holding the mover's stack.
    const char* where = nullptr;
    if (s.phase == PH_CAPTURE && (s.capture_origin == NO_CELL || s.ctrl[s.capture_origin] != s.current))
      where = "a capture phase needs its origin (the mover's stack that just moved: mustMoveFromStackKey, "
              "the last move in moveHistory, or ringrift.captureOrigin)";
    if (s.phase == PH_CHAIN_CAPTURE && (s.chain_pos == NO_CELL || s.ctrl[s.chain_pos] != s.current))
      where = "a chain_capture phase needs chainCapturePosition on the mover's stack";
    if (s.phase == PH_FORCED_ELIMINATION && s.ctrl_stacks[s.current] == 0)
      where = "a forced_elimination phase needs a stack of the current player";
    if (where) throw py::value_error(where);
  }
  s0 = s;
}

// The rule fields the reference keeps in its move history, for a lossless state round trip.
py::dict transient_fields(Game& game) {
  const State& s = game.st();
  py::dict d;
  if (s.capture_origin != NO_CELL) d["captureOrigin"] = (int)s.capture_origin;
  d["pendingTerritoryElimination"] = (int)s.pending_territory;
  d["turnHadAction"] = (int)s.turn_had_action;
  d["turnUsedRecovery"] = (int)s.turn_used_recovery;
  d["lastActor"] = (int)s.last_actor;
  d["moveCount"] = (int)s.move_count;
  d["p1Moved"] = (int)s.p1_moved;
  d["p2MovedNonSwap"] = (int)s.p2_moved_non_swap;
  d["swapDone"] = (int)s.swap_done;
  py::dict lps;
  lps["roundIndex"] = (int)s.lps.round_index;
  lps["firstPlayer"] = (int)s.lps.first_player;
  lps["maskSet"] = (int)s.lps.mask_set;
  lps["maskValue"] = (int)s.lps.mask_val;
  lps["exclusiveCompleted"] = (int)s.lps.exclusive_completed;
  lps["consecutivePlayer"] = (int)s.lps.consecutive_player;
  lps["consecutiveRounds"] = (int)s.lps.consecutive_rounds;
  d["lps"] = lps;
  return d;
}

// Move(...) from Python: every field range-checked (pyarg::move_fields) before it is narrowed
// into the 16-byte record, so no value wraps.
Move make_py_move(const std::string& type, pyarg::Int player, pyarg::Int from, pyarg::Int to, pyarg::Int target,
                  pyarg::Int count, pyarg::Int line_start, pyarg::Int line_dir, pyarg::Int line_len, pyarg::Int window,
                  pyarg::Int context, pyarg::Int option) {
  using pyarg::in_range;
  Move m = make_move((uint8_t)parse_enum(type, MOVE_TYPE_NAMES, NUM_MOVE_TYPES, "move type"),
                     (uint8_t)in_range(player, 1, MAX_PLAYERS, "player"));
  m.from = (int16_t)in_range(from, -1, MAX_CELLS - 1, "from_cell");
  m.to = (int16_t)in_range(to, -1, MAX_CELLS - 1, "to");
  m.target = (int16_t)in_range(target, -1, MAX_CELLS - 1, "target");
  m.count = (uint8_t)in_range(count, 0, 255, "count");
  m.line_start = (int16_t)in_range(line_start, -1, MAX_CELLS - 1, "line_start");
  m.line_dir = (uint8_t)in_range(line_dir, 0, MAX_DIRS - 1, "line_dir");
  m.line_len = (uint8_t)in_range(line_len, 0, 255, "line_len");
  m.window = window.v == -1 ? WINDOW_ALL : (uint8_t)in_range(window, -1, WINDOW_ALL - 1, "window");
  m.context = (uint8_t)in_range(context, 0, pyarg::MOVE_MAX_CONTEXT, "context");
  m.option = (uint8_t)in_range(option, 0, pyarg::MOVE_MAX_OPTION, "option");
  pyarg::move_fields(m);
  return m;
}

Move move_from_record(py::bytes b) {
  std::string raw = b;
  if (raw.size() != sizeof(Move))
    throw py::value_error("a move record is " + std::to_string(sizeof(Move)) + " bytes, got " +
                          std::to_string(raw.size()));
  Move m;
  std::memcpy(&m, raw.data(), sizeof(Move));
  if (m.type >= NUM_MOVE_TYPES) throw py::value_error("move record has unknown type " + std::to_string(m.type));
  pyarg::move_fields(m);
  return m;
}

// Step-hash kinds by name, as the game DB and the self-play batches spell them (fast_hash.h).
static const char* const HASH_KIND_NAMES[] = {"reference", "fast64", "fast32", "cells64", "cells32"};
constexpr int NUM_HASH_KINDS = 5;

int hash_kind_arg(const py::object& kind) {
  if (kind.is_none()) return HASH_AUTO;
  std::string k = py::cast<std::string>(kind);
  for (int i = 0; i < NUM_HASH_KINDS; i++)
    if (k == HASH_KIND_NAMES[i]) return i;
  throw py::value_error("unknown hash kind '" + k + "' (expected reference, fast64, fast32, cells64, cells32 or None for auto)");
}

// Replay recorded moves from the initial position, checking each against the legal surface
// and the recorded hash of `kind` (None: whichever kind the first step matches). Returns (-1, "")
// when all match, else (step, what differed).
py::tuple replay_verify(Game& game, py::array_t<uint8_t, py::array::c_style> moves,
                        py::array_t<uint64_t, py::array::c_style | py::array::forcecast> hashes,
                        const py::object& kind_arg) {
  if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
    throw py::value_error("moves must have shape (N, 16)");
  if (hashes.ndim() != 1 || hashes.shape(0) != moves.shape(0))
    throw py::value_error("hashes must have one entry per move");
  int kind = hash_kind_arg(kind_arg);
  py::ssize_t n = moves.shape(0);
  const uint8_t* mv = moves.data();
  const uint64_t* hs = hashes.data();
  int bad = -1;
  int code = 0;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; i++) {
      Move m;
      std::memcpy(&m, mv + i * sizeof(Move), sizeof(Move));
      code = game.apply(m);
      if (code || !step_hash_matches(game.geo(), game.st(), hs[i], kind)) {
        bad = (int)i;
        break;
      }
    }
  }
  if (bad < 0) return py::make_tuple(-1, "");
  if (code) {
    static const char* errors[] = {"ok", "the game is over", "wrong player", "move type not allowed in this phase",
                                   "not in the legal-move list", "the reference engine rejects this listed move"};
    return py::make_tuple(bad, std::string("move rejected: ") + errors[code]);
  }
  char buf[128];
  if (kind == HASH_AUTO)
    snprintf(buf, sizeof(buf), "hash: recorded %016llx is no kind of hash of the replayed state",
             (unsigned long long)hs[bad]);
  else
    snprintf(buf, sizeof(buf), "%s hash %016llx, recorded %016llx", HASH_KIND_NAMES[kind],
             (unsigned long long)step_hash(game.geo(), game.st(), kind), (unsigned long long)hs[bad]);
  return py::make_tuple(bad, std::string(buf));
}

// Replay recorded moves from the initial position (each checked against the legal surface) and
// return the hash of `kind` after every step: the reference hashes of a game whose DB row stores
// fast step hashes, for parity against the TS engine. Raises ValueError at an illegal move.
py::array_t<uint64_t> replay_hashes(Game& game, py::array_t<uint8_t, py::array::c_style> moves,
                                    const std::string& kind_name) {
  if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
    throw py::value_error("moves must have shape (N, 16)");
  int kind = hash_kind_arg(py::str(kind_name));
  py::ssize_t n = moves.shape(0);
  py::array_t<uint64_t> out(n);
  uint64_t* o = out.mutable_data();
  const uint8_t* mv = moves.data();
  int code = 0;
  py::ssize_t bad = -1;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; i++) {
      Move m;
      std::memcpy(&m, mv + i * sizeof(Move), sizeof(Move));
      code = game.apply(m);
      if (code) {
        bad = i;
        break;
      }
      o[i] = step_hash(game.geo(), game.st(), kind);
    }
  }
  if (bad >= 0) throw py::value_error("replay_hashes: move " + std::to_string(bad) + " rejected (apply error " +
                                      std::to_string(code) + ")");
  return out;
}

void register_engine(py::module_& mod) {
  mod.attr("MOVE_TYPES") = py::cast(std::vector<std::string>(MOVE_TYPE_NAMES, MOVE_TYPE_NAMES + NUM_MOVE_TYPES));
  mod.attr("PHASES") = py::cast(std::vector<std::string>(PHASE_NAMES, PHASE_NAMES + NUM_PHASES));
  std::vector<std::string> boards;
  for (int b = 0; b < NUM_BOARDS; b++) boards.push_back(board_name(b));
  mod.attr("BOARDS") = py::cast(boards);
  mod.attr("MAX_MOVES") = MAX_MOVES;
  mod.attr("APPLY_ERRORS") = py::cast(std::vector<std::string>{
      "ok", "the game is over", "wrong player", "move type not allowed in this phase",
      "not in the legal-move list", "the reference engine rejects this listed move"});

  mod.attr("MOVE_RECORD_SIZE") = (int)sizeof(Move);
  mod.attr("REASONS") = py::cast(std::vector<std::string>(REASON_NAMES, REASON_NAMES + 7));
  mod.attr("HASH_KINDS") = py::cast(std::vector<std::string>(HASH_KIND_NAMES, HASH_KIND_NAMES + NUM_HASH_KINDS));

  py::class_<Move>(mod, "Move")
      .def(py::init(&make_py_move), py::arg("type"), py::arg("player"), py::arg("from_cell") = -1,
           py::arg("to") = -1, py::arg("target") = -1, py::arg("count") = 0, py::arg("line_start") = -1,
           py::arg("line_dir") = 0, py::arg("line_len") = 0, py::arg("window") = -1, py::arg("context") = 0,
           py::arg("option") = 0)
      .def_property_readonly("type", [](const Move& m) { return std::string(MOVE_TYPE_NAMES[m.type]); })
      .def_property_readonly("type_id", [](const Move& m) { return (int)m.type; })
      .def_readonly("player", &Move::player)
      .def_property_readonly("from_cell", [](const Move& m) { return cell_or_none(m.from); })
      .def_property_readonly("to", [](const Move& m) { return cell_or_none(m.to); })
      .def_property_readonly("target", [](const Move& m) { return cell_or_none(m.target); })
      .def_readonly("count", &Move::count)
      .def_property_readonly("line_start", [](const Move& m) { return cell_or_none(m.line_start); })
      .def_readonly("line_dir", &Move::line_dir)
      .def_readonly("line_len", &Move::line_len)
      .def_property_readonly("window", [](const Move& m) { return m.window == WINDOW_ALL ? -1 : (int)m.window; })
      .def_readonly("context", &Move::context)
      .def_readonly("option", &Move::option)
      .def("to_record", [](const Move& m) { return py::bytes((const char*)&m, sizeof(Move)); },
           "The 16-byte little-endian record stored in game databases.")
      .def("__eq__", [](const Move& a, const Move& b) { return same_move(a, b); })
      .def("__hash__", [](const Move& m) {
        return py::hash(py::make_tuple(m.type, m.player, m.from, m.to, m.target, m.count, m.line_start, m.line_dir,
                                       m.line_len, m.window, m.context, m.option));
      });

  py::class_<Game>(mod, "Game")
      .def(py::init<const std::string&, pyarg::Int, bool>(), py::arg("board"), py::arg("num_players"),
           py::arg("swap_rule") = false)
      .def(py::init<const Game&>(), py::arg("other"))
      .def_property_readonly("board", [](Game& g) { return std::string(board_name(g.geo().board)); })
      .def_property_readonly("num_players", [](Game& g) { return (int)g.st().num_players; })
      .def_property_readonly("num_cells", [](Game& g) { return (int)g.geo().num_cells; })
      .def_property_readonly("swap_rule", [](Game& g) { return (bool)g.st().swap_rule; })
      .def_property_readonly("phase", [](Game& g) { return std::string(PHASE_NAMES[g.st().phase]); })
      .def_property_readonly("current_player", [](Game& g) { return (int)g.st().current; })
      .def_property_readonly("status", [](Game& g) {
        return std::string(g.st().status == ST_ACTIVE ? "active" : "completed");
      })
      .def_property_readonly("winner", [](Game& g) -> py::object {
        return g.st().winner ? py::object(py::int_(g.st().winner)) : py::object(py::none());
      })
      .def_property_readonly("victory_reason", [](Game& g) -> py::object {
        return g.st().reason ? py::object(py::str(REASON_NAMES[g.st().reason])) : py::object(py::none());
      })
      .def_property_readonly("move_count", [](Game& g) { return g.st().move_count; })
      .def_property_readonly("pending_line_elimination", [](Game& g) { return (bool)g.st().pending_line; })
      .def_property_readonly("pending_territory_elimination", [](Game& g) { return (bool)g.st().pending_territory; })
      .def_property_readonly("must_move_from", [](Game& g) { return cell_or_none(g.st().must_move); })
      .def_property_readonly("chain_capture_position", [](Game& g) { return cell_or_none(g.st().chain_pos); })
      .def_property_readonly("victory_threshold", [](Game& g) { return (int)g.st().victory_threshold; })
      .def_property_readonly("territory_minimum", [](Game& g) { return (int)g.st().territory_minimum; })
      .def_property_readonly("rings_per_player", [](Game& g) { return (int)g.st().rings_per_player; })
      .def("legal_moves", &Game::legal_moves, "The legal-move surface, in the reference's order.")
      .def("num_legal_moves", &Game::num_legal_moves)
      .def("_apply", &Game::apply, "Validated step; returns an error code (0 = ok), state unchanged on error.")
      .def("_apply_unchecked", &Game::apply_unchecked)
      .def("hash", &Game::hash_str, "The reference state hash (16 hex digits).")
      .def("fingerprint", &Game::fingerprint_str, "The string the reference hashes.")
      .def("fast_hash", [](Game& g) { return fast_state_hash(g.geo(), g.st()); },
           "The fast step hash of the state (fast_hash.h; game DBs written before the cells hash): a 64-bit int.")
      .def("cells_hash", [](Game& g) { return cells_state_hash(g.geo(), g.st()); },
           "The self-play step hash of the state (fast_hash.h: cells_state_hash): a 64-bit int.")
      .def("players", [](Game& g) {
        py::list out;
        const State& s = g.st();
        for (int p = 1; p <= s.num_players; p++) {
          py::dict d;
          d["player"] = p;
          d["rings_in_hand"] = (int)s.hand[p];
          d["eliminated_rings"] = (int)s.elim[p];
          d["territory_spaces"] = (int)s.terr[p];
          d["rings_on_board"] = (int)s.board_rings[p];
          d["eliminated_by_colour"] = (int)s.elim_colour[p];
          d["stacks_controlled"] = (int)s.ctrl_stacks[p];
          d["markers"] = (int)s.marker_count[p];
          d["collapsed"] = (int)s.collapsed_count[p];
          out.append(d);
        }
        return out;
      })
      .def("stacks", [](Game& g) {
        std::vector<std::pair<int, std::vector<int>>> out;
        const State& s = g.st();
        for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) out.emplace_back(c, stack_rings(s, c));
        return out;
      }, "Stacks in insertion order as (cell, rings top-first).")
      .def("markers", [](Game& g) {
        std::vector<std::pair<int, int>> out;
        const State& s = g.st();
        for (int c = s.m_head; c != NO_CELL; c = s.m_next[c]) out.emplace_back(c, (int)s.marker[c]);
        return out;
      }, "Markers in insertion order as (cell, owner).")
      .def("collapsed", [](Game& g) {
        std::vector<std::pair<int, int>> out;
        const State& s = g.st();
        for (int c = 0; c < g.geo().num_cells; c++)
          if (s.collapsed[c]) out.emplace_back(c, (int)s.collapsed[c]);
        return out;
      }, "Collapsed cells as (cell, owner), in cell order.")
      .def("move_cells", &move_cells, py::arg("move"),
           "Cells a move names beyond from/to/target (line, collapse, region); ValueError if it does not fit the board.")
      .def("_load", &load_position)
      .def("_transient", &transient_fields)
      .def("_check_move", [](Game& g, const Move& m) { pyarg::move_on_board(g.geo(), g.st().num_players, m); },
           "ValueError unless the move's cells, line and window fit this game's board.")
      .def("cell_key", [](Game& g, pyarg::Int c) { return std::string(g.geo().key[pyarg::cell(g.geo(), c, "cell")]); },
           py::arg("cell"), "The reference's position key of a cell (\"x,y\" or \"x,y,z\"); ValueError off the board.")
      .def("cell_coords", [](Game& g, pyarg::Int c_arg) {
        const Geometry& geo = g.geo();
        const int c = pyarg::cell(geo, c_arg, "cell");
        return py::make_tuple((int)geo.cx[c], (int)geo.cy[c], (int)geo.cz[c]);
      }, py::arg("cell"), "(x, y, z) of a cell (z = 0 on square boards); ValueError off the board.")
      .def("cell_index", [](Game& g, pyarg::Int x, pyarg::Int y) {
        // Coordinates far outside any board are simply off it (the grid is at most 25 wide).
        if (x.v < -64 || x.v > 64 || y.v < -64 || y.v > 64) return -1;
        return cell_at(g.geo(), (int)x.v, (int)y.v);
      }, py::arg("x"), py::arg("y"), "Cell index of (x, y), or -1 when off the board.")
      .def("dir_between", [](Game& g, pyarg::Int a, pyarg::Int b) {
        const Geometry& geo = g.geo();
        return dir_between(geo, pyarg::cell(geo, a, "cell a"), pyarg::cell(geo, b, "cell b"));
      }, py::arg("a"), py::arg("b"), "Direction index of the straight ray from cell a to cell b, or -1.")
      .def("neighbour", [](Game& g, pyarg::Int c, pyarg::Int d) {
        const Geometry& geo = g.geo();
        return (int)geo.nbr[pyarg::cell(geo, c, "cell")][pyarg::dir(geo, d, "direction")];
      }, py::arg("cell"), py::arg("direction"), "The neighbour of a cell in a movement direction, or -1 off the board.");

  // After the classes: a signature names a class only once it is registered (else pybind11 writes
  // the C++ name, `-> rr::Move`, in the docstring and in its argument errors).
  mod.def("move_from_record", &move_from_record, py::arg("record"), "Decode a 16-byte move record.");
  mod.def("replay_verify", &replay_verify, py::arg("game"), py::arg("moves"), py::arg("hashes"),
          py::arg("kind") = py::none(),
          "Apply recorded moves to `game`, checking legality and each hash of `kind` (reference, fast64, "
          "fast32; None: the kind the first step matches); returns (step or -1, why).");
  mod.def("replay_hashes", &replay_hashes, py::arg("game"), py::arg("moves"), py::arg("kind") = "reference",
          "Apply recorded moves to `game` (checked) and return the hash of `kind` after each one.");
}

}  // namespace bind
}  // namespace rr
