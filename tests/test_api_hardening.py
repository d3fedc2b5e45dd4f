"""Regression tests of issue 15: every reproducer of a crash, a silent integer wrap, undefined
behaviour or an undocumented exception from the engine API now gets its documented error."""

from __future__ import annotations

import json

import pytest

from conftest import make_state
import ringrift
from ringrift import RingRiftError, _core
from ringrift.engine.arg_errors import raw
from ringrift.engine import Game, IllegalMoveError, Move, MoveParseError, StateParseError, move_from_json, move_to_json


def snapshot(game: Game):
    return game.hash(), game.fingerprint(), game.to_json()


# ---- interpreter crashes and out-of-bounds reads -----------------------------------------

def test_neighbour_out_of_range_cell_and_direction():
    g = Game("square8", 2)
    with pytest.raises(ValueError, match=r"cell 100000000 is out of range \[0, 63\] of the square8 board"):
        g.neighbour(100000000, 0)
    with pytest.raises(ValueError, match=r"direction 8 is out of range \[0, 7\]"):
        g.neighbour(0, 8)
    with pytest.raises(ValueError, match=r"direction 6 is out of range \[0, 5\] of the hex8 board"):
        Game("hex8", 2).neighbour(0, 6)
    with pytest.raises(ValueError):
        g.neighbour(-1, 0)
    assert g.neighbour(0, 0) in range(-1, 64)


def test_dir_between_out_of_range_cell():
    g = Game("square8", 2)
    with pytest.raises(ValueError, match="cell 1000000000 is out of range"):
        g.dir_between(0, 1000000000)
    with pytest.raises(ValueError, match="cell -5 is out of range"):
        g.dir_between(-5, 0)


@pytest.mark.parametrize("move", [
    Move("choose_line_option", 1, window=105),
    Move("choose_line_option", 1, line_start=0, line_len=3, window=100),  # read past the line: garbage memory
    Move("choose_line_option", 1, line_start=0, line_len=9, line_dir=2),  # off the board
    Move("process_line", 1, line_start=63, line_len=4, line_dir=7),
    Move("process_line", 1, line_start=0, line_len=1, line_dir=2),  # shorter than any line (found by the fuzz test)
    Move("recovery_slide", 1, from_cell=0, to=1, context=1, line_start=60, line_len=8, line_dir=2),
    Move("choose_territory_option", 1),
    Move("place_ring", 1, to=400),
])
def test_move_cells_and_move_to_json_refuse_a_move_off_the_board(move):
    for board, n in (("square8", 2), ("hex8", 4)):
        g = Game(board, n)
        before = snapshot(g)
        with pytest.raises(ValueError):
            g.move_cells(move)
        with pytest.raises(ValueError):
            move_to_json(g, move)
        assert snapshot(g) == before


def test_cell_key_and_coords_raise_value_error_off_the_board():
    g = Game("hex8", 2)
    for c in (-1, 61, 2**31, 2**80):
        with pytest.raises(ValueError, match="out of range"):
            g.cell_key(c)
        with pytest.raises(ValueError, match="out of range"):
            g.cell_coords(c)
    assert g.cell_index(2**80, 0) == -1 and g.cell_index(-2**70, 2**70) == -1


# ---- silent integer wrap and undefined behaviour -------------------------------------------

def test_resign_of_player_257_is_not_player_1():
    g = Game()
    before = snapshot(g)
    with pytest.raises(MoveParseError, match="player 257 is out of range"):
        g.play({"type": "resign", "player": 257})
    with pytest.raises(MoveParseError, match="player 3 is not a seat of this 2-player game"):
        g.play({"type": "resign", "player": 3})
    assert snapshot(g) == before and g.status == "active"


def test_json_true_is_not_player_1():
    g = Game()
    before = snapshot(g)
    with pytest.raises(MoveParseError, match="non-integer 'player'"):
        g.play({"type": "resign", "player": True})
    with pytest.raises(MoveParseError, match="non-integer 'player'"):
        move_from_json(g, {"type": "place_ring", "player": True, "to": {"x": 0, "y": 0}})
    with pytest.raises(MoveParseError, match="integer x and y"):
        move_from_json(g, {"type": "place_ring", "player": 1, "to": {"x": True, "y": 0}})
    assert snapshot(g) == before


