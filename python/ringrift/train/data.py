"""Streaming the NPZ export (docs/npz_format.md) into training batches.

A data set is the files of one export: ``NAME.npz`` or ``NAME_part000.npz``, ... for training
and ``NAME_val.npz`` / ``NAME_val_part*.npz`` for validation. Only one shard is in memory at a
time, so an export larger than memory trains as well as a small one (shard it with
``ringrift-export --max-samples-per-file``).

The order of an epoch depends only on (seed, epoch): the shard order and each shard's sample
order are permutations drawn from ``default_rng([seed, epoch, ...])``, and so are the
augmentation symmetries. A run resumed at batch k of an epoch therefore sees exactly the
batches a run that never stopped would have seen; the shards before k are skipped unread.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export.symmetry import symmetries

#: The encodings this trainer reads (the key is the file's ``metadata["format"]``).
NATIVE_FORMAT, NATIVE_VERSION = "ringrift-npz", 2


class DataError(ValueError):
    """A data set that cannot be trained on; the message says which file and why."""


@dataclass(frozen=True)
class Shard:
    path: Path
    samples: int


@dataclass
class DataInfo:
    board: str
    players: list
    encoding: str  # "native"
    format_version: int
    action_space_size: int
    feature_shape: tuple  # (C, H, W)
    num_globals: int
    symmetries: int  # S of policy_indices_sym, 0 when absent
    exact_symmetries: tuple

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["feature_shape"] = list(self.feature_shape)
        d["exact_symmetries"] = list(self.exact_symmetries)
        return d


def split_files(path: str | Path) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) of the export named by ``path`` (NAME.npz; its shards
    NAME_part*.npz are found too)."""
    p = Path(path)
    if p.suffix != ".npz":
        raise DataError(f"{p}: expected the export's NAME.npz")
    stem, parent = p.stem, p.parent

    def find(name):
        single = parent / f"{name}.npz"
        parts = sorted(q for q in parent.glob(f"{name}_part*.npz") if re.fullmatch(rf"{re.escape(name)}_part\d+", q.stem))
        if single.exists():
            return [single]
        return parts

    train = find(stem)
    if not train:
        raise DataError(f"{p}: no such export (neither {p.name} nor {stem}_part*.npz in {parent})")
    return train, find(f"{stem}_val")


def _read_meta(path: Path) -> dict:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an NPZ archive")
    try:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["metadata"])) if "metadata" in d.files else {}
            n = int(d["values"].shape[0]) if "values" in d.files else -1
            meta["_files"] = list(d.files)
            meta["_samples"] = n
            if "features" in d.files:
                meta["_feature_shape"] = _member_shape(path, "features")[1:]
            if "globals" in d.files:
                meta["_num_globals"] = _member_shape(path, "globals")[1]
            if "policy_indices_sym" in d.files:
                meta["_sym"] = _member_shape(path, "policy_indices_sym")[1]
            return meta
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable NPZ file ({exc})") from None


def _member_shape(path: Path, key: str) -> tuple:
    """Shape of one array of an .npz without reading its data."""
    with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
        fmt = np.lib.format
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(shape)


def describe(files: list[Path]) -> tuple[DataInfo, list[Shard]]:
    """Check that the files are one native export of one board and describe them."""
    info, shards = None, []
    for f in files:
        m = _read_meta(f)
        fmt = m.get("format")
        if fmt != NATIVE_FORMAT:
            kind = "upstream's encoding" if "data_checksums" in m.get("_files", []) or fmt is None else repr(fmt)
            raise DataError(f"{f}: {kind} is not supported by ringrift-train (export with --encoding native)")
        if int(m.get("format_version", 0)) != NATIVE_VERSION:
            raise DataError(f"{f}: native format version {m.get('format_version')}, this trainer reads version "
                            f"{NATIVE_VERSION}; export again")
        here = DataInfo(board=m["board"], players=sorted(int(p) for p in m.get("players", [])), encoding="native",
                        format_version=NATIVE_VERSION, action_space_size=int(m["action_space_size"]),
                        feature_shape=tuple(int(x) for x in m["_feature_shape"]), num_globals=int(m["_num_globals"]),
                        symmetries=int(m.get("_sym", 0)), exact_symmetries=tuple(m.get("exact_symmetries", [])))
        if info is None:
            info = here
        else:
            for key in ("board", "action_space_size", "feature_shape", "num_globals"):
                if getattr(here, key) != getattr(info, key):
                    raise DataError(f"{f}: {key} {getattr(here, key)} differs from {files[0]}'s {getattr(info, key)}")
            info.players = sorted(set(info.players) | set(here.players))
            info.symmetries = min(info.symmetries, here.symmetries)
        shards.append(Shard(f, m["_samples"]))
    if info is None:
        raise DataError("no data files")
    return info, shards


