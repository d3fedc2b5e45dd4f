"""Board symmetries for training-data augmentation (``docs/npz_format.md``, "Symmetries").

A square board has 8 symmetries (rotations and mirrors, D4), a hex board 12 (D6). Symmetry 0
is the identity. Under a symmetry the feature planes are a fixed permutation of pixels and the
globals do not change, but a policy index cannot always be mapped without the position (a line
index leaves the line's length implicit, and a territory index names its region by a seed cell),
so ``ringrift-export --symmetries`` stores every sample's index under each symmetry
(``policy_indices_sym``), computed in C++ from the position.

*Exact* symmetries also preserve every adjacency of the rules, so the whole game maps onto
itself: square boards and hexagonal all of them; hex8 only 0, 3, 6 and 9, because its
territory borders use the square's eight (x, y) steps. Augment with the exact ones unless you
mean otherwise.

    sym = symmetries("square8")
    x, pi = augment(features, policy_indices_sym, "square8", rng.choice(sym.exact, size=len(features)))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _core


@dataclass(frozen=True)
class BoardSymmetries:
    board: str
    n: int                 # number of symmetries (8 or 12); 0 is the identity
    exact: tuple           # the symmetries under which the rules map onto themselves
    cells: np.ndarray      # (n, cells) int16: image of each cell index
    dirs: np.ndarray       # (n, dirs) uint8: image of each movement direction
    pixels: np.ndarray     # (n, H * W) int64: image_plane.flat[j] = plane.flat[pixels[t, j]]


@lru_cache(maxsize=None)
def symmetries(board: str) -> BoardSymmetries:
    d = _core.export.symmetries(board)
    for key in ("cells", "dirs", "pixels"):
        d[key].setflags(write=False)
    return BoardSymmetries(board=board, n=int(d["n"]), exact=tuple(d["exact"]), cells=d["cells"], dirs=d["dirs"],
                           pixels=d["pixels"])


def _check(sym: BoardSymmetries, t) -> None:
    ts = np.asarray(t)
    if ts.size and (ts.min() < 0 or ts.max() >= sym.n):
        raise ValueError(f"symmetry out of range: {sym.board} has {sym.n} (0 .. {sym.n - 1})")


def _xp(x):
    """numpy, or cupy for an array on the GPU (so the data stays there)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__cuda_array_interface__"):
        return np
    import cupy

    return cupy


def transform_planes(planes, board: str, t: int):
    """Planes (..., H, W) of a position -> the planes of its image under symmetry ``t``."""
    sym = symmetries(board)
    _check(sym, t)
    shape = planes.shape
    flat = planes.reshape(*shape[:-2], shape[-2] * shape[-1])
    return flat[..., _xp(planes).asarray(sym.pixels[int(t)])].reshape(shape)


def augment(features, policy_sym, board: str, t):
    """A batch under symmetries: ``features`` (B, C, H, W), ``policy_sym`` (B, S) from the export's
    ``policy_indices_sym``, ``t`` one symmetry or one per sample. Returns (features, policy
    indices (B,)) of the images; globals and values do not change."""
    sym = symmetries(board)
    _check(sym, t)
    B, C, H, W = features.shape
    ts = np.broadcast_to(np.asarray(t, dtype=np.int64), (B,))
    xp = _xp(features)
    idx = xp.asarray(sym.pixels[ts])  # (B, H * W)
    out = xp.take_along_axis(features.reshape(B, C, H * W), idx[:, None, :], axis=2).reshape(B, C, H, W)
    px = _xp(policy_sym)
    return out, policy_sym[px.arange(B), px.asarray(ts)]


def transform_game(game, t: int):
    """A new game holding the position of ``game`` under symmetry ``t``."""
    out = game.clone()
    _core.export.transform_into(game, out, int(t))
    return out


def symmetric_action(game, move, t: int) -> int:
    """The canonical action index, in ``transform_game(game, t)``, of the image of legal ``move``."""
    return int(_core.export.symmetric_action_index(game, move, int(t)))


__all__ = ["BoardSymmetries", "augment", "symmetric_action", "symmetries", "transform_game", "transform_planes"]
