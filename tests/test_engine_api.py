"""The Python face of the engine: construction, errors, copying, JSON round trips, game end."""

from __future__ import annotations

import copy
import random

import pytest

from conftest import (BOARDS, CONFIGS, apply_random, cell, expected_fingerprint, load, make_state,
                      random_game, random_positions, reference_hash)
from ringrift.engine import (Game, IllegalMoveError, Move, MoveParseError, RingRiftError, StateParseError,
                             move_from_json, move_key, move_to_json)
from ringrift.engine.json_io import engine_move_key

# RULES.md 1.1 and 2.2: cells, rings per player, ring threshold and territory minimum by player count.
BOARD_TABLE = {
    "square8": (64, 18, {2: 18, 3: 24, 4: 30}, {2: 33, 3: 22, 4: 17}),
    "hex8": (61, 18, {2: 18, 3: 24, 4: 30}, {2: 31, 3: 21, 4: 16}),
    "square19": (361, 72, {2: 72, 3: 96, 4: 120}, {2: 181, 3: 121, 4: 91}),
    "hexagonal": (469, 96, {2: 96, 3: 128, 4: 160}, {2: 235, 3: 157, 4: 118}),
}


def snapshot(game: Game):
    """Everything an illegal move must leave untouched."""
    return (game.hash(), game.fingerprint(), game.move_count, game.phase, game.current_player,
            game.legal_moves(), game.to_json())


def keys_of(game: Game) -> list:
    return sorted(map(repr, (engine_move_key(game, m) for m in game.legal_moves())))


# ---- construction ------------------------------------------------------------------------

@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_new_game(board, num_players):
    cells, rings, ring_thr, terr_min = BOARD_TABLE[board]
    g = Game(board, num_players)
    assert (g.board, g.num_players, g.num_cells, g.rings_per_player) == (board, num_players, cells, rings)
    assert (g.phase, g.current_player, g.status, g.winner, g.move_count) == ("ring_placement", 1, "active", None, 0)
    assert g.victory_threshold == ring_thr[num_players]
    assert g.territory_minimum == terr_min[num_players]
    assert [p["rings_in_hand"] for p in g.players()] == [rings] * num_players
    hands = "|".join(f"{p}:{rings}:0:0" for p in range(1, num_players + 1))
    assert g.fingerprint() == f"1:ring_placement:active:0#{hands}###"
    assert g.hash() == reference_hash(g.fingerprint())
    moves = g.legal_moves()
    # every cell of an empty board takes 1, 2 or 3 rings (RULES.md 4.4)
    assert len(moves) == g.num_legal_moves() == 3 * cells
    assert {m.type for m in moves} == {"place_ring"} and {m.count for m in moves} == {1, 2, 3}
    assert all(m.player == 1 for m in moves)


def test_initial_hash_square8_2p():
    assert Game("square8", 2).hash() == "64d970e91e560723"
    assert Game().hash() == "64d970e91e560723"


def _place(game: Game, x: int, y: int, count: int) -> None:
    (move,) = [m for m in game.legal_moves() if m.type == "place_ring" and m.to == cell(game, x, y) and m.count == count]
    game.apply(move)


def test_fingerprint_vector_2_square8_two_rings():
    g = Game("square8", 2)
    _place(g, 3, 3, 2)
    assert g.fingerprint() == "1:movement:active:0#1:16:0:0|2:18:0:0#3,3:1:2:2##"
    assert g.hash() == "d6d723a8a9ff2285"


def test_fingerprint_vector_3_hex8_3p():
    g = Game("hex8", 3)
    _place(g, -1, 2, 1)
    assert g.fingerprint() == "1:movement:active:0#1:17:0:0|2:18:0:0|3:18:0:0#-1,2,-1:1:1:1##"
    assert g.hash() == "e61bd5ea14c10ec1"


@pytest.mark.parametrize("board", ["squar8", "hex", "", "SQUARE8", "hexagonal19"])
def test_unknown_board_raises_value_error(board):
    with pytest.raises(ValueError, match=r"unknown board .*expected square8, hex8, square19 or hexagonal"):
        Game(board, 2)


@pytest.mark.parametrize("num_players", [-1, 0, 1, 5, 8])
def test_bad_player_count_raises_value_error(num_players):
    with pytest.raises(ValueError, match=rf"num_players must be 2, 3 or 4, got {num_players}"):
        Game("square8", num_players)


