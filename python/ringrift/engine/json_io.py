"""Conversion between the engine's compact moves/states and the reference engine's JSON forms.

Moves are matched by content, never by ``id``/``timestamp``/``thinkTime``/``moveNumber``:
:func:`move_key` gives a canonical tuple for a Move JSON, and a JSON move is resolved to the
engine move of the current legal surface with the same key.

The loaders accept only the JSON types the formats use (see docs/engine_api.md): integers are
JSON integers (never booleans, floats, NaN or Infinity, never strings), positions are objects
with integer ``x``/``y`` or ``"x,y"``/``"x,y,z"`` keys, and every number is bounded by what the
rules can reach. Anything else raises :class:`MoveParseError` / :class:`StateParseError`.
"""

from __future__ import annotations

import re

from .. import _core
from .errors import IllegalMoveError, MoveParseError, StateParseError

_MAX_PLAYERS = 4
# A coordinate of the largest board is within [-12, 24]; anything longer than this is off every board.
_KEY_PART = re.compile(r"-?[0-9]{1,4}")

_CONTEXTS = {0: None, 1: "line", 2: "territory", 3: "recovery"}
_MODES = {0: None, 1: "line", 2: "fallback", 3: "stack_strike"}
_NO_PAYLOAD = {
    "skip_placement", "no_placement_action", "swap_sides", "skip_capture", "no_movement_action",
    "skip_recovery", "no_line_action", "skip_territory_processing", "no_territory_action",
    "resign", "timeout",
}
_KNOWN_TYPES = set(_core.MOVE_TYPES)


def _is_int(value) -> bool:
    """A JSON integer: Python's bool is an int subclass, but JSON true/false are not numbers."""
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4,300-digit str limit: the message must not fail itself
        text = f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    return text if len(text) <= 80 else text[:77] + "..."


# ---- positions ----------------------------------------------------------------------------

def _pos_xy(pos, where: str, error=MoveParseError) -> tuple[int, int]:
    if not isinstance(pos, dict) or not _is_int(pos.get("x")) or not _is_int(pos.get("y")) or not (
            pos.get("z") is None or _is_int(pos["z"])):
        raise error(f"{where}: expected a position object with integer x and y, got {_short(pos)}")
    return pos["x"], pos["y"]


def _cell(game, pos, where: str) -> int:
    x, y = _pos_xy(pos, where)
    cell = game.cell_index(x, y)
    if cell < 0:
        raise MoveParseError(f"{where}: position {_short(pos)} is not on the {game.board} board")
    return cell


def _pos_json(game, cell: int) -> dict:
    x, y, z = game.cell_coords(cell)
    if game.board in ("hex8", "hexagonal"):
        return {"x": x, "y": y, "z": z}
    return {"x": x, "y": y}


def _key_cell(game, key: str, where: str) -> int:
    """A position key: "x,y" on square boards, "x,y,z" (z = -x-y) or "x,y" on hex boards."""
    hexboard = game.board in ("hex8", "hexagonal")
    parts = key.split(",") if isinstance(key, str) else []
    if len(parts) not in ((2, 3) if hexboard else (2,)) or not all(_KEY_PART.fullmatch(p) for p in parts):
        raise StateParseError(f"{where}: malformed position key {_short(key)}")
    x, y, *z = (int(p) for p in parts)
    if z and z[0] != -x - y:
        raise StateParseError(f"{where}: position key {_short(key)} has z != -x-y")
    cell = game.cell_index(x, y)
    if cell < 0:
        raise StateParseError(f"{where}: position {_short(key)} is not on the {game.board} board")
    return cell


# ---- canonical move keys ----------------------------------------------------------------

def _xy_list(positions, where: str) -> tuple:
    if not isinstance(positions, list):
        raise MoveParseError(f"{where}: expected a list of positions")
    return tuple(sorted(_pos_xy(p, where) for p in positions))


def _opt_str(move: dict, field: str, allowed, where: str):
    value = move.get(field)
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise MoveParseError(f"{where}.{field}: expected one of {sorted(allowed)}, got {_short(value)}")
    return value


