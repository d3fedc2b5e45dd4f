"""The fixed action-index space of each board (``docs/npz_format.md``, "Action index space").

One block per move type, in ``ringrift._core.MOVE_TYPES`` order. Inside a block the index is
computed from the move's payload alone, so :func:`encode_action` needs no game state.
:func:`decode_action` needs the state: it returns the legal move of that state with the index
(the state supplies what the index leaves implicit: a capture's target, a line's length, an
elimination's context, ...).
"""

from __future__ import annotations

import bisect
from functools import lru_cache

import numpy as np

from .. import BOARDS, _core

_X = _core.export
MOVE_TYPES: tuple[str, ...] = tuple(_core.MOVE_TYPES)


def _board_name(board) -> str:
    name = board if isinstance(board, str) else getattr(board, "board", None)
    if name not in BOARDS:
        raise ValueError(f"unknown board {board!r} (expected one of {', '.join(BOARDS)})")
    return name


@lru_cache(maxsize=None)
def action_space(board) -> dict:
    """The layout of a board's action space: ``size``, the dimensions (``cells``, ``dirs``,
    ``axes``, ``dist``, ``wslots``, ``territory_passes``, ``line_axes``) and ``blocks``, a dict
    ``move type -> (first index, block size)`` in index order."""
    name = _board_name(board)
    raw = dict(_X.action_space(name))
    offsets = list(raw.pop("offsets"))
    sizes = list(raw.pop("blocks"))
    raw["blocks"] = {t: (offsets[i], sizes[i]) for i, t in enumerate(MOVE_TYPES)}
    raw["offsets"] = tuple(offsets)
    raw["line_axes"] = tuple(raw["line_axes"])
    return raw


def action_space_size(board) -> int:
    """Number of action indices of the board (the policy vector length)."""
    return action_space(board)["size"]


def encode_action(board, *args) -> int:
    """Structural action index of ``move`` on ``board``: ``encode_action(board, move)``.

    ``encode_action(board, num_players, move)`` is accepted too; the index space is the same
    for 2, 3 and 4 players. ``board`` is a board name or a Game. Raises ValueError when the
    move's cells do not fit the board.
    """
    if len(args) == 1:
        move = args[0]
    elif len(args) == 2:
        num_players, move = args
        if num_players is not None and num_players not in (2, 3, 4):
            raise ValueError(f"num_players must be 2, 3 or 4, got {num_players!r}")
    else:
        raise TypeError("encode_action(board, move) or encode_action(board, num_players, move)")
    if not isinstance(move, _core.Move):
        raise TypeError(f"encode_action takes a ringrift.Move, got {type(move).__name__}")
    return int(_X.action_index(_board_name(board), move))


def canonical_action(game, move) -> int:
    """Index of ``move`` in ``game``'s state with equivalent legal moves merged: a territory
    region listed by several flood-fill passes maps to its lowest-pass copy, and an exact-length
    ``process_line`` maps to the collapse-all ``choose_line_option`` of the same line. These
    are the indices the exporter writes."""
    return int(_X.canonical_action_index(game, move))


def legal_action_indices(game, canonical: bool = True) -> np.ndarray:
    """int32 indices of ``game.legal_moves()``, in that order (canonical by default)."""
    return _X.legal_action_indices(game, canonical)


def decode_action(game, index: int):
    """The legal move of ``game``'s current state with action index ``index`` (structural or
    canonical). Raises ValueError when no legal move has that index."""
    return _X.decode_action(game, int(index))


@lru_cache(maxsize=None)
def _geometry(board: str):
    return _core.Game(board, 2, False)


def describe_action(board, index: int) -> dict:
    """What an index means without a state: ``{"type": ..., field: value, ...}``.

    Fields: ``cell`` (place_ring, eliminations), ``count``; ``from``, ``dir``, ``distance``,
    ``to`` (moves and captures; ``to`` is None when the ray leaves the board);
    ``option_slot`` (recovery: 0 = option 1 / fallback / stack strike, 1 = option 2);
    ``line_start``, ``line_dir``, ``window`` (None = collapse all); ``seed``, ``pass``
    (territory).
    """
    sp = action_space(board)
    index = int(index)
    if not 0 <= index < sp["size"]:
        raise ValueError(f"action index {index} out of range [0, {sp['size']})")
    t = bisect.bisect_right(sp["offsets"], index) - 1
    mtype = MOVE_TYPES[t]
    r = index - sp["offsets"][t]
    D, L, A, W = sp["dirs"], sp["dist"], sp["axes"], sp["wslots"]
    out: dict = {"type": mtype}
    geo = _geometry(_board_name(board))
    if mtype == "place_ring":
        out.update(cell=r // 3, count=r % 3 + 1)
    elif mtype in ("move_stack", "overtaking_capture", "continue_capture_segment"):
        frm, d, k = r // (D * L), (r // L) % D, r % L + 1
        c = frm
        for _ in range(k):
            c = geo.neighbour(c, d)
            if c < 0:
                break
        out.update({"from": frm, "dir": d, "distance": k, "to": c if c >= 0 else None})
    elif mtype == "recovery_slide":
        frm, d = r // (D * 2), (r // 2) % D
        to = geo.neighbour(frm, d)
        out.update({"from": frm, "dir": d, "to": to if to >= 0 else None, "option_slot": r % 2})
    elif mtype == "process_line":
        out.update(line_start=r // A, line_dir=sp["line_axes"][r % A])
    elif mtype == "choose_line_option":
        line, slot = r // W, r % W
        out.update(line_start=line // A, line_dir=sp["line_axes"][line % A], window=None if slot == 0 else slot - 1)
    elif mtype == "choose_territory_option":
        P = sp["territory_passes"]
        out.update({"seed": r // P, "pass": r % P})
    elif mtype in ("eliminate_rings_from_stack", "forced_elimination"):
        out.update(cell=r)
    return out


__all__ = [
    "MOVE_TYPES",
    "action_space",
    "action_space_size",
    "canonical_action",
    "decode_action",
    "describe_action",
    "encode_action",
    "legal_action_indices",
]
