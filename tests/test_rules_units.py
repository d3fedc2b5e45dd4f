"""Focused rule scenarios on hand-made states (RULES.md 13, the edge cases most likely to go
wrong), plus the full legal-move lists of the recorded debug games."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import REPLAYS_DIR, cell, load, need, of_type, read_games, stack_at, types, xy
from ringrift.engine import Game, move_from_json, move_key, move_to_json



def dests(game, mtype="move_stack", frm=None):
    return sorted(xy(game, m.to) for m in of_type(game, mtype) if frm is None or m.from_cell == cell(game, *frm))


def captures_from(game, x, y, mtype="overtaking_capture"):
    return sorted((xy(game, m.target), xy(game, m.to)) for m in of_type(game, mtype) if m.from_cell == cell(game, x, y))


def play(game, mtype, **where):
    """Apply the unique listed move of ``mtype`` matching from/to/target (x, y) tuples and count."""
    found = []
    for m in of_type(game, mtype):
        ok = all(getattr(m, {"frm": "from_cell"}.get(k, k)) == (cell(game, *v) if isinstance(v, tuple) else v)
                 for k, v in where.items())
        if ok:
            found.append(m)
    assert len(found) == 1, f"{mtype} {where}: {len(found)} matches in {types(game)}"
    game.apply(found[0])
    return found[0]


def player(game, p):
    return game.players()[p - 1]


# ---- 1, 6: capture appends at the bottom; chains are mandatory and may reverse ----------------

def test_captured_ring_goes_under_the_attacker_and_the_chain_continues():
    g = load(stacks={(3, 3): [1, 1], (3, 4): [2, 2], (7, 7): [2]})
    play(g, "overtaking_capture", frm=(3, 3), target=(3, 4), to=(3, 5))
    assert stack_at(g, 3, 5) == [1, 1, 2]      # the target's top ring, at the bottom
    assert stack_at(g, 3, 4) == [2]             # the target survives with its top recomputed
    assert stack_at(g, 3, 3) is None and dict(g.markers())[cell(g, 3, 3)] == 1
    # 13.6: continuation is mandatory (no skip) and may reverse over the same stack
    assert g.phase == "chain_capture" and g.chain_capture_position == cell(g, 3, 5)
    assert set(types(g)) == {"continue_capture_segment"}
    assert ((3, 4), (3, 1)) in captures_from(g, 3, 5, "continue_capture_segment")
    assert ((3, 4), (3, 3)) not in captures_from(g, 3, 5, "continue_capture_segment")  # 2 < height 3


# ---- 2: landing on a marker ----------------------------------------------------------------------

def test_landing_on_a_marker_removes_it_and_the_movers_top_ring():
    g = load(stacks={(0, 0): [1, 1], (7, 7): [2]}, markers={(0, 3): 2})
    play(g, "move_stack", frm=(0, 0), to=(0, 3))
    assert stack_at(g, 0, 3) == [1]
    assert cell(g, 0, 3) not in dict(g.markers()) and cell(g, 0, 3) not in dict(g.collapsed())
    assert player(g, 1)["eliminated_rings"] == 1 and player(g, 2)["eliminated_rings"] == 0
    assert g.phase == "line_processing"


def test_height_one_mover_landing_on_its_own_marker_disappears():
    g = load(stacks={(0, 0): [1], (7, 7): [2]}, markers={(0, 2): 1})
    play(g, "move_stack", frm=(0, 0), to=(0, 2))
    assert stack_at(g, 0, 2) is None and cell(g, 0, 2) not in dict(g.markers())
    assert dict(g.markers()) == {cell(g, 0, 0): 1}
    assert player(g, 1)["eliminated_rings"] == 1 and player(g, 1)["stacks_controlled"] == 0


def test_landing_can_hand_the_stack_and_an_early_lps_win_to_the_opponent():
    # 13.2 + 13.23: P1's last ring leaves the board; P2 then controls every stack, P1 owns no ring.
    g = load(stacks={(0, 0): [1, 2]}, markers={(0, 2): 2}, hands=[0, 0])
    play(g, "move_stack", frm=(0, 0), to=(0, 2))
    assert stack_at(g, 0, 2) == [2]
    assert (g.status, g.winner, g.victory_reason, g.phase) == ("completed", 2, "last_player_standing", "game_over")


# ---- 3: movement rays ----------------------------------------------------------------------------

def test_movement_ray_semantics():
    g = load(stacks={(2, 2): [1, 1], (5, 2): [2, 2, 2]}, markers={(3, 2): 2, (2, 4): 2}, collapsed={(4, 4): 2})
    assert dests(g, frm=(2, 2)) == sorted([
        (4, 2),                                  # E: passes a marker, stops before the stack at (5,2)
        (2, 4), (2, 5), (2, 6), (2, 7),          # S: may land on a marker at distance >= height
        (0, 4), (0, 2), (0, 0), (2, 0), (4, 0),  # the other rays: every cell at distance >= 2
    ])                                           # SE: blocked by the collapsed cell (4,4)
    assert captures_from(g, 2, 2) == []          # cap 2 < cap 3


# ---- 4: capture targets ---------------------------------------------------------------------------

def test_capture_compares_caps_but_measures_distance_by_full_height():
    # attacker: cap 1, height 3
    g = load(stacks={(0, 0): [1, 2, 2], (1, 0): [2], (5, 0): [1], (0, 1): [2, 2], (2, 2): [1], (7, 7): [2]})
    assert captures_from(g, 0, 0) == sorted([
        ((1, 0), (3, 0)), ((1, 0), (4, 0)),      # landing >= 3 away, stops before the own stack (5,0)
        ((2, 2), (3, 3)), ((2, 2), (4, 4)), ((2, 2), (5, 5)), ((2, 2), (6, 6)),  # self-capture
    ])                                           # (0,1) has cap 2 > 1: not capturable despite height
    # only the first stack on a ray is a candidate: (5,0) is never a target from (0,0)
    assert all(xy(g, m.target) != (5, 0) for m in of_type(g, "overtaking_capture") if m.from_cell == cell(g, 0, 0))


# ---- 5: the post-move capture window ---------------------------------------------------------------

def test_capture_window_after_a_move_is_from_the_landing_only_with_skip_last():
    g = load(stacks={(0, 0): [1], (2, 2): [2], (5, 0): [1], (6, 0): [2]})
    play(g, "move_stack", frm=(0, 0), to=(1, 1))
    assert g.phase == "capture"
    moves = g.legal_moves()
    assert moves[-1].type == "skip_capture" and types(g).count("skip_capture") == 1
    assert {m.from_cell for m in moves[:-1]} == {cell(g, 1, 1)}  # not from (5,0), which could capture (6,0)
    assert captures_from(g, 1, 1) == [((2, 2), (k, k)) for k in range(3, 8)]
    play(g, "skip_capture")
    assert g.phase == "line_processing" and types(g) == ["no_line_action"]


# ---- 7: the must-move stack -------------------------------------------------------------------------

def test_must_move_restricts_movement_to_the_placed_stack():
    g = load(stacks={(0, 0): [1], (7, 7): [2]}, phase="ring_placement")
    play(g, "place_ring", to=(4, 4), count=2)
    assert g.phase == "movement" and g.must_move_from == cell(g, 4, 4)
    assert {m.from_cell for m in g.legal_moves()} == {cell(g, 4, 4)}
    assert "no_movement_action" not in types(g) and "skip_placement" not in types(g)
    play(g, "move_stack", frm=(4, 4), to=(4, 6))
    assert g.phase == "line_processing" and g.must_move_from is None


# ---- 8, 9: placement counts and skip / no-action --------------------------------------------------------

def test_placement_counts_are_checked_one_by_one():
    # (0,0): one ring can step to (1,0); two rings cannot move at all; three rings capture the
    # cap-3 stack at (1,1) and land on (3,3).
    g = load(stacks={(1, 1): [2, 2, 2]}, collapsed={(2, 0): 2, (0, 1): 2}, markers={(7, 0): 2},
             phase="ring_placement")
    counts = {}
    for m in of_type(g, "place_ring"):
        counts.setdefault(xy(g, m.to), []).append(m.count)
    assert counts[(0, 0)] == [1, 3]
    assert counts[(1, 1)] == [1]                 # onto a stack: one ring only
    assert (2, 0) not in counts and (7, 0) not in counts  # collapsed and marker cells
    assert counts[(4, 4)] == [1, 2, 3]


def test_skip_placement_needs_a_movable_stack():
    g = load(stacks={(4, 4): [1], (7, 7): [2]}, phase="ring_placement")
    assert types(g)[-1] == "skip_placement" and types(g).count("skip_placement") == 1
    play(g, "skip_placement")
    assert g.phase == "movement" and g.must_move_from is None


def test_no_skip_without_stacks_and_no_placement_action_without_rings():
    g = load(stacks={(7, 7): [2]}, phase="ring_placement")
    assert set(types(g)) == {"place_ring"}       # placement is mandatory
    g = load(stacks={(4, 4): [1], (7, 7): [2]}, hands=[0, 5], phase="ring_placement")
    assert types(g) == ["no_placement_action"]
    play(g, "no_placement_action")
    assert g.phase == "movement"


def test_no_placement_action_when_every_cell_is_dead_and_skip_is_impossible():
    everything = {(x, y): 2 for x in range(8) for y in range(8)}
    del everything[(0, 0)], everything[(7, 7)]
    g = load(stacks={(7, 7): [2]}, collapsed=everything, phase="ring_placement")
    assert types(g) == ["no_placement_action"]


# ---- 10-13: lines -------------------------------------------------------------------------------------

def test_hex8_three_player_three_marker_line_is_offered_only_as_choose_line_option():
    line = {(0, 0): 1, (1, -1): 1, (2, -2): 1}
    g = load("hex8", 3, stacks={(0, 3): [1], (-3, 0): [2], (3, 0): [3]}, markers=line, phase="line_processing")
    (m,) = g.legal_moves()
    assert m.type == "choose_line_option" and m.window == -1
    g.apply(m)
    assert sorted(xy(g, c) for c, _ in g.collapsed()) == sorted(line) and player(g, 1)["territory_spaces"] == 3
    # the collapse-all option owes one ring: only one-ring line eliminations are listed
    assert g.pending_line_elimination
    assert [(m.type, m.context, m.count, xy(g, m.to)) for m in g.legal_moves()] == [
        ("eliminate_rings_from_stack", 1, 1, (0, 3))]
    g.apply(g.legal_moves()[0])
    assert not g.pending_line_elimination and g.phase == "line_processing" and types(g) == ["no_line_action"]


def test_square8_three_player_three_marker_line_gets_process_line_too():
    g = load("square8", 3, stacks={(7, 7): [1], (0, 7): [2], (7, 0): [3]},
             markers={(2, 2): 1, (3, 2): 1, (4, 2): 1}, phase="line_processing")
    assert types(g) == ["process_line", "choose_line_option"]


def test_overlength_line_lists_a_noop_process_line_collapse_all_and_every_window():
    g = load(stacks={(7, 7): [1], (0, 7): [2]}, markers={(x, 3): 1 for x in range(5)}, phase="line_processing")
    assert types(g) == ["process_line", "choose_line_option", "choose_line_option", "choose_line_option"]
    windows = sorted(sorted(xy(g, c) for c in g.move_cells(m)["collapse"])
                     for m in of_type(g, "choose_line_option") if m.window >= 0)
    assert windows == [[(x, 3) for x in range(0, 4)], [(x, 3) for x in range(1, 5)]]
    # process_line on an overlength line changes nothing
    before = (g.hash(), g.legal_moves())
    g.apply(of_type(g, "process_line")[0])
    assert (g.hash(), g.legal_moves()) == before and g.phase == "line_processing"
    # an Option 2 window collapses T = 4 cells, owes nothing and leaves the phase
    opt2 = g.clone()
    opt2.apply([m for m in of_type(opt2, "choose_line_option") if m.window == 1][0])
    assert len(opt2.collapsed()) == 4 and len(opt2.markers()) == 1 and not opt2.pending_line_elimination
    assert opt2.phase == "territory_processing"
    # Option 1 collapses all five and owes a ring
    g.apply([m for m in of_type(g, "choose_line_option") if m.window == -1][0])
    assert len(g.collapsed()) == 5 and g.pending_line_elimination
    assert set(types(g)) == {"eliminate_rings_from_stack"}


def test_line_cost_is_waived_without_a_controlled_stack():
    g = load(stacks={(0, 7): [2]}, markers={(x, 3): 1 for x in range(4)}, phase="line_processing")
    assert types(g) == ["process_line", "choose_line_option"]
    g.apply(g.legal_moves()[0])
    assert len(g.collapsed()) == 4 and not g.pending_line_elimination
    assert g.phase == "territory_processing"


# ---- 14-17: territory ----------------------------------------------------------------------------------

def test_duplicate_regions_are_listed_and_any_player_may_process_them():
    # (0,0) holds a P2 stack and is sealed by collapsed cells: found once per marker colour
    # (controllers 1 and 2) and once more by the collapsed-only pass (controller 2).
    g = load(stacks={(0, 0): [2], (4, 4): [1], (7, 0): [2]}, markers={(5, 5): 1, (6, 6): 2},
             collapsed={(1, 0): 1, (0, 1): 1}, phase="territory_processing")
    regions = of_type(g, "choose_territory_option")
    gone_before = player(g, 2)["eliminated_by_colour"]
    assert [m.count for m in regions] == [1, 2, 2]
    assert all(g.move_cells(m)["region"] == [cell(g, 0, 0)] for m in regions)
    assert types(g)[-1] == "skip_territory_processing" and g.num_legal_moves() == 4
    g.apply(regions[1])                          # bordered "by" P2, processed by P1
    assert stack_at(g, 0, 0) is None and dict(g.collapsed())[cell(g, 0, 0)] == 1
    assert player(g, 1)["eliminated_rings"] == 1 and player(g, 2)["eliminated_by_colour"] == gone_before + 1
    assert player(g, 1)["territory_spaces"] == 3
    # 13.17: the self-elimination is due at once; region moves and skip are hidden until paid
    assert [(m.type, xy(g, m.to), m.count) for m in g.legal_moves()] == [("eliminate_rings_from_stack", (4, 4), 1)]
    g.apply(g.legal_moves()[0])
    assert (g.current_player, g.phase) == (2, "ring_placement")


def test_border_markers_of_every_colour_collapse_with_the_region():
    g = load(stacks={(6, 6): [1, 1], (6, 0): [2]}, markers={(1, 0): 1, (0, 1): 1, (1, 1): 2, (2, 2): 2, (4, 4): 1},
             phase="territory_processing")
    (region,) = of_type(g, "choose_territory_option")
    assert g.move_cells(region)["region"] == [cell(g, 0, 0)]
    g.apply(region)
    assert sorted(xy(g, c) for c, p in g.collapsed() if p == 1) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)]
    assert dict(g.markers()) == {cell(g, 4, 4): 1}
    assert player(g, 1)["territory_spaces"] == 5
    assert [(m.type, m.count) for m in g.legal_moves()] == [("eliminate_rings_from_stack", 2)]  # the whole cap


# ---- 18: forced elimination ------------------------------------------------------------------------------

def test_blocked_player_goes_through_every_phase_into_forced_elimination():
    # Height-8 stacks can neither move nor capture on square8 (no ray is 8 cells long); no
    # region exists (no markers, no collapsed cells, both colours everywhere).
    g = load(stacks={(3, 3): [1, 1] + [2] * 6, (5, 5): [1] + [2] * 7, (0, 7): [2]}, hands=[0, 4],
             phase="ring_placement")
    for expected in ("no_placement_action", "no_movement_action", "no_line_action"):
        assert types(g) == [expected]
        g.apply(g.legal_moves()[0])
    assert g.phase == "forced_elimination"     # straight from no_line_action, no no_territory_action
    assert [(xy(g, m.to), m.count) for m in g.legal_moves()] == [((3, 3), 2), ((5, 5), 1)]  # whole caps
    play(g, "forced_elimination", to=(3, 3))
    assert stack_at(g, 3, 3) == [2] * 6 and player(g, 1)["eliminated_rings"] == 2
    assert (g.current_player, g.phase, g.status) == (2, "ring_placement", "active")


# ---- 19: rotation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("p1_stack,next_player", [([1], 3), ([1, 2], 2)])
def test_rotation_skips_only_players_without_any_ring(p1_stack, next_player):
    # P2 has no ring in hand; with a buried ring it still takes its turn.
    g = load("square8", 3, stacks={(0, 0): p1_stack}, hands=[5, 0, 5])
    play(g, "move_stack", frm=(0, 0), to=(0, len(p1_stack)))
    play(g, "no_line_action")
    play(g, "no_territory_action")
    assert (g.current_player, g.phase, g.status) == (next_player, "ring_placement", "active")
    if next_player == 2:
        assert types(g) == ["no_placement_action"]


# ---- 20: recovery -------------------------------------------------------------------------------------------

def test_recovery_prefers_line_forming_slides():
    # P1: no stack, markers, a ring buried under P2's top. (4,1) -> (3,0) completes a 4-line.
    g = load(stacks={(6, 6): [2, 1], (7, 0): [2]}, markers={(0, 0): 1, (1, 0): 1, (2, 0): 1, (4, 1): 1})
    kinds = types(g)
    assert kinds[0] == "skip_recovery" and set(kinds[1:]) == {"recovery_slide"} and len(kinds) > 1
    slides = of_type(g, "recovery_slide")
    assert all(m.context == 1 for m in slides)   # line mode only: no fallback while a line exists
    assert any((xy(g, m.from_cell), xy(g, m.to)) == ((4, 1), (3, 0)) for m in slides)


def test_recovery_fallback_and_stack_strike_without_a_line_target():
    # (0,7) holds P1's buried ring and comes first in stack order: it is the extraction stack
    g = load(stacks={(0, 7): [2, 1], (5, 5): [2, 2]}, markers={(4, 4): 1})
    slides = of_type(g, "recovery_slide")
    modes = Counter(m.context for m in slides)
    assert modes == {2: 7, 3: 1}                 # 7 empty neighbours (fallback), 1 stack strike
    (strike,) = [m for m in slides if m.context == 3]
    assert xy(g, strike.to) == (5, 5)
    g.apply(strike)
    # the struck top ring and the extracted buried ring are both eliminated for P1
    assert stack_at(g, 5, 5) == [2] and stack_at(g, 0, 7) == [2]
    assert player(g, 1)["eliminated_rings"] == 2
    assert cell(g, 4, 4) not in dict(g.markers()) and g.phase == "line_processing"


# ---- 22, 23: victory ------------------------------------------------------------------------------------------

def test_ring_threshold_ends_the_game_in_the_middle_of_a_turn():
    g = load(stacks={(0, 0): [1, 1], (7, 7): [2]}, markers={(0, 2): 2}, eliminated=[17, 0])
    play(g, "move_stack", frm=(0, 0), to=(0, 2))
    assert (g.status, g.winner, g.victory_reason, g.phase) == ("completed", 1, "ring_elimination", "game_over")


def test_early_last_player_standing_right_after_a_placement():
    g = load(hands=[5, 0], phase="ring_placement")   # P2 owns no ring at all
    play(g, "place_ring", to=(3, 3), count=1)
    assert (g.status, g.winner, g.victory_reason) == ("completed", 1, "last_player_standing")


@pytest.mark.parametrize("territory,eliminated,markers,winner,reason", [
    ((2, 3), (0, 0), (0, 0), 2, "territory_control"),      # unique territory maximum
    ((2, 2), (5, 3), (0, 1), 1, "ring_elimination"),       # tie: eliminated rings decide
    ((2, 2), (3, 4), (0, 2), 2, "last_player_standing"),   # tie (4 each after the move): markers
    ((2, 2), (3, 4), (1, 1), 1, "last_player_standing"),   # all tied: the last actor
])
def test_stalemate_ladder_on_a_bare_board(territory, eliminated, markers, winner, reason):
    collapsed = {(x, 0): 1 for x in range(territory[0])}
    collapsed.update({(x, 7): 2 for x in range(territory[1])})
    marks = {(x, 3): 1 for x in range(markers[0])}
    marks.update({(x, 5): 2 for x in range(markers[1])})
    g = load(stacks={(3, 4): [1]}, collapsed=collapsed, markers=marks, hands=[0, 0], eliminated=list(eliminated),
             phase="forced_elimination")
    play(g, "forced_elimination", to=(3, 4))
    assert g.stacks() == []
    assert (g.status, g.winner, g.victory_reason) == ("completed", winner, reason)


# ---- 25: the pie rule -----------------------------------------------------------------------------------------

def test_swap_sides_is_offered_once_to_player_two_and_changes_nothing_hashed():
    g = Game("square8", 2, swap_rule=True)
    assert "swap_sides" not in types(g)
    play(g, "place_ring", to=(3, 3), count=1)
    play(g, "move_stack", frm=(3, 3), to=(3, 4))
    while g.current_player == 1:
        g.apply(g.legal_moves()[0])
    assert g.phase == "ring_placement" and types(g)[-1] == "swap_sides"
    before = g.hash()
    play(g, "swap_sides")
    assert g.hash() == before and (g.current_player, g.phase) == (2, "ring_placement")
    assert "swap_sides" not in types(g)
    assert "swap_sides" not in types(Game("square8", 2))


# ---- the recorded debug games: full legal lists -----------------------------------------------------------------

def _content(move: dict) -> tuple:
    """move_key plus the eliminated-ring count, which move_key does not compare."""
    counts = tuple(e.get("count") for e in move.get("eliminatedRings") or [])
    return move_key(move) + (counts,)


DEBUG_FILES = sorted(p.name for p in REPLAYS_DIR.glob("debug_*.jsonl.gz")) if REPLAYS_DIR.is_dir() else []


@pytest.mark.parametrize("name", DEBUG_FILES or ["<recorded games missing>"])
def test_recorded_debug_game_legal_lists(name):
    path = need(REPLAYS_DIR, "recorded reference games") / name
    rec = read_games(path)[0]
    game = Game.from_json(rec["initialState"])
    assert game.hash() == rec["initialHash"]
    small = rec["boardType"] in ("square8", "hex8")
    compared = Counter()
    for i, (move, step) in enumerate(zip(rec["moves"], rec["steps"])):
        # every step on small boards; on big ones every step outside placement and every 10th
        if small or game.phase != "ring_placement" or i % 10 == 0:
            ours = Counter(_content(move_to_json(game, m)) for m in game.legal_moves())
            theirs = Counter(_content(json.loads(s)) for s in step["legal"])
            assert ours == theirs, f"{name} step {i} ({game.phase}): ours-theirs {ours - theirs}, " \
                                   f"theirs-ours {theirs - ours}"
            compared[game.phase] += 1
        game.apply(move_from_json(game, move))
        assert game.hash() == step["h"], f"{name} step {i}"
    assert game.status == "completed" and game.hash() == rec["result"]["finalHash"]
    assert game.winner == rec["result"]["winner"]
    assert compared["movement"] and compared["line_processing"] and compared["territory_processing"]


def test_stack_strike_on_the_extraction_stack_takes_the_exposed_ring():
    """Found by the TS bridge: the struck stack is also the extraction stack; after the strike the
    mover's ring is on top, and the reference still extracts it (its last ring of the mover)."""
    g = Game.from_json({
        "board": {"type": "square8", "stacks": {"6,0": {"rings": [1, 2]}, "3,3": {"rings": [1]}},
                  "markers": {"7,1": {"player": 2}}, "collapsedSpaces": {}},
        "players": [{"playerNumber": 1, "ringsInHand": 0}, {"playerNumber": 2, "ringsInHand": 0}],
        "currentPlayer": 2, "currentPhase": "movement", "gameStatus": "active"})
    strike = [m for m in g.legal_moves() if m.type == "recovery_slide" and g.cell_key(m.to) == "6,0"]
    assert len(strike) == 1 and strike[0].context == 3  # stack_strike
    g.apply(strike[0])
    assert [g.cell_key(c) for c, _ in g.stacks()] == ["3,3"]
    assert g.players()[1]["eliminated_rings"] == 2