def move_key(move: dict) -> tuple:
    """Canonical content key of a reference Move JSON (bookkeeping fields ignored).

    Raises MoveParseError for anything but a Move JSON object of a known type with its fields'
    JSON types (integer ``player`` 1..4, position objects, lists where lists go).
    """
    if not isinstance(move, dict):
        raise MoveParseError(f"a move must be a JSON object, got {type(move).__name__}")
    mtype = move.get("type")
    if not isinstance(mtype, str) or mtype not in _KNOWN_TYPES:
        raise MoveParseError(f"unknown move type {_short(mtype)}")
    player = move.get("player")
    if not _is_int(player):
        raise MoveParseError(f"{mtype}: missing or non-integer 'player' (got {_short(player)})")
    if not 1 <= player <= _MAX_PLAYERS:
        raise MoveParseError(f"{mtype}: player {player} is out of range [1, {_MAX_PLAYERS}]")
    if mtype in _NO_PAYLOAD:
        return (mtype, player)
    if mtype == "place_ring":
        count = move.get("placementCount")
        if count is None:
            count = 1
        if not _is_int(count) or not 1 <= count <= 3:
            raise MoveParseError(f"place_ring.placementCount: expected 1, 2 or 3, got {_short(count)}")
        return (mtype, player, _pos_xy(move.get("to"), "place_ring.to"), count)
    if mtype == "move_stack":
        return (mtype, player, _pos_xy(move.get("from"), "move_stack.from"), _pos_xy(move.get("to"), "move_stack.to"))
    if mtype in ("overtaking_capture", "continue_capture_segment"):
        return (mtype, player, _pos_xy(move.get("from"), f"{mtype}.from"),
                _pos_xy(move.get("captureTarget"), f"{mtype}.captureTarget"), _pos_xy(move.get("to"), f"{mtype}.to"))
    if mtype == "recovery_slide":
        mode = move.get("recoveryMode", move.get("recovery_mode"))
        if mode is not None and (not isinstance(mode, str) or mode not in ("line", "fallback", "stack_strike")):
            raise MoveParseError(f"recovery_slide.recoveryMode: expected line, fallback or stack_strike, "
                                 f"got {_short(mode)}")
        option = move.get("recoveryOption", move.get("option", move.get("recovery_option")))
        if mode != "line":
            option = None
        elif option is None:
            option = 1
        elif not _is_int(option) or option not in (1, 2):
            raise MoveParseError(f"recovery_slide.option: expected 1 or 2, got {_short(option)}")
        collapse = move.get("collapsePositions", move.get("collapse_positions"))
        if collapse is None:
            collapse = []
        return (mtype, player, _pos_xy(move.get("from"), "recovery_slide.from"),
                _pos_xy(move.get("to"), "recovery_slide.to"), mode, option,
                _xy_list(collapse, "recovery_slide.collapsePositions"))
    if mtype in ("process_line", "choose_line_option"):
        lines = move.get("formedLines")
        if not isinstance(lines, list) or not lines or not isinstance(lines[0], dict):
            raise MoveParseError(f"{mtype}: missing formedLines[0]")
        line = _xy_list(lines[0].get("positions"), f"{mtype}.formedLines[0].positions")
        if mtype == "process_line":
            return (mtype, player, line)
        collapsed = move.get("collapsedMarkers")
        if collapsed is None:
            collapsed = []
        return (mtype, player, line, _xy_list(collapsed, "choose_line_option.collapsedMarkers") or line)
    if mtype == "choose_territory_option":
        regions = move.get("disconnectedRegions")
        if not isinstance(regions, list) or not regions or not isinstance(regions[0], dict):
            raise MoveParseError("choose_territory_option: missing disconnectedRegions[0]")
        region = regions[0]
        owner = region.get("controllingPlayer")
        if owner is not None and (not _is_int(owner) or not 0 <= owner <= _MAX_PLAYERS):
            raise MoveParseError(f"choose_territory_option.controllingPlayer: expected a player number, "
                                 f"got {_short(owner)}")
        return (mtype, player, _xy_list(region.get("spaces"), "choose_territory_option.spaces"), owner)
    if mtype == "eliminate_rings_from_stack":
        ctx = _opt_str(move, "eliminationContext", ("line", "territory", "recovery"), mtype) or "territory"
        return (mtype, player, _pos_xy(move.get("to"), f"{mtype}.to"), ctx)
    if mtype == "forced_elimination":
        return (mtype, player, _pos_xy(move.get("to"), f"{mtype}.to"))
    raise MoveParseError(f"unsupported move type {mtype!r}")