def test_move_fields_do_not_wrap():
    with pytest.raises(ValueError, match=r"player: 257 is out of range \[1, 4\]"):
        Move("place_ring", 257, to=0, count=257)
    with pytest.raises(ValueError, match=r"count: 257 is out of range \[0, 255\]"):
        Move("place_ring", 1, to=0, count=257)
    for field, value in (("to", 469), ("from_cell", -2), ("target", 2**15), ("line_start", 2**16), ("line_dir", 8),
                         ("line_len", 256), ("window", 255), ("window", -2), ("context", 4), ("option", 5)):
        with pytest.raises(ValueError, match=f"{field}: "):
            Move("place_ring", 1, **{field: value})
    for value in (2**31, 2**63, 2**64, -2**63 - 1):
        with pytest.raises(ValueError, match="out of range"):
            Move("resign", value)
    with pytest.raises(TypeError):
        Move("resign", True)
    assert Move("place_ring", 1, to=0, count=3).count == 3


def test_move_record_fields_are_checked():
    good = Move("place_ring", 1, to=5, count=2).to_record()
    assert _core.move_from_record(good) == Move("place_ring", 1, to=5, count=2)
    for offset, byte in ((1, 0), (1, 5), (6, 0xFF), (3, 9), (14, 4), (15, 200)):  # player, to, line_dir, context, option
        bad = bytearray(good)
        bad[offset] = byte
        if offset == 6:
            bad[7] = 0x7F  # to = 0x7FFF
        with pytest.raises(ValueError):
            _core.move_from_record(bytes(bad))


@pytest.mark.parametrize("field,value,match", [
    ("eliminatedRings", 40000, r"player 1 eliminatedRings: 40000 is out of range \[0, 384\]"),
    ("territorySpaces", 70000, r"player 1 territorySpaces: 70000 is out of range \[0, 64\]"),
    ("ringsInHand", 2**31 - 1, r"player 1 ringsInHand: 2147483647 is out of range \[0, 384\]"),
    ("ringsInHand", -1, "ringsInHand: -1 is out of range"),
    ("ringsInHand", 2**31, "out of range"),
    ("ringsInHand", 2**64, "out of range"),
])
def test_per_player_counts_are_bounded(field, value, match):
    state = make_state()
    state["players"][0][field] = value
    with pytest.raises(StateParseError, match=match):
        Game.from_json(state)


def test_ring_total_is_checked_without_overflow():
    state = make_state(hands=[384, 1])
    with pytest.raises(StateParseError, match="more than the engine's 384"):
        Game.from_json(state)
    state = make_state(stacks={(0, 0): [1] * 300}, hands=[100, 0])
    with pytest.raises(StateParseError, match="more than the engine's 384"):
        Game.from_json(state)
    Game.from_json(make_state(hands=[192, 192]))  # at the bound: loads and writes back
    g = Game.from_json(make_state(hands=[192, 192]))
    assert Game.from_json(g.to_json()).hash() == g.hash()


@pytest.mark.parametrize("lps,match", [
    ({"firstPlayer": 255}, r"ringrift.lps.firstPlayer: 255 is out of range \[0, 2\]"),
    ({"consecutivePlayer": 3}, "consecutivePlayer: 3 is out of range"),
    ({"exclusiveCompleted": 9}, "out of range"),
    ({"maskSet": 1}, "bits outside the seats"),
    ({"maskValue": 8}, "out of range"),
    ({"roundIndex": 40000}, r"roundIndex: 40000 is out of range \[0, 16384\]"),
    ({"consecutiveRounds": -1}, "out of range"),
    ({"bogus": 1}, "unknown state field ringrift.lps.bogus"),
    ({"firstPlayer": True}, "must map names to integers"),
])
def test_lps_fields_are_bounded(lps, match):
    with pytest.raises(StateParseError, match=match):
        Game.from_json(make_state(ringrift={"lps": lps}))


