// The legal-move surface (RULES.md 4.4), the transition function (5.x) and the host layer
// (section H) as one step function. Everything is callable from host and device code.
#pragma once
#include "hash.h"
#include "lines.h"
#include "movement.h"
#include "recovery.h"
#include "territory.h"
#include "victory.h"

namespace rr {

// Scratch space for the rules, kept out of State so states stay small and copyable.
struct Scratch {
  RegionScan regions;
  LineList lines;
};

RR_HD inline bool is_bookkeeping(uint8_t t) {
  return t == MT_NO_PLACEMENT_ACTION || t == MT_NO_MOVEMENT_ACTION || t == MT_NO_LINE_ACTION ||
         t == MT_NO_TERRITORY_ACTION || t == MT_SKIP_PLACEMENT || t == MT_SKIP_CAPTURE || t == MT_SKIP_RECOVERY ||
         t == MT_SKIP_TERRITORY_PROCESSING;
}

// Move types allowed per phase (resign / timeout are allowed everywhere).
RR_HD inline bool type_allowed_in_phase(uint8_t t, uint8_t ph) {
  if (t == MT_RESIGN || t == MT_TIMEOUT) return ph != PH_GAME_OVER;
  switch (ph) {
    case PH_RING_PLACEMENT:
      return t == MT_PLACE_RING || t == MT_SKIP_PLACEMENT || t == MT_NO_PLACEMENT_ACTION || t == MT_SWAP_SIDES;
    case PH_MOVEMENT:
      return t == MT_MOVE_STACK || t == MT_OVERTAKING_CAPTURE || t == MT_RECOVERY_SLIDE || t == MT_SKIP_RECOVERY ||
             t == MT_NO_MOVEMENT_ACTION;
    case PH_CAPTURE: return t == MT_OVERTAKING_CAPTURE || t == MT_SKIP_CAPTURE;
    case PH_CHAIN_CAPTURE: return t == MT_CONTINUE_CAPTURE_SEGMENT;
    case PH_LINE_PROCESSING:
      return t == MT_PROCESS_LINE || t == MT_CHOOSE_LINE_OPTION || t == MT_ELIMINATE_RINGS_FROM_STACK ||
             t == MT_NO_LINE_ACTION;
    case PH_TERRITORY_PROCESSING:
      return t == MT_CHOOSE_TERRITORY_OPTION || t == MT_ELIMINATE_RINGS_FROM_STACK || t == MT_NO_TERRITORY_ACTION ||
             t == MT_SKIP_TERRITORY_PROCESSING;
    case PH_FORCED_ELIMINATION: return t == MT_FORCED_ELIMINATION;
    default: return false;
  }
}

RR_HD inline bool skip_placement_eligible(const Geometry& g, const State& s, uint8_t p) {
  if (s.hand[p] <= 0) return false;
  if (s.ctrl_stacks[p] > 0) return player_can_move(g, s, p, NO_CELL);
  return recovery_eligible(s, p);
}

RR_HD inline bool swap_offered(const State& s) {
  return s.swap_rule && s.status == ST_ACTIVE && s.num_players == 2 && s.current == 2 &&
         s.phase == PH_RING_PLACEMENT && s.p1_moved && !s.p2_moved_non_swap && !s.swap_done;
}

// ---- the surface ---------------------------------------------------------------------------

template <class Out>
RR_HD inline void gen_placement_surface(const Geometry& g, const State& s, uint8_t p, Out& out) {
  if (s.hand[p] <= 0) {
    ml_push(out, make_move(MT_NO_PLACEMENT_ACTION, p));
    return;
  }
  int allowance = placement_allowance(s, p);
  bool any = false;
  if (allowance > 0) {
    Move m = make_move(MT_PLACE_RING, p);
    PlacementMasks pm;
    placement_masks(g, s, p, allowance, pm);
    for (int i = 0; i < g.bb_words; i++) {
      for (uint64_t cells = pm.at[1].w[i]; cells; cells &= cells - 1) {
        int b = ctz64(cells);
        any = true;
        m.to = g.bit_cell[i * 64 + b];
        m.count = 1;
        ml_push(out, m);
        if ((pm.at[2].w[i] >> b) & 1) {
          m.count = 2;
          ml_push(out, m);
        }
        if ((pm.at[3].w[i] >> b) & 1) {
          m.count = 3;
          ml_push(out, m);
        }
      }
    }
  }
  bool skip = skip_placement_eligible(g, s, p);
  if (skip) ml_push(out, make_move(MT_SKIP_PLACEMENT, p));
  else if (!any) ml_push(out, make_move(MT_NO_PLACEMENT_ACTION, p));
}

template <class Out>
RR_HD inline void gen_movement_surface(const Geometry& g, State& s, uint8_t p, Out& out) {
  // All simple moves come before all captures; the first pass notes, per stack in list order,
  // the rays that end at a stack it may overtake, and the second walks only those again.
  int only = s.must_move;
  uint8_t capture_dirs[MAX_CELLS];
  int n = 0;
  unsigned any = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
    if (s.ctrl[c] == p && (only == NO_CELL || c == only)) any |= capture_dirs[n++] = (uint8_t)gen_simple_moves(g, s, c, p, out);
  if (any) {
    n = 0;
    for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
      if (s.ctrl[c] == p && (only == NO_CELL || c == only)) {
        unsigned dirs = capture_dirs[n++];
        if (dirs) gen_captures_on(g, s, c, p, MT_OVERTAKING_CAPTURE, dirs, out);
      }
  }
  if (recovery_eligible(s, p)) {
    ml_push(out, make_move(MT_SKIP_RECOVERY, p));
    gen_recovery(g, s, p, out);
  }
  if (out.n == 0) ml_push(out, make_move(MT_NO_MOVEMENT_ACTION, p));
}

template <class Out>
RR_HD inline void push_line_eliminations(const State& s, uint8_t p, Out& out) {
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    if (s.ctrl[c] != p) continue;
    Move m = make_move(MT_ELIMINATE_RINGS_FROM_STACK, p);
    m.to = (int16_t)c;
    m.count = 1;
    m.context = EC_LINE;
    ml_push(out, m);
  }
}