def test_board_must_be_a_string():
    with pytest.raises(TypeError, match="board must be a string"):
        Game(8, 2)


# ---- illegal moves -------------------------------------------------------------------------

def _mid_game_states():
    """Real states in several phases, from random play on every board."""
    out = []
    for i, board in enumerate(BOARDS):
        for seed in range(3):
            for g in random_positions(board, 2 + seed, 10 * i + seed, 150, every=37):
                if g.status == "active":
                    out.append(g.clone())
    return out


def _assert_rejected(game: Game, move: Move, reason: str):
    before = snapshot(game)
    with pytest.raises(IllegalMoveError) as info:
        game.apply(move)
    err = info.value
    msg = str(err)
    assert move.type in msg and f"phase {game.phase}" in msg and reason in msg, msg
    assert (err.reason, err.phase, err.player, err.move) == (reason, game.phase, game.current_player, move)
    assert isinstance(err, RingRiftError) and isinstance(err, ValueError)
    assert snapshot(game) == before


def test_illegal_moves_are_rejected_and_leave_the_state_unchanged():
    states = _mid_game_states()
    assert {g.phase for g in states} >= {"ring_placement", "movement", "line_processing"}
    for g in states:
        p, n = g.current_player, g.num_players
        legal = g.legal_moves()
        # a listed move played by the wrong player
        m = legal[0]
        other = p % n + 1
        wrong = Move(m.type, other, from_cell=m.from_cell if m.from_cell is not None else -1,
                     to=m.to if m.to is not None else -1, count=m.count)
        _assert_rejected(g, wrong, "wrong player")
        # a move type that this phase never allows
        bad_type = "forced_elimination" if g.phase != "forced_elimination" else "place_ring"
        _assert_rejected(g, Move(bad_type, p, to=0), "move type not allowed in this phase")


def test_unlisted_move_of_an_allowed_type_is_rejected():
    g = Game("square8", 2)
    _assert_rejected(g, Move("place_ring", 1, to=cell(g, 3, 3), count=4), "not in the legal-move list")
    _assert_rejected(g, Move("skip_placement", 1), "not in the legal-move list")
    _assert_rejected(g, Move("no_placement_action", 1), "not in the legal-move list")
    _place(g, 3, 3, 1)
    assert g.phase == "movement"
    # a one-ring stack cannot jump onto a far cell off its rays
    _assert_rejected(g, Move("move_stack", 1, from_cell=cell(g, 3, 3), to=cell(g, 5, 4)), "not in the legal-move list")
    # nor move a stack that is not there
    _assert_rejected(g, Move("move_stack", 1, from_cell=cell(g, 0, 0), to=cell(g, 0, 1)), "not in the legal-move list")


def test_apply_requires_a_move_object():
    g = Game("square8", 2)
    with pytest.raises(TypeError, match="apply\\(\\) takes a ringrift.Move"):
        g.apply({"type": "place_ring", "player": 1, "to": {"x": 0, "y": 0}})


def test_move_from_json_rejects_an_unlisted_move():
    g = Game("square8", 2)
    before = snapshot(g)
    with pytest.raises(IllegalMoveError, match=r"move_stack from=\(0,0\) to=\(0,1\) by player 1 in phase ring_placement"):
        move_from_json(g, {"type": "move_stack", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 0, "y": 1}})
    with pytest.raises(IllegalMoveError, match="by player 2"):
        g.play({"type": "place_ring", "player": 2, "to": {"x": 0, "y": 0}, "placementCount": 1})
    assert snapshot(g) == before


# ---- malformed JSON --------------------------------------------------------------------------