def test_move_count_is_bounded_and_the_next_move_does_not_overflow():
    with pytest.raises(StateParseError, match=r"ringrift.moveCount: 2147483647 is out of range \[0, 16777216\]"):
        Game.from_json(make_state(phase="ring_placement", ringrift={"moveCount": 2**31 - 1}))
    g = Game.from_json(make_state(phase="ring_placement", ringrift={"moveCount": 2**24}))
    g.apply(g.legal_moves()[0])
    assert g.move_count == 2**24 + 1


@pytest.mark.parametrize("ringrift,match", [
    ({"lastActor": 3}, "lastActor: 3 is out of range"),
    ({"lastActor": 2**63}, "out of range"),
    ({"turnHadAction": 2}, "turnHadAction: 2 is out of range"),
    ({"swapDone": -1}, "out of range"),
    ({"victoryThreshold": 2**31}, "out of range"),
    ({"territoryMinimum": 65}, r"territoryMinimum: 65 is out of range \[0, 64\]"),
    ({"captureOrigin": "9,9"}, "not on the square8 board"),
    ({"moveCounts": 1}, "unknown state field ringrift.moveCounts"),
    ({"turnHadAction": True}, "must be an integer"),
    ({"turnHadAction": 1.0}, "must be an integer"),
])
def test_extension_fields_are_bounded(ringrift, match):
    with pytest.raises(StateParseError, match=match):
        Game.from_json(make_state(ringrift=ringrift))


# ---- undocumented exceptions from the loaders ---------------------------------------------

@pytest.mark.parametrize("mutate,match", [
    (lambda s: s["players"][0].update(ringsInHand=2**31), "out of range"),
    (lambda s: s.update(currentPlayer=2**40), "out of range"),
    (lambda s: s.update(winner=2**64), "out of range"),
    (lambda s: s["board"]["stacks"].update({"0,0": {"rings": [2**40]}}), "out of range"),
    (lambda s: s["board"]["markers"].update({"1,1": {"player": 2**33}}), "out of range"),
    (lambda s: s.update(victoryThreshold=2**31), "out of range"),
    (lambda s: s.update(ringrift={"moveCount": 2**100}), "out of range"),
])
def test_values_beyond_32_bits_are_state_parse_errors(mutate, match):
    state = make_state()
    mutate(state)
    with pytest.raises(StateParseError, match=match):
        Game.from_json(state)


@pytest.mark.parametrize("text", [
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": Infinity},'
    ' {"playerNumber": 2, "ringsInHand": 1}]}',
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": NaN},'
    ' {"playerNumber": 2, "ringsInHand": 1}]}',
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": 3.0},'
    ' {"playerNumber": 2, "ringsInHand": 1}]}',
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": 1},'
    ' {"playerNumber": 2, "ringsInHand": 1}], "currentPlayer": -Infinity}',
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1.0, "ringsInHand": 1},'
    ' {"playerNumber": 2, "ringsInHand": 1}]}',
    '{"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": 1},'
    ' {"playerNumber": 2, "ringsInHand": 1}], "ringrift": {"moveCount": Infinity}}',
])
def test_json_infinity_nan_and_floats_are_state_parse_errors(text):
    with pytest.raises(StateParseError, match="expected an integer|must be an integer"):
        Game.from_json(json.loads(text))


