"""Reading NPZ files in upstream's training encoding (docs/upstream_npz.md) for ``ringrift-train``.

Two sources write such files: ``ringrift-export --encoding upstream`` (pickle-free, optionally with
a ``NAME_val.npz`` split) and upstream's own exporter (the golden files of
/work/shared/upstream-golden are its output made pickle-free). Upstream's exporter writes no
shards, so one file may be larger than memory: it is read in *blocks* of consecutive samples,
each array member decompressed as a stream, front to back, once per pass (``BlockReader``).

Everything here is read with ``allow_pickle=False``. A file with upstream's pickled object arrays
(``--object-arrays``, or upstream's exporter as it is) is refused with one line saying how to get
a pickle-free file.

A file with no ``NAME_val.npz`` beside it is split by game: game boundaries come from
``move_numbers`` / ``total_game_moves`` (a new game starts where the move number does not grow
or the game length changes), and ``split_games`` picks the validation games with a seeded
permutation of the file's games (``docs/training.md``, "Upstream's encoding").
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

#: Scalar keys whose values describe the encoding; a data set's files must agree on them.
VERSION_KEYS = ("encoder_type", "feature_version", "history_length", "policy_size", "in_channels")
#: Per-sample keys the trainer reads.
SAMPLE_KEYS = ("features", "globals", "values", "values_mp", "num_players", "policy_indices",
               "policy_indices_offsets", "policy_values", "policy_values_offsets")
#: Default block size: MiB of feature planes per block in memory.
DEFAULT_BLOCK_MB = 512.0


class UpstreamDataError(ValueError):
    """Raised as data.DataError by the caller (kept separate to avoid an import cycle)."""


def is_upstream(files: list) -> bool:
    """Whether an archive's member names are those of upstream's encoding."""
    names = set(files)
    return "encoder_type" in names or "data_checksums" in names or "policy_size" in names


def member_header(z: zipfile.ZipFile, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of one array of an open .npz, without reading its data."""
    with z.open(f"{key}.npy") as f:
        fmt = np.lib.format
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
    if fortran:
        raise UpstreamDataError(f"{key} is stored in Fortran order")
    return tuple(shape), dtype


def read_meta(path: Path) -> dict:
    """The encoding facts of one upstream-encoding file; one-line UpstreamDataError otherwise."""
    with zipfile.ZipFile(path) as z:
        names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
        missing = [k for k in (*SAMPLE_KEYS, "board_type", *VERSION_KEYS) if k not in names]
        pickled = [k for k in ("policy_indices", "policy_values", "metadata") if k in names and
                   member_header(z, k)[1].hasobject]
        if pickled:
            raise UpstreamDataError(
                f"{', '.join(pickled)} are pickled object arrays (upstream's own exporter, or ringrift-export "
                f"--object-arrays); ringrift-train reads no pickles: export the games again with ringrift-export "
                f"--encoding upstream (no --object-arrays), or rewrite a file you trust pickle-free as "
                f"docs/training.md shows (\"Upstream's encoding\", pickled files)")
        if missing:
            raise UpstreamDataError(f"upstream's encoding without the keys {', '.join(missing)}")
        shapes = {k: member_header(z, k) for k in SAMPLE_KEYS}
    with np.load(path, allow_pickle=False) as d:
        meta = {"board": str(d["board_type"]), "encoder_type": str(d["encoder_type"]),
                "feature_version": int(d["feature_version"]), "history_length": int(d["history_length"]),
                "policy_size": int(d["policy_size"]), "in_channels": int(d["in_channels"]),
                "export_version": str(d["export_version"]) if "export_version" in d.files else None}
        players = np.unique(d["num_players"]).astype(int).tolist()
        if "metadata" in d.files:
            try:
                meta["metadata"] = json.loads(str(d["metadata"]))
            except ValueError:
                meta["metadata"] = None
    n = shapes["values"][0][0]
    fshape = shapes["features"][0]
    for k in SAMPLE_KEYS:
        rows = shapes[k][0][0] if shapes[k][0] else -1
        want = n + 1 if k.endswith("_offsets") else n
        if k in ("policy_indices", "policy_values"):
            continue
        if rows != want:
            raise UpstreamDataError(f"{k} has {rows} rows, expected {want} ({n} samples)")
    if len(fshape) != 4 or fshape[1] != meta["in_channels"] or fshape[2] != fshape[3]:
        raise UpstreamDataError(f"features of shape {fshape} do not fit in_channels {meta['in_channels']}")
    if shapes["globals"][0][1:] != (20,) or shapes["values_mp"][0][1:] != (4,):
        raise UpstreamDataError(f"globals {shapes['globals'][0]} / values_mp {shapes['values_mp'][0]}: expected "
                                f"(N, 20) / (N, 4)")
    meta.update(samples=int(n), feature_shape=tuple(int(x) for x in fshape[1:]), num_globals=20, players=players)
    return meta