template <class Out>
RR_HD inline void gen_line_surface(const Geometry& g, const State& s, uint8_t p, Scratch& sc, Out& out) {
  if (s.pending_line) {
    push_line_eliminations(s, p, out);
    return;
  }
  int T = line_threshold(g, s.num_players), orch = orchestrator_min(g, s.num_players);
  // One detection pass at the lower threshold T: a run is found at the same point of the scan
  // whatever the threshold, so the orchestrator lines (>= orch >= T) are the runs of this list
  // with len >= orch, in the same order.
  find_lines(g, s, p, T, sc.lines);
  for (int i = 0; i < sc.lines.n; i++) {
    if (sc.lines.l[i].len < orch) continue;
    Move m = make_move(MT_PROCESS_LINE, p);
    m.line_start = sc.lines.l[i].start;
    m.line_dir = sc.lines.l[i].dir;
    m.line_len = sc.lines.l[i].len;
    m.to = m.line_start;
    ml_push(out, m);
  }
  for (int i = 0; i < sc.lines.n; i++) {
    const Line& l = sc.lines.l[i];
    Move m = make_move(MT_CHOOSE_LINE_OPTION, p);
    m.line_start = l.start;
    m.line_dir = l.dir;
    m.line_len = l.len;
    m.to = l.start;
    ml_push(out, m);
    if (l.len > T)
      for (int w = 0; w + T <= l.len; w++) {
        m.window = (uint8_t)w;
        ml_push(out, m);
      }
  }
  if (out.n == 0) ml_push(out, make_move(MT_NO_LINE_ACTION, p));
}

template <class Out>
RR_HD inline void gen_territory_surface(const Geometry& g, const State& s, uint8_t p, Scratch& sc, Out& out) {
  if (s.no_region_hint && !s.pending_territory) {
    ml_push(out, make_move(MT_NO_TERRITORY_ACTION, p));
    return;
  }
  bool rec = s.turn_used_recovery != 0;
  if (s.pending_territory) {
    for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
      Move m = make_move(MT_ELIMINATE_RINGS_FROM_STACK, p);
      m.to = (int16_t)c;
      if (rec) {
        if (stack_bottommost_buried(s, c, p) <= 0) continue;
        m.count = 1;
        m.context = EC_RECOVERY;
      } else {
        if (s.ctrl[c] != p) continue;
        m.count = s.cap[c];
        m.context = EC_TERRITORY;
      }
      ml_push(out, m);
    }
    return;
  }
  scan_regions(g, s, p, sc.regions);
  int buried = rec ? count_buried_stacks(s, p) : 0;
  for (int i = 0; i < sc.regions.n; i++) {
    const Region& r = sc.regions.r[i];
    if (!region_payable(s, r, p, rec, buried)) continue;
    Move m = make_move(MT_CHOOSE_TERRITORY_OPTION, p);
    m.to = r.seed;
    m.option = r.pass;
    m.count = r.controller;
    ml_push(out, m);
  }
  if (out.n > 0) ml_push(out, make_move(MT_SKIP_TERRITORY_PROCESSING, p));
  else ml_push(out, make_move(MT_NO_TERRITORY_ACTION, p));
}