@pytest.mark.parametrize("move,match", [
    ({"player": 1, "to": {"x": 0, "y": 0}}, "unknown move type None"),
    ({"type": "teleport", "player": 1}, "unknown move type 'teleport'"),
    ({"type": "move_ring", "player": 1}, "unknown move type 'move_ring'"),  # legacy alias (RULES.md 4.2)
    ({"type": "place_ring", "to": {"x": 0, "y": 0}}, "missing or non-integer 'player'"),
    ({"type": "place_ring", "player": "1", "to": {"x": 0, "y": 0}}, "missing or non-integer 'player'"),
    ({"type": "place_ring", "player": 1}, "place_ring.to"),
    ({"type": "place_ring", "player": 1, "to": {"x": 0}}, "place_ring.to"),
    ({"type": "place_ring", "player": 1, "to": {"x": "0", "y": 0}}, "place_ring.to"),
    ({"type": "place_ring", "player": 1, "to": [0, 0]}, "place_ring.to"),
    ({"type": "move_stack", "player": 1, "from": {"x": 0, "y": 0}}, "move_stack.to"),
    ({"type": "move_stack", "player": 1, "to": {"x": 0, "y": 0}}, "move_stack.from"),
    ({"type": "overtaking_capture", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 0, "y": 2}},
     "overtaking_capture.captureTarget"),
    ({"type": "process_line", "player": 1}, "missing formedLines"),
    ({"type": "choose_territory_option", "player": 1, "to": {"x": 0, "y": 0}}, "missing disconnectedRegions"),
    ({"type": "eliminate_rings_from_stack", "player": 1}, "eliminate_rings_from_stack.to"),
    ("place_ring", "must be a JSON object"),
    (None, "must be a JSON object"),
])
def test_malformed_move_json_raises_move_parse_error(move, match):
    g = Game("square8", 2)
    before = snapshot(g)
    with pytest.raises(MoveParseError, match=match):
        move_from_json(g, move)
    with pytest.raises(MoveParseError):
        g.play(move)
    assert snapshot(g) == before


def test_off_board_position_is_refused_with_the_position_named():
    # Well-formed but not a cell of the board: a parse error naming the field and the position.
    g = Game("square8", 2)
    with pytest.raises(MoveParseError, match=r"place_ring\.to: position \{'x': 9, 'y': 9\} is not on the square8"):
        move_from_json(g, {"type": "place_ring", "player": 1, "to": {"x": 9, "y": 9}})


_P2 = [{"playerNumber": 1, "ringsInHand": 5}, {"playerNumber": 2, "ringsInHand": 5}]


@pytest.mark.parametrize("state,match", [
    (None, "must be a JSON object"),
    ([], "must be a JSON object"),
    ({"players": _P2}, "missing 'board'"),
    ({"board": {}, "players": _P2}, "missing 'type'"),
    ({"board": {"type": "square8"}}, "missing 'players'"),
    ({"board": {"type": "octagon"}, "players": _P2}, "unknown board 'octagon'"),
    ({"board": {"type": "square8"}, "players": _P2[:1]}, "num_players must be 2, 3 or 4, got 1"),
    ({"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": 5}, {"playerNumber": 2}]},
     "ringsInHand"),
    ({"board": {"type": "square8", "stacks": {"0,0": {"rings": []}}}, "players": _P2}, "empty stack at 0,0"),
    ({"board": {"type": "square8", "stacks": {"0,0": {"rings": [3]}}}, "players": _P2}, "player out of range"),
    ({"board": {"type": "square8", "stacks": {"0,0": {"rings": "11"}}}, "players": _P2}, "list of player numbers"),
    ({"board": {"type": "square8", "stacks": {"8,0": {"rings": [1]}}}, "players": _P2}, "not on the square8 board"),
    ({"board": {"type": "square8", "stacks": {"a,b": {"rings": [1]}}}, "players": _P2}, "malformed position key"),
    ({"board": {"type": "square8", "markers": {"0,0": {}}}, "players": _P2}, "owner must be a player number"),
    ({"board": {"type": "square8", "markers": {"0,0": 1}, "stacks": {"0,0": {"rings": [1]}}}, "players": _P2},
     "marker shares a cell at 0,0"),
    ({"board": {"type": "square8", "collapsedSpaces": {"1,1": 1}, "markers": {"1,1": 2}}, "players": _P2},
     "collapsed space shares a cell at 1,1"),
    ({"board": {"type": "square8", "collapsedSpaces": {"1,1": "x"}}, "players": _P2}, "owner must be a player"),
    ({"board": {"type": "square8"}, "players": _P2, "currentPhase": "bidding"}, "unknown phase 'bidding'"),
    ({"board": {"type": "square8"}, "players": _P2, "currentPlayer": 3}, "player out of range in currentPlayer"),
    ({"board": {"type": "square8"}, "players": _P2, "gameStatus": "paused"}, "unknown gameStatus 'paused'"),
    ({"board": {"type": "square8"}, "players": _P2, "mustMoveFromStackKey": "12,0"}, "mustMoveFromStackKey"),
    ({"board": {"type": "hex8", "stacks": {"4,4,-8": {"rings": [1]}}}, "players": _P2}, "not on the hex8 board"),
])
def test_malformed_state_json_raises_state_parse_error(state, match):
    with pytest.raises(StateParseError, match=match):
        Game.from_json(state)


