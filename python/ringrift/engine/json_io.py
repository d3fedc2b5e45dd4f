"""Conversion between the engine's compact moves/states and the reference engine's JSON forms.

Moves are matched by content, never by ``id``/``timestamp``/``thinkTime``/``moveNumber``:
:func:`move_key` gives a canonical tuple for a Move JSON, and a JSON move is resolved to the
engine move of the current legal surface with the same key.
"""

from __future__ import annotations

from .. import _core
from .errors import IllegalMoveError, MoveParseError, StateParseError

_CONTEXTS = {0: None, 1: "line", 2: "territory", 3: "recovery"}
_MODES = {0: None, 1: "line", 2: "fallback", 3: "stack_strike"}
_NO_PAYLOAD = {
    "skip_placement", "no_placement_action", "swap_sides", "skip_capture", "no_movement_action",
    "skip_recovery", "no_line_action", "skip_territory_processing", "no_territory_action",
    "resign", "timeout",
}
_KNOWN_TYPES = set(_core.MOVE_TYPES)


# ---- positions ----------------------------------------------------------------------------

def _pos_xy(pos, where: str) -> tuple[int, int]:
    if not isinstance(pos, dict) or not isinstance(pos.get("x"), int) or not isinstance(pos.get("y"), int):
        raise MoveParseError(f"{where}: expected a position object with integer x and y, got {pos!r}")
    return pos["x"], pos["y"]


def _cell(game, pos, where: str) -> int:
    x, y = _pos_xy(pos, where)
    cell = game.cell_index(x, y)
    if cell < 0:
        raise MoveParseError(f"{where}: position {pos!r} is not on the {game.board} board")
    return cell


def _pos_json(game, cell: int) -> dict:
    x, y, z = game.cell_coords(cell)
    if game.board in ("hex8", "hexagonal"):
        return {"x": x, "y": y, "z": z}
    return {"x": x, "y": y}


def _key_cell(game, key: str, where: str) -> int:
    try:
        parts = [int(p) for p in key.split(",")]
    except (AttributeError, ValueError):
        raise StateParseError(f"{where}: malformed position key {key!r}") from None
    if len(parts) not in (2, 3):
        raise StateParseError(f"{where}: malformed position key {key!r}")
    cell = game.cell_index(parts[0], parts[1])
    if cell < 0:
        raise StateParseError(f"{where}: position {key!r} is not on the {game.board} board")
    return cell


# ---- canonical move keys ----------------------------------------------------------------

def _xy_list(positions, where: str) -> tuple:
    if not isinstance(positions, list):
        raise MoveParseError(f"{where}: expected a list of positions")
    return tuple(sorted(_pos_xy(p, where) for p in positions))


def move_key(move: dict) -> tuple:
    """Canonical content key of a reference Move JSON (bookkeeping fields ignored)."""
    if not isinstance(move, dict):
        raise MoveParseError(f"a move must be a JSON object, got {type(move).__name__}")
    mtype = move.get("type")
    if mtype not in _KNOWN_TYPES:
        raise MoveParseError(f"unknown move type {mtype!r}")
    player = move.get("player")
    if not isinstance(player, int):
        raise MoveParseError(f"{mtype}: missing or non-integer 'player'")
    if mtype in _NO_PAYLOAD:
        return (mtype, player)
    if mtype == "place_ring":
        count = move.get("placementCount", 1) or 1
        return (mtype, player, _pos_xy(move.get("to"), "place_ring.to"), int(count))
    if mtype == "move_stack":
        return (mtype, player, _pos_xy(move.get("from"), "move_stack.from"), _pos_xy(move.get("to"), "move_stack.to"))
    if mtype in ("overtaking_capture", "continue_capture_segment"):
        return (mtype, player, _pos_xy(move.get("from"), f"{mtype}.from"),
                _pos_xy(move.get("captureTarget"), f"{mtype}.captureTarget"), _pos_xy(move.get("to"), f"{mtype}.to"))
    if mtype == "recovery_slide":
        mode = move.get("recoveryMode", move.get("recovery_mode"))
        option = move.get("recoveryOption", move.get("option", move.get("recovery_option")))
        if mode != "line":
            option = None
        elif option is None:
            option = 1
        collapse = move.get("collapsePositions", move.get("collapse_positions")) or []
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
        collapsed = move.get("collapsedMarkers") or []
        return (mtype, player, line, _xy_list(collapsed, "choose_line_option.collapsedMarkers") or line)
    if mtype == "choose_territory_option":
        regions = move.get("disconnectedRegions")
        if not isinstance(regions, list) or not regions or not isinstance(regions[0], dict):
            raise MoveParseError("choose_territory_option: missing disconnectedRegions[0]")
        region = regions[0]
        return (mtype, player, _xy_list(region.get("spaces"), "choose_territory_option.spaces"),
                region.get("controllingPlayer"))
    if mtype == "eliminate_rings_from_stack":
        ctx = move.get("eliminationContext") or "territory"
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
    """Resolve a reference Move JSON to the engine move of the current surface with equal content."""
    key = move_key(move)
    mtype = key[0]
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
    """The reference Move JSON of an engine move (the state gives line and region cells)."""
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
        x, y = value.get("x"), value.get("y")
        if not isinstance(x, int) or not isinstance(y, int):
            raise StateParseError(f"{where}: malformed position {value!r}")
        cell = game.cell_index(x, y)
        if cell < 0:
            raise StateParseError(f"{where}: position {value!r} is off the board")
        return cell
    return _key_cell(game, value, where)


