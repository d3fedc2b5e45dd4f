"""Checkpoints: the weights, the optimizer and where training stands, with the metadata that says
which data the net reads (board, players, encoding and version, action space, feature shapes,
data hashes). A checkpoint is written under a temporary name and renamed, so a kill never leaves
a partial file; a checkpoint of another board or encoding is refused with one line."""

from __future__ import annotations

import errno
from pathlib import Path

import torch

from .. import atomic

CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "ringrift-train-checkpoint", 1
#: Metadata keys that must agree between a checkpoint and the data (or model) it is used with.
#: Upstream's encoding adds its version facts (data.UPSTREAM_FACTS); native metadata has none of them.
BASE_KEYS = ("board", "encoding", "format_version", "action_space_size", "feature_shape", "num_globals")
COMPAT_KEYS = BASE_KEYS + ("encoder_type", "feature_version", "history_length", "policy_size", "in_channels")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message is one line."""


def save(path: Path, state: dict) -> None:
    """Writes the checkpoint whole, or raises OSError naming ``path`` (the old one stays)."""
    path = Path(path)
    try:
        with atomic.replacing(path) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, tmp)
    except RuntimeError as exc:
        # torch's file writer reports a failed write() (a full disk) as a RuntimeError without the
        # errno ("unexpected pos 64 vs 0"): make it the OSError that callers report in one line
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OSError(errno.EIO, f"cannot write the checkpoint, is the disk full? (torch.save: {why})",
                      str(path)) from None


def load(path: Path) -> dict:
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ringrift-train checkpoint")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ck.get('version')}, this trainer reads {CHECKPOINT_VERSION}")
    return ck


def check_compatible(meta: dict, want: dict, what: str) -> None:
    """Refuse (one line) a checkpoint whose data layout differs from ``want`` (the data's)."""
    a, b = meta.get("encoding"), want.get("encoding")
    if a != b:  # named first: every other key differs too
        raise CheckpointError(f"{what}: a checkpoint of encoding {a!r} (board {meta.get('board')!r}), but the data "
                              f"has encoding {b!r} (board {want.get('board')!r})")
    for key in COMPAT_KEYS:
        a, b = meta.get(key), want.get(key)
        if isinstance(a, tuple):
            a = list(a)
        if isinstance(b, tuple):
            b = list(b)
        if a != b:
            raise CheckpointError(f"{what}: made for {key} {a!r}, but the data has {key} {b!r}")
