"""Fuzzing the engine's public API with mutated real inputs (hypothesis, derandomized).

Real states and moves of every board and player count come from short self-play games
(``_core.selfplay_batch``) replayed through the API. Each test mutates them (or feeds raw bytes /
arbitrary JSON / arbitrary integers) into a loader or an index-taking function and asserts only
what the API documents (docs/engine_api.md): the call either succeeds with a consistent result
or raises its documented exception, and a rejected input leaves the game exactly as it was.

The tests are bounded by example counts (a few seconds each on a 2-core machine);
``RINGRIFT_FUZZ_EXAMPLES`` scales them (the sanitizer run, scripts/sanitize_parity.sh, uses it).
"""

from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CONFIGS
from ringrift import _core
from ringrift.engine import Game, IllegalMoveError, Move, MoveParseError, StateParseError, move_from_json, move_to_json
from ringrift.engine.json_io import engine_move_key, move_key

SCALE = float(os.environ.get("RINGRIFT_FUZZ_EXAMPLES", "1"))


def fuzz_settings(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# ---- real inputs ---------------------------------------------------------------------------

MAX_MOVES = {"square8": 400, "hex8": 400, "square19": 250, "hexagonal": 250}
SNAPSHOTS = 10  # positions kept per board and player count, spread over the game and its phases


@functools.lru_cache(maxsize=None)
def corpus(board: str, num_players: int) -> tuple:
    """Positions of one self-play game: (game, its legal moves) at up to SNAPSHOTS steps, preferring
    steps whose phase has not been kept yet, plus the game's move records."""
    batch = _core.selfplay_batch(board, num_players, 15, [num_players], "random", threads=1,
                                 max_moves=MAX_MOVES[board])
    records = [bytes(r) for r in batch["moves"]]
    game = Game(board, num_players)
    seen, kept = set(), []
    every = max(1, len(records) // SNAPSHOTS)
    for i, rec in enumerate(records):
        if game.phase not in seen or i % every == 0:
            seen.add(game.phase)
            kept.append(game.clone())
        game.apply(_core.move_from_record(rec))
        assert _core.state_problem(game) == "", f"step {i}"  # the consistency check has no false positives
    kept.append(game)
    picked = kept[:: max(1, len(kept) // (2 * SNAPSHOTS))]
    return tuple((g, tuple(g.legal_moves())) for g in picked), tuple(records)


def snapshot(game: Game):
    return game.hash(), game.fingerprint(), game.to_json()


config = st.sampled_from(CONFIGS)

# ---- JSON values and mutations ------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 3, 4, 5, 7, 8, 18, 63, 64, 255, 256, 257, 384, 385, 469, 2**15 - 1, 2**15, 2**16,
             2**24, 2**24 + 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**31, -2**63 - 1, 10**30]
FIELD_NAMES = ["type", "player", "x", "y", "z", "to", "from", "captureTarget", "placementCount", "rings",
               "playerNumber", "ringsInHand", "eliminatedRings", "territorySpaces", "currentPlayer", "currentPhase",
               "gameStatus", "winner", "moveCount", "lastActor", "lps", "firstPlayer", "maskSet", "roundIndex",
               "captureOrigin", "rulesOptions", "swapRuleEnabled", "ringrift", "moveHistory", "stacks", "markers",
               "collapsedSpaces", "formedLines", "positions", "disconnectedRegions", "spaces", "recoveryMode",
               "option", "eliminationContext", "mustMoveFromStackKey", "chainCapturePosition", "board"]
STRINGS = ["square8", "hex8", "square19", "hexagonal", "movement", "capture", "chain_capture", "line_processing",
           "territory_processing", "forced_elimination", "game_over", "ring_placement", "active", "completed",
           "line", "territory", "recovery", "fallback", "stack_strike", "place_ring", "resign",
           "choose_line_option", "recovery_slide", "0,0", "1,1,-2", "3,3", "-1,2,-1", "7,7", "99,99", "a,b",
           "1,2,3", " 1,1", "\u0661,1", ""]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGE_INTS), st.integers(-600, 600), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(STRINGS), st.text(max_size=6))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), inner, max_size=4)),
    max_leaves=10)