def test_state_parse_error_is_a_ringrift_value_error():
    assert issubclass(StateParseError, RingRiftError) and issubclass(StateParseError, ValueError)
    assert issubclass(MoveParseError, RingRiftError) and issubclass(MoveParseError, ValueError)


# ---- copies --------------------------------------------------------------------------------

@pytest.mark.parametrize("copier", [lambda g: g.clone(), copy.copy, copy.deepcopy])
def test_clone_is_independent(copier):
    g = random_game("square8", 3, seed=5, max_moves=40)
    assert g.status == "active"
    c = copier(g)
    assert type(c) is Game
    assert (c.hash(), c.fingerprint(), c.legal_moves(), c.to_json()) == (g.hash(), g.fingerprint(),
                                                                          g.legal_moves(), g.to_json())
    before = snapshot(g)
    rng = random.Random(1)
    for _ in range(30):
        if c.status != "active":
            break
        apply_random(c, rng)
    assert c.move_count > g.move_count and c.hash() != g.hash()
    assert snapshot(g) == before
    # and the other way round: playing the original does not touch the copy
    c_before = snapshot(c)
    apply_random(g, rng)
    assert snapshot(c) == c_before


# ---- state JSON round trip ----------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_state_json_round_trip_keeps_hash_and_legal_moves(board):
    checked = 0
    phases = set()
    for seed in range(4):
        game = Game(board, 2 + seed % 3)
        rng = random.Random(seed)
        cap = 300 if board in ("square8", "hex8") else 120
        while game.move_count < cap:
            # every state, capture / pending-territory / mid-turn ones included
            again = Game.from_json(game.to_json())
            assert again.hash() == game.hash() and again.fingerprint() == game.fingerprint()
            assert (again.phase, again.current_player, again.status) == (game.phase, game.current_player,
                                                                         game.status)
            assert again.stacks() == game.stacks() and sorted(again.markers()) == sorted(game.markers())
            assert again.must_move_from == game.must_move_from
            assert again.chain_capture_position == game.chain_capture_position
            assert keys_of(again) == keys_of(game), (board, seed, game.move_count, game.phase)
            checked += 1
            phases.add(game.phase)
            if game.status != "active":
                break
            apply_random(game, rng)
    assert checked > 100
    assert phases >= {"ring_placement", "movement", "line_processing", "territory_processing"}


def _first_state(board, num_players, pred, seeds=range(40)):
    for seed in seeds:
        game = Game(board, num_players)
        rng = random.Random(seed)
        prev = None
        while game.status == "active" and game.move_count < 400:
            if pred(game, prev):
                return game
            prev = apply_random(game, rng).type
    pytest.fail("no such state found in random play")


def test_round_trip_of_capture_phase_without_must_move():
    g = _first_state("square8", 2, lambda g, prev: g.phase == "capture" and g.must_move_from is None)
    assert any(m.type == "overtaking_capture" for m in g.legal_moves())
    assert keys_of(Game.from_json(g.to_json())) == keys_of(g)


def test_round_trip_of_pending_territory_elimination():
    g = _first_state("square8", 2, lambda g, prev: prev == "choose_territory_option" and g.status == "active"
                     and g.phase == "territory_processing")
    assert {m.type for m in g.legal_moves()} == {"eliminate_rings_from_stack"}
    assert keys_of(Game.from_json(g.to_json())) == keys_of(g)


def test_round_tripped_game_continues_like_the_original():
    g = _first_state("square8", 2, lambda g, prev: prev == "move_stack" and g.phase == "line_processing"
                     and [m.type for m in g.legal_moves()] == ["no_line_action"])
    again = Game.from_json(g.to_json())
    assert keys_of(again) == keys_of(g)          # same surface now ...
    g.apply(g.legal_moves()[0])
    again.apply(again.legal_moves()[0])
    assert (again.phase, again.hash()) == (g.phase, g.hash())  # ... and the same state after it


def test_chain_capture_state_without_position_is_rejected():
    state = make_state(stacks={(3, 3): [1, 1], (3, 4): [2]}, phase="chain_capture")
    with pytest.raises(StateParseError):
        g = Game.from_json(state)
        assert g.legal_moves(), "empty surface in an active game"