@pytest.mark.parametrize("state,match", [
    ({"board": {"type": 5}, "players": []}, "board.type: expected a board name"),
    ({"board": {"type": ["square8"]}, "players": []}, "board.type: expected a board name"),
    ({"board": "square8", "players": []}, "board: expected an object"),
    ({"board": {"type": "square8"}, "players": 2}, "players: expected a list"),
    ({"board": {"type": "square8"}, "players": [1, 2]}, "players: expected a list of player objects"),
    ({"board": {"type": "square8"}, "players": [{"playerNumber": 1, "ringsInHand": 1}] * 2}, "each once"),
    ({**make_state(), "rulesOptions": [1]}, "rulesOptions: expected an object"),
    ({**make_state(), "rulesOptions": "swap"}, "rulesOptions: expected an object"),
    ({**make_state(), "rulesOptions": {"swapRuleEnabled": 1}}, "expected true or false"),
    ({**make_state(), "pendingLineRewardElimination": 1}, "expected true or false"),
    ({**make_state(), "currentPhase": ["movement"]}, "currentPhase: expected a string"),
    ({**make_state(), "gameStatus": 1}, "gameStatus: expected a string"),
    ({**make_state(), "moveHistory": {"a": 1}}, "moveHistory: expected a list"),
    ({**make_state(), "moveHistory": [{"type": "place_ring", "player": True}]}, r"moveHistory\[0\]"),
    ({**make_state(), "moveHistory": [[1]]}, r"moveHistory\[0\]"),
    ({**make_state(), "mustMoveFromStackKey": 5}, "malformed position key"),
    ({**make_state(), "chainCapturePosition": {"x": 1.5, "y": 0}}, "integer x and y"),
    ({**make_state(), "ringrift": [1]}, "ringrift: expected an object"),
    ({**make_state(board="square8"), "winner": True}, "winner: expected an integer"),
])
def test_ill_typed_state_fields_are_state_parse_errors(state, match):
    with pytest.raises(StateParseError, match=match):
        Game.from_json(state)


@pytest.mark.parametrize("key", ["0,0,0", " 0,0", "0,+0", "\u0660,0", "0,0,", "00000,0", "0x1,0"])
def test_malformed_square_position_keys(key):
    state = make_state()
    state["board"]["stacks"] = {key: {"rings": [1]}}
    with pytest.raises(StateParseError, match="malformed position key"):
        Game.from_json(state)


def test_hex_position_keys_need_a_consistent_z():
    state = make_state("hex8")
    state["board"]["stacks"] = {"1,0,0": {"rings": [1]}}
    with pytest.raises(StateParseError, match="z != -x-y"):
        Game.from_json(state)
    state["board"]["stacks"] = {"1,0,-1": {"rings": [1]}}
    assert len(Game.from_json(state).stacks()) == 1


@pytest.mark.parametrize("move,match", [
    ({"type": ["place_ring"], "player": 1}, "unknown move type"),
    ({"type": {"a": 1}, "player": 1}, "unknown move type"),
    ({"type": "place_ring", "player": 1, "to": {"x": 0, "y": 0}, "placementCount": [2]}, "placementCount"),
    ({"type": "place_ring", "player": 1, "to": {"x": 0, "y": 0}, "placementCount": 4}, "placementCount"),
    ({"type": "place_ring", "player": 1, "to": {"x": 0, "y": 0}, "placementCount": True}, "placementCount"),
    ({"type": "place_ring", "player": 1.0, "to": {"x": 0, "y": 0}}, "non-integer 'player'"),
    ({"type": "place_ring", "player": 1, "to": {"x": float("inf"), "y": 0}}, "integer x and y"),
    ({"type": "place_ring", "player": 1, "to": {"x": 2**70, "y": 0}}, "not on the square8 board"),
    ({"type": "recovery_slide", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 0, "y": 1},
      "recoveryMode": ["line"]}, "recoveryMode"),
    ({"type": "recovery_slide", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 0, "y": 1},
      "recoveryMode": "line", "option": 3}, "option"),
    ({"type": "recovery_slide", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 0, "y": 1},
      "collapsePositions": {"x": 1}}, "list of positions"),
    ({"type": "eliminate_rings_from_stack", "player": 1, "to": {"x": 0, "y": 0}, "eliminationContext": 1},
     "eliminationContext"),
    ({"type": "choose_territory_option", "player": 1,
      "disconnectedRegions": [{"spaces": [], "controllingPlayer": "1"}]}, "controllingPlayer"),
    ({"type": "process_line", "player": 1, "formedLines": [{"positions": "0,0"}]}, "list of positions"),
    ({"type": "choose_line_option", "player": 1, "formedLines": [{"positions": []}], "collapsedMarkers": 5},
     "list of positions"),
])
def test_ill_typed_move_fields_are_move_parse_errors(move, match):
    g = Game()
    before = snapshot(g)
    with pytest.raises(MoveParseError, match=match):
        move_from_json(g, move)
    with pytest.raises(MoveParseError, match=match):
        g.play(move)
    assert snapshot(g) == before