// The full legal-move surface of the current player (empty when the game is over).
template <class Out>
RR_HD inline void legal_moves(const Geometry& g, State& s, Scratch& sc, Out& out) {
  ml_clear(out);
  if (s.status != ST_ACTIVE) return;
  uint8_t p = s.current;
  switch (s.phase) {
    case PH_RING_PLACEMENT:
      gen_placement_surface(g, s, p, out);
      if (swap_offered(s)) ml_push(out, make_move(MT_SWAP_SIDES, p));
      break;
    case PH_MOVEMENT: gen_movement_surface(g, s, p, out); break;
    case PH_CAPTURE:
      gen_captures(g, s, s.capture_origin, p, MT_OVERTAKING_CAPTURE, out);
      ml_push(out, make_move(MT_SKIP_CAPTURE, p));
      break;
    case PH_CHAIN_CAPTURE: gen_captures(g, s, s.chain_pos, p, MT_CONTINUE_CAPTURE_SEGMENT, out); break;
    case PH_LINE_PROCESSING: gen_line_surface(g, s, p, sc, out); break;
    case PH_TERRITORY_PROCESSING: gen_territory_surface(g, s, p, sc, out); break;
    case PH_FORCED_ELIMINATION:
      for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
        if (s.ctrl[c] != p) continue;
        Move m = make_move(MT_FORCED_ELIMINATION, p);
        m.to = (int16_t)c;
        m.count = s.cap[c];
        ml_push(out, m);
      }
      break;
    default: break;
  }
}

// The ring-placement surface (legal_moves in PH_RING_PLACEMENT, swap included) by size and
// index, without listing it: the random policy needs only the size and the move it draws, and
// the placement surface is the longest one a game lists (up to three moves per cell). Same
// moves in the same order as legal_moves. Usable when the mover has rings in hand and a
// positive allowance (placement_indexable); the other placement surfaces are one or two moves.
struct PlacementIndex {
  PlacementMasks pm;
  int n_place;  // place_ring moves
  int n;        // the whole surface
  bool skip;    // skip_placement follows the place_ring moves (else no_placement_action if none)
  bool swap;    // swap_sides comes last
};

RR_HD inline bool placement_indexable(const State& s) {
  if (s.status != ST_ACTIVE || s.phase != PH_RING_PLACEMENT) return false;
  uint8_t p = s.current;
  return s.hand[p] > 0 && placement_allowance(s, p) > 0;
}

RR_HD inline void placement_index(const Geometry& g, const State& s, PlacementIndex& pi) {
  uint8_t p = s.current;
  placement_masks(g, s, p, placement_allowance(s, p), pi.pm);
  int n = 0;
  for (int i = 0; i < g.bb_words; i++)
    n += popcount64(pi.pm.at[1].w[i]) + popcount64(pi.pm.at[2].w[i]) + popcount64(pi.pm.at[3].w[i]);
  pi.n_place = n;
  pi.skip = skip_placement_eligible(g, s, p);
  pi.swap = swap_offered(s);
  pi.n = n + ((pi.skip || n == 0) ? 1 : 0) + (pi.swap ? 1 : 0);
}