class _Member:
    """One array member of an .npz read front to back: ``rows(lo, hi)`` returns rows [lo, hi),
    decompressing forward only (a request behind the current position reopens the member)."""

    def __init__(self, z: zipfile.ZipFile, key: str):
        self.z, self.key = z, key
        self._open()

    def _open(self):
        self.f = self.z.open(f"{self.key}.npy")
        fmt = np.lib.format
        major, _ = fmt.read_magic(self.f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        self.shape, _, self.dtype = read(self.f)
        self.row_shape = tuple(self.shape[1:])
        self.row_bytes = int(self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))
        self.pos = 0

    def rows(self, lo: int, hi: int) -> np.ndarray:
        if lo < self.pos:
            self.f.close()
            self._open()
        skip = (lo - self.pos) * self.row_bytes
        while skip > 0:
            got = len(self.f.read(min(skip, 1 << 24)))
            if not got:
                raise UpstreamDataError(f"{self.key}: the file ends early")
            skip -= got
        want = (hi - lo) * self.row_bytes
        buf = bytearray(want)
        view, at = memoryview(buf), 0
        while at < want:
            got = self.f.readinto(view[at:])
            if not got:
                raise UpstreamDataError(f"{self.key}: the file ends early")
            at += got
        self.pos = hi
        return np.frombuffer(buf, dtype=self.dtype).reshape((hi - lo, *self.row_shape))

    def close(self):
        self.f.close()


