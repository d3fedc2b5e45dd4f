"""Game states in the shape of upstream's Python ``GameState`` (the replay DB's state JSON).

Upstream's ``GameReplayDB`` parses every ``initial_state_json`` and snapshot ``state_json``
with its pydantic ``GameState`` model, which differs from the TS engine's serialized state
(:func:`ringrift.engine.json_io.dump_state`) in three ways that matter:

* it requires bookkeeping fields the rules never read (``id``, ``boardType``, ``board.size``,
  per-player ``id``/``username``/``type``/``isReady``/``timeRemaining``, ``timeControl``,
  ``createdAt``, ``lastMoveAt``, ``isRated``, ``maxPlayers``, ``totalRingsInPlay``,
  ``totalRingsEliminated``, ``territoryVictoryThreshold``);
* a stack's ``rings`` run **bottom to top** (upstream's engine reads ``rings[-1]`` as the top);
  the TS engine and our ``dump_state`` list them top first;
* last-player-standing tracking lives in ``lps*`` fields and the turn's history in
  ``moveHistory``, which upstream's engine reads when it continues from a state.

Where a field has no counterpart in our games (time control, player names, AI difficulty),
the value is the one upstream's own self-play writes (``create_initial_state``): our games are
untimed, so the clock values carry no meaning.  Our exact engine fields travel under the key
``ringrift`` (ignored by upstream's parser), so our own reader restores a state exactly.
The field list is documented in ``docs/upstream.md``.
"""

from __future__ import annotations

from .. import _core
from ..engine.json_io import dump_state

#: Time control upstream's self-play states carry (``app.training.initial_state``).
TIME_CONTROL = {"initialTime": 600, "increment": 0, "type": "blitz"}
TIME_REMAINING = 600

#: Upstream's territory threshold for every player count: more than half of the board's cells.
_CELLS = {"square8": 64, "square19": 361, "hex8": 61, "hexagonal": 469}
_SIZES = {"square8": 8, "square19": 19, "hex8": 9, "hexagonal": 25}

#: Fields every upstream ``GameState`` must have (pydantic ``required``), and per player.
REQUIRED_STATE_FIELDS = (
    "id", "boardType", "board", "players", "currentPhase", "currentPlayer", "timeControl",
    "gameStatus", "createdAt", "lastMoveAt", "isRated", "maxPlayers", "totalRingsInPlay",
    "totalRingsEliminated", "victoryThreshold", "territoryVictoryThreshold",
)
REQUIRED_BOARD_FIELDS = ("type", "size")
REQUIRED_PLAYER_FIELDS = ("id", "username", "type", "playerNumber", "isReady", "timeRemaining",
                          "ringsInHand", "eliminatedRings", "territorySpaces")
REQUIRED_STACK_FIELDS = ("position", "rings", "stackHeight", "capHeight", "controllingPlayer")
REQUIRED_MARKER_FIELDS = ("player", "position", "type")
REQUIRED_TIME_CONTROL_FIELDS = ("initialTime", "increment", "type")


def territory_victory_threshold(board: str) -> int:
    """Upstream's legacy ``territoryVictoryThreshold``: floor(cells / 2) + 1, any player count."""
    return _CELLS[board] // 2 + 1


def board_size(board: str) -> int:
    """Upstream's ``board.size``: the side of the square, or the bounding width of the hexagon."""
    return _SIZES[board]


def _lps_fields(lps: dict, num_players: int) -> dict:
    def player_or_none(value: int):
        return value if 1 <= value <= num_players else None

    mask = {str(p): bool(lps["maskValue"] >> p & 1)
            for p in range(1, num_players + 1) if lps["maskSet"] >> p & 1}
    return {
        "lpsRoundIndex": lps["roundIndex"],
        "lpsCurrentRoundActorMask": mask,
        "lpsExclusivePlayerForCompletedRound": player_or_none(lps["exclusiveCompleted"]),
        "lpsCurrentRoundFirstPlayer": player_or_none(lps["firstPlayer"]),
        "lpsConsecutiveExclusiveRounds": lps["consecutiveRounds"],
        "lpsRoundsRequired": 3,
        "lpsConsecutiveExclusivePlayer": player_or_none(lps["consecutivePlayer"]),
    }