// Move number i (0 <= i < pi.n) of the surface placement_index described.
RR_HD inline Move placement_move_at(const Geometry& g, const State& s, const PlacementIndex& pi, int i) {
  uint8_t p = s.current;
  if (i < pi.n_place) {
    const BB* at = pi.pm.at;
    for (int w = 0; w < g.bb_words; w++) {
      // Byte k of `upto`: the moves of the word's cells 0 .. 8k+7 (1 to 3 a cell: at most 24 a
      // byte and 192 a word, so no byte carries into the next). A walk over every listed cell
      // up to the drawn one was 6% of square8 play.
      const uint64_t upto = (byte_popcounts(at[1].w[w]) + byte_popcounts(at[2].w[w]) + byte_popcounts(at[3].w[w])) *
                            0x0101010101010101ull;
      const int in_word = (int)(upto >> 56);
      if (i >= in_word) {
        i -= in_word;
        continue;
      }
      int k = 0;  // the byte that holds move i
      while ((int)((upto >> (8 * k)) & 0xFF) <= i) k++;
      if (k > 0) i -= (int)((upto >> (8 * (k - 1))) & 0xFF);
      for (uint64_t cells = at[1].w[w] & (~0ull << (8 * k)); cells; cells &= cells - 1) {
        int b = ctz64(cells);
        int two = (int)((at[2].w[w] >> b) & 1), three = (int)((at[3].w[w] >> b) & 1);
        int here = 1 + two + three;
        if (i >= here) {
          i -= here;
          continue;
        }
        Move m = make_move(MT_PLACE_RING, p);
        m.to = g.bit_cell[w * 64 + b];
        m.count = (uint8_t)(i == 0 ? 1 : (i == 1 && two) ? 2 : 3);
        return m;
      }
    }
  }
  i -= pi.n_place;
  if (i == 0 && (pi.skip || pi.n_place == 0)) return make_move(pi.skip ? MT_SKIP_PLACEMENT : MT_NO_PLACEMENT_ACTION, p);
  return make_move(MT_SWAP_SIDES, p);
}

// The movement surface (legal_moves in PH_MOVEMENT) by size and index, without listing it: for
// each stack the mover may move (list order) and each direction, how many simple moves and how
// many capture segments that ray gives, counted in one walk of the ray; the drawn move is then
// rebuilt by walking its ray once more. Same moves in the same order as gen_movement_surface:
// every simple move of every stack, then every capture. Usable when recovery is not open to the
// mover (movement_indexable: with recovery the surface lists slides that the random policy may
// redraw). About 8 KB of counts: the CPU picker's path (the GPU kernel streams the surface).
struct MovementIndex {
  int stacks;               // movable stacks
  int n_simple, n_capture;  // simple moves, capture segments
  int n;                    // the whole surface (no_movement_action alone when both are 0)
  int16_t from[MAX_CELLS];  // the movable stacks in list order
  uint8_t simple[MAX_CELLS * MAX_DIRS], capture[MAX_CELLS * MAX_DIRS];  // per stack x direction
};

// The nearest landing past a capture target at distance `dist`, counted from the target: one
// cell beyond it, or further while the total distance is below the mover's height h.
RR_HD inline int nearest_landing(int h, int dist) { return h - dist > 1 ? h - dist : 1; }

RR_HD inline bool movement_indexable(const State& s) {
  return s.status == ST_ACTIVE && s.phase == PH_MOVEMENT && !recovery_eligible(s, s.current);
}

// False when the surface would not fit a MoveList (the listing path then stops the game).
RR_HD inline bool movement_index(const Geometry& g, const State& s, MovementIndex& mi) {
  const uint8_t p = s.current;
  const int only = s.must_move, nd = g.num_dirs;
  int k = 0, ns = 0, nc = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c]) {
    if (s.ctrl[c] != p || (only != NO_CELL && c != only)) continue;
    const int h = s.height[c], cap = s.cap[c];
    mi.from[k] = (int16_t)c;
    for (int d = 0; d < nd; d++) {
      int dist;  // of the ray's first obstacle (one past the edge when there is none)
      const int x = capture_target_on_ray(g, s, c, d, &dist);
      const int run = dist - 1;  // free cells before it
      const int simple = run >= h ? run - h + 1 : 0;
      int landings = 0;
      if (x != NO_CELL && cap >= s.cap[x]) {
        int beyond = 0;  // free cells past the target, before the next obstacle
        for (int y = g.nbr[x][d]; y != NO_CELL && !cell_blocks(s, y); y = g.nbr[y][d]) beyond++;
        const int first = nearest_landing(h, dist);
        landings = beyond >= first ? beyond - first + 1 : 0;
      }
      mi.simple[k * nd + d] = (uint8_t)simple;
      mi.capture[k * nd + d] = (uint8_t)landings;
      ns += simple;
      nc += landings;
    }
    k++;
  }
  mi.stacks = k;
  mi.n_simple = ns;
  mi.n_capture = nc;
  mi.n = ns + nc > 0 ? ns + nc : 1;
  return mi.n <= MAX_MOVES;
}