# ---- move JSON round trip -------------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_move_json_round_trip_for_every_listed_move(board):
    seen = set()
    small = board in ("square8", "hex8")
    # (players, seed) pairs; the small-board ones include games where recovery slides are listed
    cases = [(2, 0), (3, 7), (4, 2), (2, 1), (3, 1), (2, 2)] if small else [(2, 0), (4, 1)]
    for num_players, seed in cases:
        rng = random.Random(seed)
        for g in random_positions(board, num_players, seed, 600 if small else 400):
            moves = g.legal_moves()
            sample = moves if len(moves) <= 60 else rng.sample(moves, 12)
            for m in sample:
                js = move_to_json(g, m)
                assert js["type"] == m.type and js["player"] == m.player
                back = move_from_json(g, js)
                assert move_key(js) == engine_move_key(g, m) == engine_move_key(g, back)
                if back != m:
                    # only true duplicates (the same region found by two detection passes) may differ
                    assert m.type == "choose_territory_option", (m.type, js)
                    a, b = g.clone(), g.clone()
                    a.apply(m)
                    b.apply(back)
                    assert a.fingerprint() == b.fingerprint() and keys_of(a) == keys_of(b)
                seen.add(m.type)
    assert seen >= {"place_ring", "move_stack", "overtaking_capture", "no_line_action", "no_territory_action"}
    if small:
        assert seen >= {"choose_territory_option", "eliminate_rings_from_stack", "continue_capture_segment",
                        "skip_territory_processing", "choose_line_option", "recovery_slide"}


def test_json_of_bookkeeping_moves_and_placements():
    g = Game("hex8", 2)
    (m,) = [m for m in g.legal_moves() if m.to == cell(g, -1, 2) and m.count == 3]
    assert move_to_json(g, m) == {"type": "place_ring", "player": 1, "to": {"x": -1, "y": 2, "z": -1},
                                  "placementCount": 3, "placedOnStack": False}
    g.apply(m)
    assert move_to_json(g, Move("skip_capture", 1)) == {"type": "skip_capture", "player": 1, "to": {"x": 0, "y": 0}}
    # bookkeeping fields are ignored when matching
    g2 = Game("square8", 2)
    js = {"type": "place_ring", "player": 1, "to": {"x": 2, "y": 5}, "placementCount": 2, "id": "x",
          "timestamp": "2025-01-01T00:00:00Z", "thinkTime": 12, "moveNumber": 99}
    assert g2.play(js) == Move("place_ring", 1, to=cell(g2, 2, 5), count=2)
    assert stack_rings(g2, 2, 5) == [1, 1]


def stack_rings(g, x, y):
    return dict(g.stacks())[cell(g, x, y)]


# ---- game end -------------------------------------------------------------------------------

@pytest.mark.parametrize("board,num_players", [("square8", 2), ("hex8", 3), ("square8", 4)])
def test_finished_game_lists_nothing_and_refuses_moves(board, num_players):
    g = random_game(board, num_players, seed=11, max_moves=5000)
    assert g.status == "completed" and g.is_over
    assert g.phase == "game_over" and g.winner in range(1, num_players + 1)
    assert g.victory_reason in {"ring_elimination", "territory_control", "last_player_standing",
                                "tiebreaker_by_player_number"}
    assert g.legal_moves() == [] and g.num_legal_moves() == 0
    assert g.fingerprint().startswith("0:game_over:completed:")
    assert g.hash() == reference_hash(g.fingerprint()) and g.fingerprint() == expected_fingerprint(g)
    before = snapshot(g)
    for mover in range(1, num_players + 1):
        with pytest.raises(IllegalMoveError, match="the game is over"):
            g.apply(Move("place_ring", mover, to=0, count=1))
        with pytest.raises(IllegalMoveError, match="the game is over"):
            g.apply(Move("resign", mover))
    assert snapshot(g) == before
    again = Game.from_json(g.to_json())
    assert again.status == "completed" and again.winner == g.winner and again.legal_moves() == []
    assert again.hash() == g.hash()


def test_resign_ends_a_two_player_game_in_any_phase():
    g = random_game("square8", 2, seed=3, max_moves=7)
    loser = g.current_player
    g.play({"type": "resign", "player": loser})
    assert (g.status, g.winner, g.victory_reason, g.phase) == ("completed", 3 - loser, "resignation", "game_over")
    assert g.legal_moves() == []


def test_repr_names_board_phase_and_player():
    g = load(stacks={(0, 0): [1]}, current=1)
    assert repr(g) == "<ringrift.Game square8 2p move 0 movement player 1 active>"