def upstream_state(game, *, game_id: str, created_at: str, last_move_at: str | None = None,
                   move_history: list[dict] | None = None) -> dict:
    """The current state of ``game`` as upstream's ``GameState`` JSON (by alias).

    ``move_history`` is the list of Move JSON documents played so far (upstream stores the
    whole history in every snapshot; its engine reads the current turn from it).
    """
    ours = dump_state(game)
    board = game.board
    stacks = {}
    for key, st in ours["board"]["stacks"].items():
        stacks[key] = {**st, "rings": list(reversed(st["rings"]))}  # bottom -> top
    eliminated = {str(p["playerNumber"]): p["eliminatedRings"] for p in ours["players"] if p["eliminatedRings"]}
    players = [{"id": f"p{p['playerNumber']}", "username": f"AI {p['playerNumber']}", "type": "ai",
                "playerNumber": p["playerNumber"], "isReady": True, "timeRemaining": TIME_REMAINING,
                "aiDifficulty": None, "ringsInHand": p["ringsInHand"],
                "eliminatedRings": p["eliminatedRings"], "territorySpaces": p["territorySpaces"]}
               for p in ours["players"]]
    extras = ours["ringrift"]
    status = ours["gameStatus"]
    state = {
        "id": game_id,
        "boardType": board,
        "rngSeed": None,
        "board": {"type": board, "size": board_size(board), "stacks": stacks,
                  "markers": ours["board"]["markers"], "collapsedSpaces": ours["board"]["collapsedSpaces"],
                  "eliminatedRings": eliminated, "formedLines": [], "territories": {}},
        "players": players,
        "currentPhase": ours["currentPhase"],
        "currentPlayer": ours["currentPlayer"],
        "moveHistory": list(move_history or []),
        "timeControl": dict(TIME_CONTROL),
        "spectators": [],
        "gameStatus": status,
        "winner": ours.get("winner"),
        "createdAt": created_at,
        "lastMoveAt": last_move_at or created_at,
        "isRated": False,
        "maxPlayers": game.num_players,
        "totalRingsInPlay": game.rings_per_player * game.num_players,
        "totalRingsEliminated": sum(p["eliminatedRings"] for p in ours["players"]),
        "victoryThreshold": ours["victoryThreshold"],
        "territoryVictoryThreshold": territory_victory_threshold(board),
        "territoryVictoryMinimum": ours["territoryVictoryMinimum"],
        "chainCaptureState": None,
        "mustMoveFromStackKey": ours.get("mustMoveFromStackKey"),
        "zobristHash": None,
        **_lps_fields(extras["lps"], game.num_players),
        "rulesOptions": ({"swapRuleEnabled": bool(game.swap_rule)} if game.num_players == 2 else None),
        "pendingLineRewardElimination": ours["pendingLineRewardElimination"],
    }
    if "chainCapturePosition" in ours:  # the TS field; upstream's chainCaptureState is not rebuilt
        state["chainCapturePosition"] = ours["chainCapturePosition"]
    state["ringrift"] = extras
    return state


def missing_fields(state: dict) -> list[str]:
    """Required upstream ``GameState`` fields absent from ``state`` (dotted paths), for checks
    that must not import upstream."""
    out = [f for f in REQUIRED_STATE_FIELDS if f not in state]
    board = state.get("board") if isinstance(state.get("board"), dict) else {}
    out += [f"board.{f}" for f in REQUIRED_BOARD_FIELDS if f not in board]
    for key, st in (board.get("stacks") or {}).items():
        out += [f"board.stacks[{key}].{f}" for f in REQUIRED_STACK_FIELDS if f not in st]
    for key, mk in (board.get("markers") or {}).items():
        out += [f"board.markers[{key}].{f}" for f in REQUIRED_MARKER_FIELDS if f not in mk]
    for i, p in enumerate(state.get("players") or []):
        out += [f"players[{i}].{f}" for f in REQUIRED_PLAYER_FIELDS if f not in p]
    tc = state.get("timeControl") if isinstance(state.get("timeControl"), dict) else {}
    out += [f"timeControl.{f}" for f in REQUIRED_TIME_CONTROL_FIELDS if "timeControl" in state and f not in tc]
    if state.get("currentPhase") not in _core.PHASES:
        out.append("currentPhase (not a known phase)")
    return out