def _xy(game, cell) -> tuple[int, int]:
    x, y, _ = game.cell_coords(cell)
    return (x, y)


def _engine_move_key(game, m: _core.Move) -> tuple:
    """The same canonical key, computed from an engine move without building JSON."""
    t = m.type
    if t in _NO_PAYLOAD:
        return (t, m.player)
    if t == "place_ring":
        return (t, m.player, _xy(game, m.to), m.count)
    if t == "move_stack":
        return (t, m.player, _xy(game, m.from_cell), _xy(game, m.to))
    if t in ("overtaking_capture", "continue_capture_segment"):
        return (t, m.player, _xy(game, m.from_cell), _xy(game, m.target), _xy(game, m.to))
    cells = game.move_cells(m)
    if t == "recovery_slide":
        mode = _MODES[m.context]
        collapse = ()
        if mode == "line" and m.option == 2:
            collapse = tuple(sorted(_xy(game, c) for c in cells["line"]))
        return (t, m.player, _xy(game, m.from_cell), _xy(game, m.to), mode,
                m.option if mode == "line" else None, collapse)
    if t == "process_line":
        return (t, m.player, tuple(sorted(_xy(game, c) for c in cells["line"])))
    if t == "choose_line_option":
        return (t, m.player, tuple(sorted(_xy(game, c) for c in cells["line"])),
                tuple(sorted(_xy(game, c) for c in cells["collapse"])))
    if t == "choose_territory_option":
        return (t, m.player, tuple(sorted(_xy(game, c) for c in cells["region"])), m.count)
    if t == "eliminate_rings_from_stack":
        return (t, m.player, _xy(game, m.to), _CONTEXTS[m.context])
    if t == "forced_elimination":
        return (t, m.player, _xy(game, m.to))
    raise MoveParseError(f"unsupported move type {t!r}")


def engine_move_key(game, move: _core.Move) -> tuple:
    return _engine_move_key(game, move)


def move_from_json(game, move: dict) -> _core.Move:
    """Resolve a reference Move JSON to the engine move of the current surface with equal content.

    Raises MoveParseError when the JSON is malformed (see :func:`move_key`), names a seat the game
    does not have or a position off its board, and IllegalMoveError when it is well formed but not
    on the current legal surface. The game is never changed.
    """
    key = move_key(move)
    mtype = key[0]
    if key[1] > game.num_players:
        raise MoveParseError(f"{mtype}: player {key[1]} is not a seat of this {game.num_players}-player game")
    if mtype not in _NO_PAYLOAD:
        for field in ("from", "captureTarget", "to"):
            if move.get(field) is not None:  # writers may spell an absent position as null
                _cell(game, move[field], f"{mtype}.{field}")
    if mtype in ("resign", "timeout"):
        return _core.Move(mtype, key[1])
    for m in game.legal_moves():
        if m.type == mtype and _engine_move_key(game, m) == key:
            return m
    raise IllegalMoveError(
        f"illegal move {describe_json(move)} by player {key[1]} in phase {game.phase} "
        f"(current player {game.current_player}): not in the legal-move list",
        phase=game.phase, player=game.current_player, reason="not in the legal-move list")


def describe_json(move: dict) -> str:
    parts = [str(move.get("type"))]
    for field in ("from", "captureTarget", "to"):
        if isinstance(move.get(field), dict):
            p = move[field]
            parts.append(f"{field}=({p.get('x')},{p.get('y')})")
    return " ".join(parts)


def describe_move(game, m: _core.Move) -> str:
    parts = [m.type]
    for field, cell in (("from", m.from_cell), ("captureTarget", m.target), ("to", m.to)):
        if cell is not None and 0 <= cell < game.num_cells:
            parts.append(f"{field}={game.cell_key(cell)}")
    if m.type == "place_ring":
        parts.append(f"count={m.count}")
    return " ".join(parts)


