"""Feature planes and globals of a state, from the mover's point of view (the C++ encoder in
``csrc/export/features.h``; layout in ``docs/npz_format.md``, "Feature planes")."""

from __future__ import annotations

import numpy as np

from .. import _core

_X = _core.export

#: Planes per sample (C) and global features per sample (G); the same on every board.
NUM_PLANES: int = int(_X.NUM_PLANES)
NUM_GLOBALS: int = int(_X.NUM_GLOBALS)
PLANE_NAMES: tuple[str, ...] = tuple(_X.PLANE_NAMES)
GLOBAL_NAMES: tuple[str, ...] = tuple(_X.GLOBAL_NAMES)
#: Heights, caps and buried-ring counts are written as min(v, CLIP) / CLIP.
CLIP: float = float(_X.CLIP)


def spatial_size(board: str) -> tuple[int, int]:
    """(H, W) of the board's planes: 8x8, 9x9 (hex8), 19x19, 25x25 (hexagonal)."""
    return tuple(_X.spatial_size(board))


def cell_pixels(board: str) -> np.ndarray:
    """``row * W + col`` of every cell index (cells are (row, col) = (y + off, x + off))."""
    return np.asarray(_X.cell_pixels(board), dtype=np.int64)


def encode_state(game) -> tuple[np.ndarray, np.ndarray]:
    """``(planes (C, H, W) float32, globals (G,) float32)`` of ``game``'s current state."""
    return _X.encode_state(game)


def outcome_values(game) -> list[float]:
    """Rank-aware values of a finished game per seat (seat 1 first); zeros when unfinished."""
    return list(_X.outcome_values(game))


__all__ = ["CLIP", "GLOBAL_NAMES", "NUM_GLOBALS", "NUM_PLANES", "PLANE_NAMES", "cell_pixels", "encode_state",
           "outcome_values", "spatial_size"]