def paths(value, prefix=()):
    """Every path into a JSON tree (the root included)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, prefix + (i,))
    return out


def get(value, path):
    for p in path:
        value = value[p]
    return value


def deep_copy(value):
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


@st.composite
def mutated(draw, base):
    """``base`` with one to three mutations: a value replaced (by an edge integer, a neighbour of an
    integer, a value of another JSON type, or a random JSON tree), a key or item deleted, a key added."""
    value = deep_copy(base)
    for _ in range(draw(st.integers(1, 3))):
        ps = paths(value)
        path = draw(st.sampled_from(ps))
        old = get(value, path)
        op = draw(st.sampled_from(["replace", "replace", "nudge", "delete", "add"]))
        if op == "nudge" and isinstance(old, int) and not isinstance(old, bool):
            new = draw(st.sampled_from([old + 1, old - 1, -old, old * 256, old + 2**16, old + 2**31, True]))
        elif op == "delete" and path:
            parent = get(value, path[:-1])
            del parent[path[-1]]
            continue
        elif op == "add" and isinstance(old, dict):
            old[draw(st.sampled_from(FIELD_NAMES))] = draw(json_value)
            continue
        else:
            new = draw(json_value)
        if not path:
            value = new
        else:
            get(value, path[:-1])[path[-1]] = new
    return value


@st.composite
def real_position(draw):
    board, n = draw(config)
    positions, _ = corpus(board, n)
    game, moves = draw(st.sampled_from(positions))
    return game.clone(), moves


# ---- states ---------------------------------------------------------------------------------

@fuzz_settings(100)
@given(data=st.data())
def test_mutated_states_load_consistently_or_raise_state_parse_error(data):
    game, _ = data.draw(real_position())
    state = data.draw(mutated(game.to_json()))
    try:
        loaded = Game.from_json(state)
    except StateParseError:
        return
    # Accepted: the state is consistent, one the engine can play from and write back exactly.
    assert _core.state_problem(loaded) == ""
    dumped = loaded.to_json()
    again = Game.from_json(dumped)
    assert again.hash() == loaded.hash() and again.to_json() == dumped
    assert again.fingerprint() == loaded.fingerprint()
    moves = loaded.legal_moves()
    if loaded.status == "active" and moves:
        move = data.draw(st.sampled_from(moves))
        before = snapshot(loaded)
        try:
            loaded.apply(move)
        except IllegalMoveError:
            assert snapshot(loaded) == before
        else:
            assert _core.state_problem(loaded) == ""
            Game.from_json(loaded.to_json())


@fuzz_settings(200)
@given(data=st.data())
def test_mutated_state_bytes_load_consistently_or_raise_value_error(data):
    """load_state_bytes (BatchEnv.game) takes a batch slot's raw State: damaged bytes are refused."""
    game, _ = data.draw(real_position())
    raw = bytearray(_core.state_bytes(game))
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):  # mostly the header: phase, players, counters, lists' heads
            i = data.draw(st.integers(0, 120))
        else:
            i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.sampled_from([0, 1, 2, 5, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
    target = Game(game.board, game.num_players)
    before = snapshot(target)
    try:
        _core.load_state_bytes(target, bytes(raw))
    except ValueError:
        assert snapshot(target) == before
        return
    assert _core.state_problem(target) == ""
    moves = target.legal_moves()
    if target.status == "active" and moves:
        try:
            target.apply(data.draw(st.sampled_from(moves)))
        except IllegalMoveError:
            pass
        assert _core.state_problem(target) == ""


@fuzz_settings(150)
@given(value=json_value, board=st.sampled_from(["square8", "hex8", None]), n=st.sampled_from([2, 3, 4, None]))
def test_arbitrary_json_is_a_state_parse_error_or_a_game(value, board, n):
    try:
        Game.from_json(value, board=board, num_players=n)
    except StateParseError:
        pass


# ---- moves ----------------------------------------------------------------------------------

@fuzz_settings(120)
@given(data=st.data())
def test_mutated_move_json_parses_or_raises_documented_errors_state_unchanged(data):
    game, moves = data.draw(real_position())
    if not moves:
        return
    move = data.draw(st.sampled_from(moves))
    move_json = data.draw(mutated(move_to_json(game, move)))
    before = snapshot(game)
    try:
        move_key(move_json)
    except MoveParseError:
        pass
    try:
        resolved = move_from_json(game, move_json)
    except (MoveParseError, IllegalMoveError):
        assert snapshot(game) == before
    else:
        assert snapshot(game) == before
        assert isinstance(resolved, Move)
    try:
        game.play(move_json)
    except (MoveParseError, IllegalMoveError):
        assert snapshot(game) == before


def record_of(move: Move) -> bytes:
    return move.to_record()


@fuzz_settings(200)
@given(data=st.data())
def test_raw_and_mutated_move_records_decode_or_raise_value_error(data):
    game, moves = data.draw(real_position())
    if moves and data.draw(st.booleans()):
        raw = bytearray(record_of(data.draw(st.sampled_from(moves))))
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, 15))] = data.draw(st.integers(0, 255))
        raw = bytes(raw)
    else:
        raw = data.draw(st.binary(min_size=0, max_size=20))
    try:
        move = _core.move_from_record(raw)
    except ValueError:
        return
    before = snapshot(game)
    for call in (lambda: game.move_cells(move), lambda: move_to_json(game, move),
                 lambda: _core.export.action_index(game.board, move),
                 lambda: _core.export.canonical_action_index(game, move)):
        try:
            call()
        except ValueError:
            pass
        assert snapshot(game) == before
    try:
        game.apply(move)
    except IllegalMoveError:
        assert snapshot(game) == before