def file_hash(path: Path) -> str:
    """BLAKE2b-128 of a file's bytes (what a checkpoint records of the data it saw)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Batch:
    features: np.ndarray  # (B, C, H, W) float32
    globals: np.ndarray  # (B, G)
    policy_rows: np.ndarray  # (E,) row in the batch of each policy entry
    policy_index: np.ndarray  # (E,) action index
    policy_weight: np.ndarray  # (E,) probability (rows sum to 1)
    top_index: np.ndarray  # (B,) the most probable action of each row (for accuracy)
    value_rel: np.ndarray  # (B, 4) outcome by slot, slot 0 = mover
    value_mask: np.ndarray  # (B, 4) 1 on slots < player count


VALUE_TARGETS = "outcome, search or mix:F with 0 <= F <= 1"


def parse_value_target(spec: str) -> float:
    """The weight F of the search's root value in the value target (docs/search.md, "Value targets"):
    ``outcome`` = 0 (the game's result only), ``search`` = 1, ``mix:F`` = F. The mover's target is
    ``(1 - F) * outcome + F * search_value``; another seat's is ``(1 - F) * its outcome + F * (-search_value
    / (players - 1))``. Samples without a search value (NaN) keep their outcome."""
    s = str(spec).strip()
    if s == "outcome":
        return 0.0
    if s == "search":
        return 1.0
    if s.startswith("mix:"):
        try:
            f = float(s[4:])
        except ValueError:
            f = float("nan")
        if 0.0 <= f <= 1.0:
            return f
    raise DataError(f"value target {spec!r}: expected {VALUE_TARGETS}")


def has_search_values(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as d:
        return "search_values" in d.files


def load_shard(path: Path, search_values: bool = False) -> dict:
    keys = ("features", "globals", "values_mp", "movers", "num_players", "policy_offsets", "policy_indices",
            "policy_values")
    with np.load(path, allow_pickle=False) as d:
        out = {k: d[k] for k in keys}
        if "policy_indices_sym" in d.files:
            out["policy_indices_sym"] = d["policy_indices_sym"]
        if search_values:
            if "search_values" not in d.files:
                raise DataError(f"{path}: no search_values for a search value target "
                                "(python -m ringrift.search.targets adds them)")
            out["search_values"] = d["search_values"]
    return out


def make_batch(d: dict, rows: np.ndarray, board: str, sym: np.ndarray | None, search_weight: float = 0.0) -> Batch:
    """Samples ``rows`` of a loaded shard, each under symmetry ``sym[j]`` (None: as stored); the value
    target mixes in the search's root value with weight ``search_weight`` (parse_value_target)."""
    x = d["features"][rows]
    off = d["policy_offsets"]
    lo, hi = off[rows], off[rows + 1]
    counts = (hi - lo).astype(np.int64)
    ent = np.repeat(lo - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
    prow = np.repeat(np.arange(len(rows)), counts)
    if sym is not None:
        pidx = d["policy_indices_sym"][ent, sym[prow]]
        tables = symmetries(board)
        b, c, h, w = x.shape
        pix = tables.pixels[sym]  # (B, H * W)
        x = np.take_along_axis(x.reshape(b, c, h * w), pix[:, None, :], axis=2).reshape(b, c, h, w)
    else:
        pidx = d["policy_indices"][ent]
    pw = d["policy_values"][ent].astype(np.float32)
    tot = np.bincount(prow, weights=pw, minlength=len(rows))
    pw = pw / np.where(tot > 0, tot, 1.0)[prow]
    # the most probable entry of each row: the first entry of the row with the row's max weight
    order = np.lexsort((-pw, prow))
    first = np.r_[0, np.cumsum(counts)[:-1]]
    top = pidx[order][first]
    n = d["num_players"][rows].astype(np.int64)
    mover = d["movers"][rows].astype(np.int64) - 1
    k = np.arange(4)[None, :]
    seat = (mover[:, None] + k) % n[:, None]
    vrel = np.take_along_axis(d["values_mp"][rows], seat, axis=1).astype(np.float32)
    vmask = (k < n[:, None]).astype(np.float32)
    if search_weight > 0:
        sv = d["search_values"][rows].astype(np.float32)
        has = np.isfinite(sv)
        # the search's value for the mover (slot 0); the others share its opposite (zero-sum)
        search = np.where(k == 0, sv[:, None], -sv[:, None] / np.maximum(n - 1, 1)[:, None])
        mixed = (1 - search_weight) * vrel + search_weight * search
        vrel = np.where(has[:, None], mixed, vrel).astype(np.float32)
    return Batch(np.ascontiguousarray(x, dtype=np.float32), d["globals"][rows].astype(np.float32), prow, pidx.astype(np.int64),
                 pw, top.astype(np.int64), vrel * vmask, vmask)


class BatchStream:
    """Batches of one epoch over shards, seeded by (seed, epoch); ``start`` skips batches."""

    def __init__(self, shards: list[Shard], board: str, batch_size: int, *, seed: int, shuffle: bool,
                 augment: bool = False, exact: tuple = (), search_weight: float = 0.0):
        self.shards, self.board, self.batch_size = shards, board, batch_size
        self.search_weight = float(search_weight)
        self.seed, self.shuffle, self.augment, self.exact = seed, shuffle, augment, np.asarray(exact, dtype=np.int64)
        if augment and not len(self.exact):
            raise DataError("augmentation needs the export's exact symmetries")

    def batches_in(self, shard: Shard) -> int:
        return -(-shard.samples // self.batch_size)

    def num_batches(self) -> int:
        return sum(self.batches_in(s) for s in self.shards)

    def epoch(self, epoch: int, start: int = 0):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)) if self.shuffle else \
            np.arange(len(self.shards))
        k = 0
        for si in order:
            shard = self.shards[si]
            nb = self.batches_in(shard)
            if k + nb <= start:  # already trained on: not even read
                k += nb
                continue
            d = load_shard(shard.path, search_values=self.search_weight > 0)
            rng = np.random.default_rng([self.seed, epoch, int(si)])
            rows_all = rng.permutation(shard.samples) if self.shuffle else np.arange(shard.samples)
            syms = self.exact[rng.integers(0, len(self.exact), shard.samples)] if self.augment else None
            for b in range(nb):
                if k >= start:
                    sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                    yield k, make_batch(d, rows_all[sl], self.board, None if syms is None else syms[sl],
                                        self.search_weight)
                k += 1
            del d