// Move number i (0 <= i < mi.n) of the surface movement_index described.
RR_HD inline Move movement_move_at(const Geometry& g, const State& s, const MovementIndex& mi, int i) {
  const uint8_t p = s.current;
  if (mi.n_simple + mi.n_capture == 0) return make_move(MT_NO_MOVEMENT_ACTION, p);
  const bool capture = i >= mi.n_simple;
  if (capture) i -= mi.n_simple;
  const uint8_t* count = capture ? mi.capture : mi.simple;
  const int nd = g.num_dirs, entries = mi.stacks * nd;
  for (int e = 0; e < entries; e++) {
    if (i >= count[e]) {
      i -= count[e];
      continue;
    }
    const int from = mi.from[e / nd], d = e % nd, h = s.height[from];
    Move m = make_move(capture ? MT_OVERTAKING_CAPTURE : MT_MOVE_STACK, p);
    m.from = (int16_t)from;
    int x, steps;
    if (capture) {  // the i-th landing past the target
      int dist;
      m.target = (int16_t)(x = capture_target_on_ray(g, s, from, d, &dist));
      steps = nearest_landing(h, dist) + i;
    } else {  // the i-th free cell at distance >= h
      x = from;
      steps = h + i;
    }
    for (int j = 0; j < steps; j++) x = g.nbr[x][d];
    m.to = (int16_t)x;
    return m;
  }
  return make_move(MT_NO_MOVEMENT_ACTION, p);  // i out of range: not reached
}

// ---- the transition function -------------------------------------------------------------

RR_HD inline void finish_game(State& s, uint8_t winner, uint8_t reason) {
  s.status = ST_COMPLETED;
  s.winner = winner;
  s.reason = reason;
  s.phase = PH_GAME_OVER;
}

RR_HD inline void clear_turn_cells(State& s) {
  s.must_move = s.chain_pos = s.capture_origin = NO_CELL;
}

// Turn end (RULES.md 5.11): victory check, then rotate to the next seat that owns a ring.
RR_HD inline void end_turn(const Geometry& g, State& s) {
  Verdict v = evaluate_victory(g, s, s.current);
  if (v.winner) {
    finish_game(s, v.winner, v.reason);
    return;
  }
  int np = s.num_players, next = s.current % np + 1;
  for (int i = 1; i <= np; i++) {
    int q = (s.current - 1 + i) % np + 1;
    if (player_has_any_rings(s, q)) {
      next = q;
      break;
    }
  }
  s.current = (uint8_t)next;
  s.phase = PH_RING_PLACEMENT;
  clear_turn_cells(s);
  s.pending_line = 0;
  s.pending_territory = 0;
  s.turn_used_recovery = 0;
  s.turn_had_action = 0;
}

RR_HD inline void enter_line_processing(State& s) {
  s.phase = PH_LINE_PROCESSING;
  clear_turn_cells(s);
}

// Flip or collapse the markers strictly between a and b (collinear).
RR_HD inline void path_effects(const Geometry& g, State& s, int a, int b, uint8_t p) {
  int d = dir_between(g, a, b);
  for (int c = g.nbr[a][d]; c != b && c != NO_CELL; c = g.nbr[c][d]) {
    if (!s.marker[c]) continue;
    if (s.marker[c] == p) {
      cell_collapse(s, c, p);
      s.terr[p]++;
    } else {
      marker_set(s, c, p);
    }
  }
}

RR_HD inline void apply_move_stack(const Geometry& g, State& s, const Move& m) {
  uint8_t p = m.player;
  int16_t top = s.top[m.from], bottom = s.bottom[m.from], height = s.height[m.from];
  stack_detach(s, m.from);
  bool landed_on_marker = s.marker[m.to] != 0;
  marker_set(s, m.from, p);
  path_effects(g, s, m.from, m.to, p);
  if (landed_on_marker) marker_remove(s, m.to);
  stack_attach(s, m.to, top, bottom, height);
  if (landed_on_marker) stack_eliminate_top(s, m.to, 1, p);
  if (s.must_move == m.from) s.must_move = m.to;
  if (s.ctrl[m.to] == p && stack_can_capture(g, s, m.to)) {
    s.phase = PH_CAPTURE;
    s.capture_origin = m.to;
  } else {
    enter_line_processing(s);
  }
}