# ---- index-taking functions -----------------------------------------------------------------

any_int = st.one_of(st.integers(-3, 520), st.sampled_from(EDGE_INTS), st.integers())
not_an_int = st.one_of(st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3))


@fuzz_settings(300)
@given(data=st.data())
def test_index_taking_functions_raise_value_error_out_of_range(data):
    game, moves = data.draw(real_position())
    before = snapshot(game)
    wrong_type = data.draw(st.booleans()) and data.draw(st.integers(0, 9)) == 0
    a = data.draw(not_an_int if wrong_type else any_int)
    b = data.draw(any_int)
    calls = {
        "cell_key": lambda: game.cell_key(a),
        "cell_coords": lambda: game.cell_coords(a),
        "cell_index": lambda: game.cell_index(a, b),
        "neighbour": lambda: game.neighbour(a, b),
        "neighbour_dir": lambda: game.neighbour(b % game.num_cells, a),
        "dir_between": lambda: game.dir_between(a, b),
        "decode_action": lambda: _core.export.decode_action(game, a),
        "transform_into": lambda: _core.export.transform_into(game, Game(game.board, game.num_players), a),
        "symmetric_action_index": lambda: _core.export.symmetric_action_index(game, moves[0], a) if moves else 0,
        "move_field": lambda: Move(data.draw(st.sampled_from(_core.MOVE_TYPES)), 1,
                                   **{data.draw(st.sampled_from(["from_cell", "to", "target", "count", "line_start",
                                                                 "line_dir", "line_len", "window", "context",
                                                                 "option"])): a}),
        "move_player": lambda: Move("resign", a),
    }
    name = data.draw(st.sampled_from(sorted(calls)))
    try:
        result = calls[name]()
    except ValueError:
        pass
    except TypeError:
        assert wrong_type, f"{name}({a!r}, {b!r}) raised TypeError for an integer"
    else:
        if name == "cell_index":
            assert -1 <= result < game.num_cells
        if isinstance(result, Move):
            try:
                game.move_cells(result)
            except ValueError:
                pass
    assert snapshot(game) == before


@fuzz_settings(150)
@given(data=st.data())
def test_constructed_moves_never_crash_the_board_functions(data):
    """Moves built field by field (each field in its own range) against every board function."""
    game, _ = data.draw(real_position())
    # Mostly values near the board (a cell of it, a short line, a small window) so that the
    # board checks are passed or just missed, sometimes anywhere in the field's range.
    cell = st.integers(-1, game.num_cells - 1) | st.integers(-1, 468)
    small = st.integers(0, 12)
    fields = {
        "from_cell": data.draw(cell), "to": data.draw(cell), "target": data.draw(cell),
        "count": data.draw(st.integers(0, 4) | st.integers(0, 255)), "line_start": data.draw(cell),
        "line_dir": data.draw(st.integers(0, 7)), "line_len": data.draw(small | st.integers(0, 255)),
        "window": data.draw(st.integers(-1, 12) | st.integers(-1, 254)),
        "context": data.draw(st.integers(0, 3)), "option": data.draw(st.integers(0, 4)),
    }
    if data.draw(st.booleans()):  # a line that lies on the board, so the window check is what decides
        start = data.draw(st.integers(0, game.num_cells - 1))
        d = data.draw(st.integers(0, (6 if game.board in ("hex8", "hexagonal") else 8) - 1))
        n, c = 1, start
        while (c := game.neighbour(c, d)) >= 0:
            n += 1
        fields.update(line_start=start, line_dir=d, line_len=data.draw(st.integers(1, n)))
    line_types = ["process_line", "choose_line_option", "recovery_slide", "choose_territory_option"]
    mtype = data.draw(st.sampled_from(line_types) | st.sampled_from(_core.MOVE_TYPES))
    move = Move(mtype, data.draw(st.integers(1, game.num_players) | st.integers(1, 4)), **fields)
    assert Move.__eq__(_core.move_from_record(move.to_record()), move)
    before = snapshot(game)
    for call in (lambda: game.move_cells(move), lambda: move_to_json(game, move),
                 lambda: _core.export.canonical_action_index(game, move)):
        try:
            call()
        except ValueError:
            pass
    try:
        game.apply(move)
    except IllegalMoveError:
        assert snapshot(game) == before