def move_to_json(game, m: _core.Move) -> dict:
    """The reference Move JSON of an engine move (the state gives line and region cells).

    Raises ValueError when the move does not fit the game's board (cells, line or window).
    """
    if not isinstance(m, _core.Move):
        raise TypeError(f"move_to_json() takes a ringrift.Move, got {type(m).__name__}")
    game._check_move(m)
    t = m.type
    out: dict = {"type": t, "player": m.player}
    if t in _NO_PAYLOAD:
        out["to"] = {"x": 0, "y": 0}
        return out
    if m.from_cell is not None:
        out["from"] = _pos_json(game, m.from_cell)
    if m.target is not None:
        out["captureTarget"] = _pos_json(game, m.target)
    if m.to is not None:
        out["to"] = _pos_json(game, m.to)
    if t == "place_ring":
        out["placementCount"] = m.count
        out["placedOnStack"] = any(c == m.to for c, _ in game.stacks())
    elif t == "recovery_slide":
        mode = _MODES[m.context]
        out["recoveryMode"] = mode
        # The stack whose buried ring pays for the slide (none for a line's option 2), as the
        # engine chooses it: recorded so that other engines need not choose again.
        out["extractionStacks"] = [game.cell_key(c) for c in game.move_cells(m)["extraction"]]
        if mode == "line":
            out["option"] = m.option  # the TS engine's field name
            out["recoveryOption"] = m.option  # upstream Python's
            if m.option == 2:
                out["collapsePositions"] = [_pos_json(game, c) for c in game.move_cells(m)["line"]]
    elif t in ("process_line", "choose_line_option"):
        cells = game.move_cells(m)
        line = [_pos_json(game, c) for c in cells["line"]]
        dx, dy, _ = (a - b for a, b in zip(game.cell_coords(cells["line"][1]), game.cell_coords(cells["line"][0])))
        out["formedLines"] = [{"positions": line, "player": m.player, "length": len(line),
                               "direction": {"x": dx, "y": dy}}]
        if t == "choose_line_option":
            out["collapsedMarkers"] = [_pos_json(game, c) for c in cells["collapse"]]
    elif t == "choose_territory_option":
        region = game.move_cells(m)["region"]
        out["disconnectedRegions"] = [{"spaces": [_pos_json(game, c) for c in region],
                                       "controllingPlayer": m.count, "isDisconnected": True}]
    elif t == "eliminate_rings_from_stack":
        out["eliminationContext"] = _CONTEXTS[m.context]
        out["eliminatedRings"] = [{"player": m.player, "count": m.count}]
    elif t == "forced_elimination":
        out["eliminatedRings"] = [{"player": m.player, "count": m.count}]
    return out


# ---- states ---------------------------------------------------------------------------------

def _opt_key_cell(game, value, where: str) -> int:
    if value is None:
        return -1
    if isinstance(value, dict):
        x, y = _pos_xy(value, where, StateParseError)
        cell = game.cell_index(x, y)
        if cell < 0:
            raise StateParseError(f"{where}: position {_short(value)} is off the board")
        return cell
    return _key_cell(game, value, where)


def _state_int(obj: dict, key: str, where: str, default=None) -> int:
    """A JSON integer field (absent or null gives the default, when there is one)."""
    value = obj.get(key)
    if value is None and default is not None:
        return default
    if not _is_int(value):
        raise StateParseError(f"{where}{key}: expected an integer, got {_short(value)}")
    return value