RR_HD inline void apply_capture(const Geometry& g, State& s, const Move& m) {
  uint8_t p = m.player;
  int16_t top = s.top[m.from], bottom = s.bottom[m.from], height = s.height[m.from];
  stack_detach(s, m.from);
  marker_set(s, m.from, p);
  path_effects(g, s, m.from, m.target, p);
  path_effects(g, s, m.target, m.to, p);
  // The target's top ring goes under the attacker's bottom.
  int16_t r = s.top[m.target];
  s.top[m.target] = s.ring_next[r];
  s.height[m.target]--;
  s.ring_next[bottom] = r;
  s.ring_next[r] = NO_CELL;
  bottom = r;
  height++;
  bool target_survives = s.height[m.target] > 0;
  if (!target_survives) {
    s.bottom[m.target] = NO_CELL;
    stack_erase_empty(s, m.target);
  } else {
    stack_refresh(s, m.target);
  }
  bool landed_on_marker = s.marker[m.to] != 0;
  if (landed_on_marker) marker_remove(s, m.to);
  stack_attach(s, m.to, top, bottom, height);
  if (target_survives) stack_reinsert(s, m.target);  // re-set after the attacker
  if (landed_on_marker) stack_eliminate_top(s, m.to, 1, p);
  if (s.must_move == m.from) s.must_move = m.to;
  if (s.ctrl[m.to] == p && stack_can_capture(g, s, m.to)) {
    s.phase = PH_CHAIN_CAPTURE;
    s.chain_pos = m.to;
  } else {
    enter_line_processing(s);
  }
}

RR_HD inline void collapse_line_cells(const Geometry& g, State& s, int start, int dir, int len, uint8_t p) {
  for (int i = 0, c = start; i < len; i++, c = g.nbr[c][dir]) cell_collapse(s, c, p);
  s.terr[p] += (int16_t)len;
}

// After a line decision: stay while an orchestrator line or a pending payment remains.
RR_HD inline void after_line_decision(const Geometry& g, State& s, uint8_t p) {
  if (has_line(g, s, p, orchestrator_min(g, s.num_players))) return;
  if (s.pending_line) return;
  s.phase = PH_TERRITORY_PROCESSING;
}

