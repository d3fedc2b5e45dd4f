"""Streaming the NPZ export (docs/npz_format.md) into training batches.

A data set is the files of one export: ``NAME.npz`` or ``NAME_part000.npz``, ... for training
and ``NAME_val.npz`` / ``NAME_val_part*.npz`` for validation. Only one shard is in memory at a
time, so an export larger than memory trains as well as a small one (shard it with
``ringrift-export --max-samples-per-file``).

Files in upstream's encoding (``ringrift-export --encoding upstream``, or upstream's own exporter
made pickle-free) train too (``upstream_data``): each file is read in blocks of consecutive
samples (the unit of loading instead of a shard), blocks of one file in file order, files in a
seeded order; without ``NAME_val.npz`` each file is split by game (``plan_upstream``).

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
from . import upstream_data as up
from .value_target import VALUE_TARGETS, DataError, parse_value_target  # noqa: F401 (re-exported)

#: The encodings this trainer reads (the key is the file's ``metadata["format"]``).
NATIVE_FORMAT, NATIVE_VERSION = "ringrift-npz", 2


@dataclass(frozen=True, eq=False)
class Shard:
    """A unit of loading: a whole native file, or a block [lo, hi) of an upstream-encoding file
    of which ``rows`` (file row numbers; None = all) belong to this split."""
    path: Path
    samples: int
    lo: int | None = None
    hi: int | None = None
    rows: np.ndarray | None = None


#: What upstream-encoding data (and a net trained on it) records of its encoding's version.
UPSTREAM_FACTS = ("encoder_type", "feature_version", "history_length", "policy_size", "in_channels")


@dataclass
class DataInfo:
    board: str
    players: list
    encoding: str  # "native" or "upstream"
    format_version: int | None  # native format version; None for upstream's encoding (see UPSTREAM_FACTS)
    action_space_size: int
    feature_shape: tuple  # (C, H, W)
    num_globals: int
    symmetries: int  # S of policy_indices_sym, 0 when absent
    exact_symmetries: tuple
    # upstream's encoding only (None for native data):
    encoder_type: str | None = None
    feature_version: int | None = None
    history_length: int | None = None
    policy_size: int | None = None
    in_channels: int | None = None
    export_version: str | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["feature_shape"] = list(self.feature_shape)
        d["exact_symmetries"] = list(self.exact_symmetries)
        if self.encoding != "upstream":
            for k in (*UPSTREAM_FACTS, "export_version"):
                d.pop(k)
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
            # upstream's own files hold a pickled dict here: left unread (upstream_data refuses them)
            pickled = "metadata" in d.files and _member_dtype(path, "metadata").hasobject
            meta = json.loads(str(d["metadata"])) if "metadata" in d.files and not pickled else {}
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


def _member_dtype(path: Path, key: str) -> np.dtype:
    with zipfile.ZipFile(path) as z:
        return up.member_header(z, key)[1]


def _member_shape(path: Path, key: str) -> tuple:
    """Shape of one array of an .npz without reading its data."""
    with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
        fmt = np.lib.format
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(shape)


def _describe_one(f: Path) -> tuple[DataInfo, int]:
    m = _read_meta(f)
    fmt = m.get("format")
    if fmt != NATIVE_FORMAT and up.is_upstream(m.get("_files", [])):
        try:
            u = up.read_meta(f)
        except (up.UpstreamDataError, KeyError) as exc:
            raise DataError(f"{f}: {exc}") from None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataError(f"{f}: not a readable NPZ file ({exc})") from None
        return DataInfo(board=u["board"], players=u["players"], encoding="upstream", format_version=None,
                        action_space_size=u["policy_size"], feature_shape=u["feature_shape"],
                        num_globals=u["num_globals"], symmetries=0, exact_symmetries=(),
                        **{k: u[k] for k in (*UPSTREAM_FACTS, "export_version")}), u["samples"]
    if fmt != NATIVE_FORMAT:
        raise DataError(f"{f}: neither the native NPZ format nor upstream's encoding (format {fmt!r})")
    if int(m.get("format_version", 0)) != NATIVE_VERSION:
        raise DataError(f"{f}: native format version {m.get('format_version')}, this trainer reads version "
                        f"{NATIVE_VERSION}; export again")
    return DataInfo(board=m["board"], players=sorted(int(p) for p in m.get("players", [])), encoding="native",
                    format_version=NATIVE_VERSION, action_space_size=int(m["action_space_size"]),
                    feature_shape=tuple(int(x) for x in m["_feature_shape"]), num_globals=int(m["_num_globals"]),
                    symmetries=int(m.get("_sym", 0)), exact_symmetries=tuple(m.get("exact_symmetries", []))), \
        m["_samples"]


#: Facts every file of one data set shares.
SAME_KEYS = ("encoding", "board", "action_space_size", "feature_shape", "num_globals", *UPSTREAM_FACTS)


def describe(files: list[Path], like: DataInfo | None = None, like_file: Path | None = None) \
        -> tuple[DataInfo, list[Shard]]:
    """Check that the files are one export (one encoding, board, action space, feature shape) and
    describe them; ``like``: the description they must also agree with (the training files')."""
    info, shards = None, []
    first = like_file
    for f in files:
        here, samples = _describe_one(f)
        ref = like if like is not None else info
        if ref is None:
            info, first = here, f
        else:
            for key in SAME_KEYS:
                if getattr(here, key) != getattr(ref, key):
                    raise DataError(f"{f}: {key} {getattr(here, key)!r} differs from {first}'s {getattr(ref, key)!r}")
            if info is None:
                info = here
            else:
                info.players = sorted(set(info.players) | set(here.players))
                info.symmetries = min(info.symmetries, here.symmetries)
        shards.append(Shard(f, samples))
    if info is None:
        raise DataError("no data files")
    return info, shards


def plan_upstream(info: DataInfo, shards: list[Shard], val_shards: list[Shard] | None, *, val_fraction: float,
                  split_seed: int, block_mb: float) -> tuple[list[Shard], list[Shard], str]:
    """Blocks of upstream-encoding files for training and validation, and a line saying how the
    data was split. With validation files (``NAME_val.npz``) those validate; otherwise each
    training file gives ``val_fraction`` of its games to validation (upstream_data.split_games)."""
    per = up.block_rows(info.feature_shape, block_mb)

    def blocks(shard: Shard, rows: np.ndarray | None) -> list[Shard]:
        out = []
        for lo in range(0, shard.samples, per):
            hi = min(lo + per, shard.samples)
            if rows is None:
                out.append(Shard(shard.path, hi - lo, lo, hi, None))
                continue
            sel = rows[(rows >= lo) & (rows < hi)]
            if len(sel):
                out.append(Shard(shard.path, len(sel), lo, hi, sel))
        return out

    train, val = [], []
    if val_shards is not None:
        for s in shards:
            train += blocks(s, None)
        for s in val_shards:
            val += blocks(s, None)
        return train, val, f"validation: {len(val_shards)} file(s) of the export's split"
    games = vgames = 0
    for s in shards:
        try:
            tr, va, g, vg = up.split_games(s.path, s.samples, val_fraction, split_seed)
        except up.UpstreamDataError as exc:
            raise DataError(f"{s.path}: {exc}") from None
        games += g
        vgames += vg
        train += blocks(s, tr)
        val += blocks(s, va)
    return train, val, (f"validation: no NAME_val.npz, so {val_fraction:g} of each file's games by game "
                        f"(--split-seed {split_seed}): {vgames} of {games} games, {sum(v.samples for v in val)} samples")


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
                                "(ringrift-export writes them for games played with --policy gumbel:...)")
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
    """Batches of one epoch over shards (or upstream blocks), seeded by (seed, epoch); ``start``
    skips batches. Blocks of one upstream file stay together, in file order (each file is read
    front to back once per epoch); the order of files and each unit's sample order are seeded."""

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

    def _groups(self) -> list[list[int]]:
        """Shard indices in units that stay together: one native file, or an upstream file's blocks."""
        groups: list[list[int]] = []
        for i, s in enumerate(self.shards):
            if groups and s.lo is not None and self.shards[groups[-1][-1]].path == s.path:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def epoch(self, epoch: int, start: int = 0):
        groups = self._groups()
        order = np.random.default_rng([self.seed, epoch]).permutation(len(groups)) if self.shuffle else \
            np.arange(len(groups))
        k = 0
        reader = None
        try:
            for gi in order:
                for si in groups[gi]:
                    shard = self.shards[si]
                    nb = self.batches_in(shard)
                    if k + nb <= start:  # already trained on: not even read
                        k += nb
                        continue
                    if shard.lo is None:
                        d = load_shard(shard.path, search_values=self.search_weight > 0)
                        local = np.arange(shard.samples)
                    else:
                        if reader is None or reader.path != shard.path:
                            if reader is not None:
                                reader.close()
                            reader = up.BlockReader(shard.path)
                        try:
                            d = reader.block(shard.lo, shard.hi)
                        except up.UpstreamDataError as exc:
                            raise DataError(f"{shard.path}: {exc}") from None
                        local = np.arange(shard.hi - shard.lo) if shard.rows is None else shard.rows - shard.lo
                    rng = np.random.default_rng([self.seed, epoch, int(si)])
                    rows_all = local[rng.permutation(shard.samples)] if self.shuffle else local
                    syms = self.exact[rng.integers(0, len(self.exact), shard.samples)] if self.augment else None
                    for b in range(nb):
                        if k >= start:
                            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                            yield k, make_batch(d, rows_all[sl], self.board, None if syms is None else syms[sl],
                                                self.search_weight)
                        k += 1
                    del d
        finally:
            if reader is not None:
                reader.close()