@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_every_legal_move_fits_its_board(board, num_players):
    """The boundary checks never refuse a real move (no false positives on the hot inputs)."""
    positions, records = corpus(board, num_players)
    assert records, "self-play produced no moves"
    for game, moves in positions:
        assert _core.state_problem(game) == ""
        for m in moves:
            game._check_move(m)
            assert _core.move_from_record(m.to_record()) == m
        for m in moves[:: max(1, len(moves) // 8)]:  # resolving JSON scans the surface: a sample
            assert engine_move_key(game, move_from_json(game, move_to_json(game, m))) == engine_move_key(game, m)


# ---- every field, every wrong JSON type --------------------------------------------------

WRONG_VALUES = [None, True, False, 0, -1, 255, 2**31, 2**64, 1.5, float("inf"), float("nan"), "x", "1", [], [1],
                {}, {"x": 1}]


def set_at(value, path, new):
    value = deep_copy(value)
    if not path:
        return new
    get(value, path[:-1])[path[-1]] = new
    return value


@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_every_field_of_real_states_and_moves_with_each_wrong_json_type(board, num_players):
    """Systematic where the fuzzing above samples: each field of a few real states and moves gets
    each kind of wrong JSON value in turn."""
    positions, _ = corpus(board, num_players)
    for game, moves in positions[:: max(1, len(positions) // 2)]:
        state = game.to_json()
        state_paths = paths(state)
        for path in state_paths[:: max(1, len(state_paths) // 40)]:
            for wrong in WRONG_VALUES:
                try:
                    loaded = Game.from_json(set_at(state, path, wrong))
                except StateParseError:
                    continue
                assert Game.from_json(loaded.to_json()).hash() == loaded.hash()
        before = snapshot(game)
        for move in moves[:: max(1, len(moves) // 3)]:
            move_json = move_to_json(game, move)
            for path in paths(move_json):
                for wrong in WRONG_VALUES:
                    bad = set_at(move_json, path, wrong)
                    try:
                        move_key(bad)  # cheap: most wrong values stop here, before the surface scan
                        move_from_json(game, bad)
                    except (MoveParseError, IllegalMoveError):
                        pass
        assert snapshot(game) == before


# ---- the NPZ encoders: damaged game records ---------------------------------------------------

ENCODERS = {
    "native": lambda board, moves, off, players, **kw: _core.export.encode_games(board, moves, off, players, **kw),
    "upstream": lambda board, moves, off, players, **kw: _core.upstream.encode_games(board, moves, off, players, **kw),
}


@fuzz_settings(60)
@given(data=st.data())
def test_both_encoders_report_damaged_records_and_bad_arrays_without_crashing(data):
    """Damaged move records of real games (bytes overwritten, moves dropped or swapped, a game cut
    short) are reported per game (status != 0) or encoded, never read outside the state; arrays of
    the wrong shape or content are a ValueError."""
    import numpy as np

    board, num_players = data.draw(config)
    records = list(corpus(board, num_players)[1])
    cut = data.draw(st.integers(1, min(len(records), 120)))
    rows = bytearray(b"".join(records[:cut]))
    for _ in range(data.draw(st.integers(0, 4))):
        rows[data.draw(st.integers(0, len(rows) - 1))] = data.draw(st.integers(0, 255))
    moves = np.frombuffer(bytes(rows), np.uint8).reshape(-1, 16).copy()
    if data.draw(st.booleans()) and len(moves) > 2:
        i = data.draw(st.integers(0, len(moves) - 2))
        moves[[i, i + 1]] = moves[[i + 1, i]]
    split = data.draw(st.integers(0, len(moves)))
    offsets = np.array([0, split, len(moves)], np.int64)
    players = np.array([num_players, num_players], np.uint8)
    kw = {}
    if data.draw(st.booleans()):
        kw["verify"] = np.array([1, data.draw(st.integers(0, 1))], np.uint8)
    if data.draw(st.booleans()):
        kw["hashes"] = np.zeros(len(moves), np.uint64)
    bad = data.draw(st.sampled_from([None, None, None, "offsets", "players", "hashes", "shape"]))
    if bad == "offsets":
        offsets = np.array([0, len(moves) + data.draw(st.integers(1, 5)), len(moves)], np.int64)
    elif bad == "players":
        players = np.array([num_players, data.draw(st.sampled_from([0, 1, 5, 255]))], np.uint8)
    elif bad == "hashes":
        kw["hashes"] = np.zeros(len(moves) + 1, np.uint64)
    elif bad == "shape":
        moves = moves.reshape(-1)[: (len(moves) * 16) // 8 * 8].reshape(-1, 8)
    for name, encode in ENCODERS.items():
        try:
            out = encode(board, moves, offsets, players, **kw)
        except ValueError:
            assert bad is not None, name
            continue
        assert bad is None, (name, bad)
        assert len(out["status"]) == 2 and len(out["sample_offsets"]) == 3, name
        for g in range(2):  # a game that encoded must have replayed every one of its moves
            if out["status"][g] == 0:
                assert out["fail_step"][g] == -1, name