def _state_obj(obj: dict, key: str, where: str) -> dict:
    """A JSON object field; absent or null is an empty object."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StateParseError(f"{where}{key}: expected an object, got {type(value).__name__}")
    return value


def _owner(value, where: str) -> int:
    """A marker's or collapsed space's owner: a player number, or an object with one."""
    if isinstance(value, dict):
        value = value.get("player")
    if not _is_int(value):
        raise StateParseError(f"{where}: owner must be a player number, got {_short(value)}")
    return value


_BOOKKEEPING = {"no_placement_action", "no_movement_action", "no_line_action", "no_territory_action",
                "skip_placement", "skip_capture", "skip_recovery", "skip_territory_processing"}


def _history_fields(game, state: dict, phase: str, current: int, must: int, chain: int) -> dict:
    """Rule fields the reference derives from `moveHistory` (RULES.md 3.6), when it is present."""
    extras: dict = {}
    if phase == "capture" and must >= 0:
        extras["captureOrigin"] = must
    history = state.get("moveHistory")
    if history is None:
        return extras
    if not isinstance(history, list):
        raise StateParseError(f"moveHistory: expected a list, got {type(history).__name__}")
    if not history:
        return extras
    for i, mv in enumerate(history):
        if not isinstance(mv, dict) or not isinstance(mv.get("type"), str) or not _is_int(mv.get("player")):
            raise StateParseError(f"moveHistory[{i}]: expected a move object with a string type and an "
                                  f"integer player")
    last = history[-1]
    last_to = last.get("to")
    if phase == "capture" and "captureOrigin" not in extras and isinstance(last_to, dict):
        extras["captureOrigin"] = _opt_key_cell(game, last_to, "moveHistory[-1].to")
    if phase == "chain_capture" and chain < 0 and isinstance(last_to, dict):
        extras["chainPosition"] = _opt_key_cell(game, last_to, "moveHistory[-1].to")
    run = []
    for mv in reversed(history):  # the trailing run of the current player's moves: this turn
        if mv["player"] != current:
            break
        run.append(mv)
    extras["turnHadAction"] = int(any(m["type"] not in _BOOKKEEPING for m in run))
    extras["turnUsedRecovery"] = int(any(m["type"] == "recovery_slide" for m in run))
    extras["pendingTerritoryElimination"] = int(
        phase == "territory_processing" and last["type"] == "choose_territory_option"
        and last["player"] == current)
    extras["lastActor"] = last["player"]
    extras["moveCount"] = len(history)
    return extras


def load_state(game, state: dict) -> None:
    """Load a reference serialized state into ``game`` (same board and player count).

    Raises StateParseError (the game unchanged) when a field is missing, has another JSON type
    than the format's, or holds a value outside what the rules can reach (docs/engine_api.md).
    """
    if not isinstance(state, dict):
        raise StateParseError(f"state must be a JSON object, got {type(state).__name__}")
    try:
        board = state.get("board")
        if not isinstance(board, dict):
            raise StateParseError(f"board: expected an object, got {type(board).__name__}")
        players = state.get("players")
        if not isinstance(players, list) or not all(isinstance(p, dict) for p in players):
            raise StateParseError("players: expected a list of player objects")
        np_ = game.num_players
        if len(players) != np_:
            raise StateParseError(f"state has {len(players)} players, game has {np_}")
        numbers = [_state_int(p, "playerNumber", f"players[{i}].") for i, p in enumerate(players)]
        if sorted(numbers) != list(range(1, np_ + 1)):
            raise StateParseError(f"players: playerNumber must be 1..{np_}, each once, got {numbers}")
        players = sorted(players, key=lambda p: p["playerNumber"])
        hand = [_state_int(p, "ringsInHand", f"players[{i}].") for i, p in enumerate(players)]
        elim = [_state_int(p, "eliminatedRings", f"players[{i}].", 0) for i, p in enumerate(players)]
        terr = [_state_int(p, "territorySpaces", f"players[{i}].", 0) for i, p in enumerate(players)]
        stacks = []
        for key, st in _state_obj(board, "stacks", "board.").items():
            rings = st.get("rings") if isinstance(st, dict) else None
            if not isinstance(rings, list) or not all(_is_int(r) for r in rings):
                raise StateParseError(f"board.stacks[{_short(key)}]: rings must be a list of player numbers")
            stacks.append((_key_cell(game, key, "board.stacks"), rings))
        markers = [(_key_cell(game, key, "board.markers"), _owner(mk, f"board.markers[{_short(key)}]"))
                   for key, mk in _state_obj(board, "markers", "board.").items()]
        collapsed = [(_key_cell(game, key, "board.collapsedSpaces"), _owner(v, f"board.collapsedSpaces[{_short(key)}]"))
                     for key, v in _state_obj(board, "collapsedSpaces", "board.").items()]
        phase = state.get("currentPhase", "ring_placement")
        if not isinstance(phase, str):
            raise StateParseError(f"currentPhase: expected a string, got {_short(phase)}")
        current = _state_int(state, "currentPlayer", "", 1)
        status = state.get("gameStatus", "active")
        if not isinstance(status, str):
            raise StateParseError(f"gameStatus: expected a string, got {_short(status)}")
        if status == "waiting":
            status = "active"
        winner = _state_int(state, "winner", "", 0)
        must = _opt_key_cell(game, state.get("mustMoveFromStackKey"), "mustMoveFromStackKey")
        chain = _opt_key_cell(game, state.get("chainCapturePosition"), "chainCapturePosition")
        extras = _history_fields(game, state, phase, current, must, chain)
        ours = _state_obj(state, "ringrift", "")
        for key, value in ours.items():
            if key == "captureOrigin":
                extras[key] = _opt_key_cell(game, value, "ringrift.captureOrigin")
            elif key == "lps":
                if not isinstance(value, dict) or not all(_is_int(v) for v in value.values()):
                    raise StateParseError("ringrift.lps must map names to integers")
                extras[key] = value
            elif _is_int(value):
                extras[key] = value
            else:
                raise StateParseError(f"ringrift.{key} must be an integer, got {_short(value)}")
        if chain < 0 and "chainPosition" in extras:
            chain = extras.pop("chainPosition")
        extras.pop("chainPosition", None)
        threshold = _state_int(state, "victoryThreshold", "", 0)
        terr_min = _state_int(state, "territoryVictoryMinimum", "", 0) or _state_int(
            state, "territoryVictoryThreshold", "", 0)
        extras.setdefault("victoryThreshold", threshold)
        extras.setdefault("territoryMinimum", terr_min)
        pending_line = state.get("pendingLineRewardElimination")
        if pending_line is not None and not isinstance(pending_line, bool):
            raise StateParseError(f"pendingLineRewardElimination: expected true or false, got {_short(pending_line)}")
        game._load(phase, current, status, winner, hand, elim, terr, stacks, markers, collapsed, must, chain,
                   bool(pending_line), extras)
    except StateParseError:
        raise
    except ValueError as exc:
        raise StateParseError(f"invalid state: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:  # a safety net: the checks above should catch all
        raise StateParseError(f"malformed state: missing or ill-typed field {exc}") from None


def dump_state(game) -> dict:
    """The reference's serialized shape of the current state."""
    stacks = {}
    for cell, rings in game.stacks():
        owner = rings[0]
        cap = 0
        while cap < len(rings) and rings[cap] == owner:
            cap += 1
        stacks[game.cell_key(cell)] = {"position": _pos_json(game, cell), "rings": rings,
                                       "stackHeight": len(rings), "capHeight": cap,
                                       "controllingPlayer": owner}
    markers = {game.cell_key(c): {"position": _pos_json(game, c), "player": p, "type": "regular"}
               for c, p in game.markers()}
    collapsed = {game.cell_key(c): p for c, p in game.collapsed()}
    players = [{"playerNumber": p["player"], "ringsInHand": p["rings_in_hand"],
                "eliminatedRings": p["eliminated_rings"], "territorySpaces": p["territory_spaces"]}
               for p in game.players()]
    state = {
        "board": {"type": game.board, "stacks": stacks, "markers": markers, "collapsedSpaces": collapsed},
        "players": players,
        "currentPlayer": game.current_player,
        "currentPhase": game.phase,
        "gameStatus": game.status,
        "victoryThreshold": game.victory_threshold,
        "territoryVictoryMinimum": game.territory_minimum,
        "pendingLineRewardElimination": game.pending_line_elimination,
    }
    if game.winner is not None:
        state["winner"] = game.winner
    if game.must_move_from is not None:
        state["mustMoveFromStackKey"] = game.cell_key(game.must_move_from)
    if game.chain_capture_position is not None:
        state["chainCapturePosition"] = _pos_json(game, game.chain_capture_position)
    if game.swap_rule:
        state["rulesOptions"] = {"swapRuleEnabled": True}
    # Rule fields the reference keeps in its move history, so that a state round-trips exactly.
    extras = game._transient()
    if "captureOrigin" in extras:
        extras["captureOrigin"] = game.cell_key(extras["captureOrigin"])
    state["ringrift"] = extras
    return state