// The core transition for a move already known to be on the surface.
RR_HD inline void transition(const Geometry& g, State& s, const Move& m, Scratch& sc) {
  uint8_t p = m.player;
  if (!is_bookkeeping(m.type)) s.turn_had_action = 1;
  s.no_region_hint = 0;
  int T = line_threshold(g, s.num_players);
  switch (m.type) {
    case MT_PLACE_RING: {
      int n = m.count ? m.count : 1;
      if (n > s.hand[p]) n = s.hand[p];
      s.hand[p] -= (int16_t)n;
      stack_push_rings(s, m.to, p, n);
      s.must_move = m.to;
      s.phase = PH_MOVEMENT;
      break;
    }
    case MT_SKIP_PLACEMENT:
    case MT_NO_PLACEMENT_ACTION: s.phase = PH_MOVEMENT; break;
    case MT_SWAP_SIDES: s.swap_done = 1; break;
    case MT_MOVE_STACK: apply_move_stack(g, s, m); break;
    case MT_OVERTAKING_CAPTURE:
    case MT_CONTINUE_CAPTURE_SEGMENT: apply_capture(g, s, m); break;
    case MT_SKIP_CAPTURE:
    case MT_NO_MOVEMENT_ACTION:
    case MT_SKIP_RECOVERY: enter_line_processing(s); break;
    case MT_RECOVERY_SLIDE:
      apply_recovery_slide(g, s, m);
      s.turn_used_recovery = 1;
      enter_line_processing(s);
      break;
    case MT_PROCESS_LINE:
      if (m.line_len == T) {
        collapse_line_cells(g, s, m.line_start, m.line_dir, m.line_len, p);
        s.pending_line = s.ctrl_stacks[p] > 0;
      } else {
        s.pending_line = 0;
      }
      after_line_decision(g, s, p);
      break;
    case MT_CHOOSE_LINE_OPTION:
      if (m.window == WINDOW_ALL) {
        collapse_line_cells(g, s, m.line_start, m.line_dir, m.line_len, p);
        s.pending_line = m.line_len >= T && s.ctrl_stacks[p] > 0;
      } else {
        collapse_line_cells(g, s, line_cell(g, m.line_start, m.line_dir, m.window), m.line_dir, T, p);
        s.pending_line = 0;
      }
      after_line_decision(g, s, p);
      break;
    case MT_NO_LINE_ACTION:
      s.phase = PH_TERRITORY_PROCESSING;
      if (!any_processable_region(g, s, p, sc.regions)) {
        if (!s.turn_had_action && s.ctrl_stacks[p] > 0) s.phase = PH_FORCED_ELIMINATION;
        else s.no_region_hint = 1;  // the surface is just no_territory_action: skip a rescan
      }
      break;
    case MT_ELIMINATE_RINGS_FROM_STACK:
      if (m.context == EC_LINE) {
        stack_eliminate_top(s, m.to, 1, p);
        s.pending_line = 0;
        break;
      }
      if (m.context == EC_RECOVERY) recovery_extract(s, m.to, p);
      else stack_eliminate_top(s, m.to, s.cap[m.to], p);
      s.pending_territory = 0;
      if (!any_processable_region(g, s, p, sc.regions)) end_turn(g, s);
      break;
    case MT_CHOOSE_TERRITORY_OPTION:
      apply_region(g, s, m.to, m.option, p);
      s.pending_territory = 1;
      break;
    case MT_SKIP_TERRITORY_PROCESSING:
    case MT_NO_TERRITORY_ACTION:
      if (!s.turn_had_action && s.ctrl_stacks[p] > 0) s.phase = PH_FORCED_ELIMINATION;
      else end_turn(g, s);
      break;
    case MT_FORCED_ELIMINATION:
      stack_eliminate_top(s, m.to, s.cap[m.to], p);
      end_turn(g, s);
      break;
    case MT_RESIGN:
    case MT_TIMEOUT:
      finish_game(s, s.num_players == 2 ? (uint8_t)(3 - p) : 0, m.type == MT_RESIGN ? VR_RESIGNATION : VR_TIMEOUT);
      break;
    default: break;
  }
}

// One host step (RULES.md H.2) for a move known to be legal: transition, history bookkeeping,
// victory after every move, and the round-based last-player-standing rule at turn starts.
RR_HD inline void step_unchecked(const Geometry& g, State& s, const Move& m, Scratch& sc) {
  uint8_t phase_before = s.phase;
  transition(g, s, m, sc);
  s.move_count++;
  s.last_actor = m.player;
  if (m.player == 1) s.p1_moved = 1;
  if (m.player == 2 && m.type != MT_SWAP_SIDES) s.p2_moved_non_swap = 1;
  if (s.status != ST_ACTIVE) return;
  Verdict v = evaluate_victory(g, s, m.player);
  if (v.winner) {
    finish_game(s, v.winner, v.reason);
    return;
  }
  if (s.phase == PH_RING_PLACEMENT && phase_before != PH_RING_PLACEMENT) {
    uint8_t w = lps_turn_start(g, s);
    if (w) finish_game(s, w, VR_LAST_PLAYER_STANDING);
  }
}

// Validating step: the move must be on the current surface (resign / timeout: any phase).
// On error the state is unchanged. `list` is scratch space for the surface.
RR_HD inline ApplyError step_checked(const Geometry& g, State& s, const Move& m, Scratch& sc, MoveList& list) {
  if (s.status != ST_ACTIVE) return AE_GAME_OVER;
  if (m.player != s.current) return AE_WRONG_PLAYER;
  if (!type_allowed_in_phase(m.type, s.phase)) return AE_WRONG_PHASE;
  if (m.type != MT_RESIGN && m.type != MT_TIMEOUT) {
    legal_moves(g, s, sc, list);
    bool found = false;
    for (int i = 0; i < list.n && !found; i++) found = same_move(list.m[i], m);
    if (!found) return AE_NOT_LEGAL;
    if (m.type == MT_RECOVERY_SLIDE && recovery_slide_throws(g, s, m)) return AE_REFERENCE_THROWS;
  }
  step_unchecked(g, s, m, sc);
  return AE_OK;
}

}  // namespace rr