def test_arguments_of_self_play_are_checked():
    for kwargs, match in (({"threads": 10**9}, "threads"), ({"max_moves": 0}, "max_moves"),
                          ({"max_moves": 2**31}, "max_moves"), ({"threads": -1}, "threads")):
        with pytest.raises(ValueError, match=match):
            _core.selfplay_batch("square8", 2, 1, [0], **kwargs)
    with pytest.raises(ValueError, match="seed"):
        _core.selfplay_batch("square8", 2, -1, [0])
    with pytest.raises(ValueError, match="seed"):
        _core.selfplay_batch("square8", 2, 2**64, [0])
    with pytest.raises(ValueError, match="game index"):
        _core.selfplay_batch("square8", 2, 1, [-1])
    with pytest.raises(ValueError, match="game index"):
        _core.selfplay_slots_host("square8", 2, 1, [True])
    with pytest.raises(ValueError, match="num_players"):
        _core.selfplay_batch("square8", 2**40, 1, [0])
    assert _core.selfplay_batch("square8", 2, 2**64 - 1, [0])["total_moves"] > 0


def test_export_index_arguments_are_checked():
    g = Game("hex8", 3)
    for t in (-1, 12, 2**63, 2**64):
        with pytest.raises(ValueError, match="symmetry"):
            _core.export.transform_into(g, Game("hex8", 3), t)
    for i in (-1, 2**31, 2**64):
        with pytest.raises(ValueError, match="action index"):
            _core.export.decode_action(g, i)


def test_apply_unchecked_refuses_a_move_that_cannot_be_applied():
    g = Game()
    before = snapshot(g)
    for move in (Move("place_ring", 2, to=0, count=1), Move("place_ring", 1, to=300, count=1),
                 Move("move_stack", 1, from_cell=0, to=9)):
        with pytest.raises(ValueError, match="cannot be applied"):
            g._apply_unchecked(move)
    assert snapshot(g) == before


def test_rejected_apply_leaves_the_state_unchanged():
    g = Game()
    before = snapshot(g)
    for move in (Move("place_ring", 1, to=63, count=4), Move("move_stack", 1, from_cell=0, to=1),
                 Move("choose_line_option", 1, line_start=0, line_len=200, window=100)):
        with pytest.raises(IllegalMoveError):
            g.apply(move)
    assert snapshot(g) == before


def test_legal_moves_can_list_a_recovery_slide_that_apply_refuses():
    """Documented in the Game docstring, README and docs/engine_api.md (RULES.md 6.7): the
    reference lists some line-mode recovery slides that its own transition rejects; apply()
    refuses them with the reference's reason and leaves the state unchanged."""
    batch = _core.selfplay_batch("hex8", 3, 7, range(40), "random", threads=1, max_moves=600)
    off = batch["move_offsets"]
    for gi in range(40):
        g = Game("hex8", 3)
        for rec in batch["moves"][off[gi]:off[gi + 1]]:
            if g.phase == "movement":
                listed = g.legal_moves()
                for m in listed:
                    if m.type == "recovery_slide" and m.context == 1:  # line mode
                        before = snapshot(g)
                        try:
                            g.apply(m)
                        except IllegalMoveError as exc:
                            assert exc.reason == "the reference engine rejects this listed move"
                            assert snapshot(g) == before and g.num_legal_moves() == len(listed)
                            return
                        g = Game.from_json(before[2])  # applied: back to the position, keep looking
            g.apply(_core.move_from_record(bytes(rec)))
    pytest.fail("no refused recovery slide in 40 hex8 3-player games")