class BlockReader:
    """Blocks of samples of one upstream-encoding file, as the dict ``data.make_batch`` takes
    (rows relative to the block): ``features``, ``globals``, ``values_mp`` by seat, ``movers``,
    ``num_players``, ``policy_offsets`` / ``policy_indices`` / ``policy_values``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.z = zipfile.ZipFile(self.path)
        self.m = {k: _Member(self.z, k) for k in SAMPLE_KEYS}

    def block(self, lo: int, hi: int) -> dict:
        m = self.m
        off = m["policy_indices_offsets"].rows(lo, hi + 1).astype(np.int64)
        voff = m["policy_values_offsets"].rows(lo, hi + 1).astype(np.int64)
        if not np.array_equal(off, voff):
            raise UpstreamDataError(f"{self.path}: policy_indices_offsets and policy_values_offsets differ "
                                    f"in samples {lo}..{hi - 1}")
        if (np.diff(off) < 0).any():
            raise UpstreamDataError(f"{self.path}: policy_indices_offsets decrease in samples {lo}..{hi - 1}")
        values = m["values"].rows(lo, hi).astype(np.float32)
        vmp = m["values_mp"].rows(lo, hi).astype(np.float32)
        n = m["num_players"].rows(lo, hi).astype(np.int64)
        movers, by_seat = value_targets(values, vmp, n)
        return {"features": m["features"].rows(lo, hi), "globals": m["globals"].rows(lo, hi),
                "values_mp": by_seat, "movers": movers, "num_players": n,
                "policy_offsets": off - off[0],
                "policy_indices": m["policy_indices"].rows(int(off[0]), int(off[-1])).astype(np.int64),
                "policy_values": m["policy_values"].rows(int(off[0]), int(off[-1])).astype(np.float32)}

    def close(self):
        for mem in self.m.values():
            mem.close()
        self.z.close()


def value_targets(values: np.ndarray, values_mp: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mover seat 1..4, outcome by absolute seat) as native training reads them.

    Upstream's files have no mover column. 2 players: the target is upstream's ``values`` (the
    winner's +1 / -1 from the mover's side) and its opposite for the other seat; the mover is
    written as seat 1, which is all make_batch needs (it rotates to mover-relative slots).
    3-4 players: ``values_mp`` (upstream's rank values by seat), with the mover found as the seat
    whose rank value equals ``values`` (ranks are distinct, so one seat matches; the first of
    several, if a file had ties)."""
    rows = len(values)
    movers = np.ones(rows, dtype=np.int64)
    by_seat = np.zeros((rows, 4), dtype=np.float32)
    two = n <= 2
    by_seat[two, 0] = values[two]
    by_seat[two, 1] = -values[two]
    multi = ~two
    if multi.any():
        seats = np.arange(4)[None, :]
        match = (values_mp[multi] == values[multi, None]) & (seats < n[multi, None])
        found = match.any(axis=1)
        if not found.all():
            bad = int(np.flatnonzero(multi)[np.flatnonzero(~found)[0]])
            raise UpstreamDataError(f"sample {bad}: values {values[bad]} matches no seat of values_mp "
                                    f"{values_mp[bad].tolist()} (cannot tell the mover)")
        movers[multi] = match.argmax(axis=1) + 1
        by_seat[multi] = values_mp[multi]
    return movers, by_seat


def game_starts(move_numbers: np.ndarray, total_game_moves: np.ndarray) -> np.ndarray:
    """First sample of each game in an upstream file (samples of a game are consecutive and their
    move numbers grow; a new game starts where they do not, or where the game length changes)."""
    mn = move_numbers.astype(np.int64)
    tg = total_game_moves.astype(np.int64)
    if not len(mn):
        return np.zeros(0, dtype=np.int64)
    new = np.r_[True, (mn[1:] <= mn[:-1]) | (tg[1:] != tg[:-1])]
    return np.flatnonzero(new)


def split_games(path: Path, samples: int, val_fraction: float, seed: int) \
        -> tuple[np.ndarray, np.ndarray, int, int]:
    """(training rows, validation rows, games, validation games) of one file: ``round(val_fraction * games)`` games
    (at least one when the file has two or more) chosen by ``default_rng([seed, games])``."""
    with np.load(path, allow_pickle=False) as d:
        if "move_numbers" not in d.files or "total_game_moves" not in d.files:
            raise UpstreamDataError("no move_numbers / total_game_moves to split by game; give a NAME_val.npz")
        starts = game_starts(d["move_numbers"], d["total_game_moves"])
    games = len(starts)
    k = 0
    if games >= 2 and val_fraction > 0:
        k = min(games - 1, max(1, int(round(val_fraction * games))))
    val_games = np.zeros(games, dtype=bool)
    val_games[np.random.default_rng([int(seed), games]).permutation(games)[:k]] = True
    lengths = np.diff(np.r_[starts, samples])
    is_val = np.repeat(val_games, lengths)
    rows = np.arange(samples, dtype=np.int64)
    return rows[~is_val], rows[is_val], games, k


def block_rows(feature_shape: tuple, block_mb: float) -> int:
    """Samples per block so that a block's feature planes take about ``block_mb`` MiB."""
    per = 4 * int(np.prod(feature_shape))
    return max(1, int(block_mb * (1 << 20) / per))