_BOOKKEEPING = {"no_placement_action", "no_movement_action", "no_line_action", "no_territory_action",
                "skip_placement", "skip_capture", "skip_recovery", "skip_territory_processing"}


def _history_fields(game, state: dict, phase: str, current: int, must: int, chain: int) -> dict:
    """Rule fields the reference derives from `moveHistory` (RULES.md 3.6), when it is present."""
    extras: dict = {}
    if phase == "capture" and must >= 0:
        extras["captureOrigin"] = must
    history = state.get("moveHistory")
    if not isinstance(history, list) or not history:
        return extras
    last = history[-1] if isinstance(history[-1], dict) else {}
    last_to = last.get("to")
    if phase == "capture" and "captureOrigin" not in extras and isinstance(last_to, dict):
        extras["captureOrigin"] = _opt_key_cell(game, last_to, "moveHistory[-1].to")
    if phase == "chain_capture" and chain < 0 and isinstance(last_to, dict):
        extras["chainPosition"] = _opt_key_cell(game, last_to, "moveHistory[-1].to")
    run = []
    for mv in reversed(history):  # the trailing run of the current player's moves: this turn
        if not isinstance(mv, dict) or mv.get("player") != current:
            break
        run.append(mv)
    extras["turnHadAction"] = int(any(m.get("type") not in _BOOKKEEPING for m in run))
    extras["turnUsedRecovery"] = int(any(m.get("type") == "recovery_slide" for m in run))
    extras["pendingTerritoryElimination"] = int(
        phase == "territory_processing" and last.get("type") == "choose_territory_option"
        and last.get("player") == current)
    extras["lastActor"] = int(last.get("player") or 0)
    extras["moveCount"] = len(history)
    return extras


def load_state(game, state: dict) -> None:
    """Load a reference serialized state into ``game`` (same board and player count)."""
    try:
        board = state["board"]
        players = sorted(state["players"], key=lambda p: p["playerNumber"])
        np_ = game.num_players
        if len(players) != np_:
            raise StateParseError(f"state has {len(players)} players, game has {np_}")
        hand = [int(p["ringsInHand"]) for p in players]
        elim = [int(p.get("eliminatedRings", 0)) for p in players]
        terr = [int(p.get("territorySpaces", 0)) for p in players]
        stacks = []
        for key, st in (board.get("stacks") or {}).items():
            rings = st["rings"] if isinstance(st, dict) else None
            if not isinstance(rings, list) or not all(isinstance(r, int) for r in rings):
                raise StateParseError(f"board.stacks[{key!r}]: rings must be a list of player numbers")
            stacks.append((_key_cell(game, key, "board.stacks"), rings))
        markers = []
        for key, mk in (board.get("markers") or {}).items():
            owner = mk.get("player") if isinstance(mk, dict) else mk
            if not isinstance(owner, int):
                raise StateParseError(f"board.markers[{key!r}]: missing player")
            markers.append((_key_cell(game, key, "board.markers"), owner))
        collapsed = []
        for key, owner in (board.get("collapsedSpaces") or {}).items():
            if isinstance(owner, dict):
                owner = owner.get("player")
            if not isinstance(owner, int):
                raise StateParseError(f"board.collapsedSpaces[{key!r}]: owner must be a player number")
            collapsed.append((_key_cell(game, key, "board.collapsedSpaces"), owner))
        phase = state.get("currentPhase", "ring_placement")
        current = int(state.get("currentPlayer", 1))
        status = state.get("gameStatus", "active")
        if status == "waiting":
            status = "active"
        winner = int(state.get("winner") or 0)
        must = _opt_key_cell(game, state.get("mustMoveFromStackKey"), "mustMoveFromStackKey")
        chain = _opt_key_cell(game, state.get("chainCapturePosition"), "chainCapturePosition")
        extras = _history_fields(game, state, phase, current, must, chain)
        ours = state.get("ringrift") or {}
        if not isinstance(ours, dict):
            raise StateParseError("'ringrift' must be an object")
        for key, value in ours.items():
            if key == "captureOrigin":
                extras[key] = _opt_key_cell(game, value, "ringrift.captureOrigin")
            elif key == "lps":
                if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
                    raise StateParseError("ringrift.lps must map names to integers")
                extras[key] = value
            elif isinstance(value, (int, bool)):
                extras[key] = int(value)
            else:
                raise StateParseError(f"ringrift.{key} must be an integer")
        if chain < 0 and "chainPosition" in extras:
            chain = extras.pop("chainPosition")
        extras.pop("chainPosition", None)
        threshold = int(state.get("victoryThreshold") or 0)
        terr_min = int(state.get("territoryVictoryMinimum") or state.get("territoryVictoryThreshold") or 0)
        extras.setdefault("victoryThreshold", threshold)
        extras.setdefault("territoryMinimum", terr_min)
        game._load(phase, current, status, winner, hand, elim, terr, stacks, markers, collapsed, must, chain,
                   bool(state.get("pendingLineRewardElimination", False)), extras)
    except StateParseError:
        raise
    except (KeyError, TypeError, AttributeError) as exc:
        raise StateParseError(f"malformed state: missing or ill-typed field {exc}") from None
    except ValueError as exc:
        raise StateParseError(f"invalid state: {exc}") from None


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