def test_a_coordinate_past_pythons_digit_limit_is_a_move_parse_error():
    # the error message itself once failed (int -> str beyond 4,300 digits), as a bare ValueError
    from ringrift import Game
    from ringrift.engine.errors import MoveParseError

    for x in (10**5000, 10**300):
        with pytest.raises(MoveParseError, match="is not on the square8 board") as exc:
            Game("square8", 2).play({"type": "place_ring", "player": 1, "to": {"x": x, "y": 0}})
        assert len(str(exc.value)) < 200


def test_calls_no_signature_fits_are_one_line_type_errors():
    # pybind11 answers a call that fits no signature with a TypeError of 4+ lines; every public
    # method of Game and Move says it in one line: the function, what it takes, what it got.
    game = ringrift.Game("square8", 2)
    move = game.legal_moves()[0]
    compiled = [n for n in dir(_core.Game) if not n.startswith("_") and callable(getattr(_core.Game, n))]
    assert len(compiled) >= 15
    for name in compiled:
        for args in ((object(),), (1, 2, 3, 4)):
            try:
                getattr(game, name)(*args)
            except TypeError as exc:
                text = str(exc)
                assert len(text.splitlines()) == 1, (name, text)
                assert text.startswith(f"Game.{name}(): incompatible arguments: takes ("), text
            except (ValueError, RingRiftError):
                pass  # a value the method checks itself
    with pytest.raises(TypeError) as exc:
        game.cell_index("a", 1)
    assert str(exc.value) == "Game.cell_index(): incompatible arguments: takes (x: int, y: int) -> int; got ('a', 1)"
    for bad in (("x",), ("place_ring", "a"), ("place_ring", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)):
        with pytest.raises(TypeError, match=r"^Move\(\): incompatible arguments: takes \(type: str, player: int, "
                                            r"from_cell: int = -1, [^\n]*; got \(") as exc:
            ringrift.Move(*bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(TypeError, match=r"^Move.to_record\(\): incompatible arguments: takes \(\) -> bytes; got \(3\)$"):
        move.to_record(3)
    # calls that fit are untouched, and so are the TypeErrors of the methods' own checks
    assert game.cell_index(0, 0) == 0 and len(game.legal_moves()) == 64 * 3
    assert ringrift.Move("place_ring", 1, to=3).to == 3 and len(move.to_record()) == 16
    with pytest.raises(TypeError, match="^board must be a string, got int$"):
        ringrift.Game(5, 2)


def _compiled_functions():
    for module, prefix in ((_core, "_core."), (_core.export, "_core.export."), (_core.upstream, "_core.upstream.")):
        for name, fn in vars(module).items():
            if not name.startswith("_") and callable(fn) and not isinstance(fn, type):
                yield prefix + name, fn


def test_compiled_module_functions_say_no_signature_fits_in_one_line():
    # The compiled module's own functions (documented ones among them: move_from_record,
    # selfplay_batch, export.action_index, ...) answer like Game's methods.
    functions = dict(_compiled_functions())
    assert len(functions) >= 40
    for label, fn in functions.items():
        assert fn is not raw(fn), f"{label} is not wrapped"
        with pytest.raises(TypeError) as exc:
            fn(*[object()] * 30)  # no signature takes thirty arguments
        text = str(exc.value)
        assert "\n" not in text and text.startswith(f"{label}(): incompatible arguments: takes ("), text
        assert "rr::" not in text, text  # signatures name the Python classes, not the C++ ones
    with pytest.raises(TypeError) as exc:
        _core.move_from_record(3)
    assert str(exc.value) == ("_core.move_from_record(): incompatible arguments: takes (record: bytes) -> "
                              "ringrift._core.Move; got (3)")
    # calls that fit, and the functions' own errors, are untouched; raw() is the compiled function
    move = ringrift.Game("square8", 2).legal_moves()[5]
    assert _core.move_from_record(move.to_record()).to == move.to
    with pytest.raises(ValueError, match="^a move record is 16 bytes, got 2$"):
        _core.move_from_record(b"12")
    assert type(raw(_core.move_from_record)).__name__ == "builtin_function_or_method"
    assert raw(raw(_core.move_from_record)) is raw(_core.move_from_record)
