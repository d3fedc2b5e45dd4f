"""Streaming ``.npz`` writer: bounded memory, optional sharding, atomic publication.

An ``.npz`` file is a zip archive of ``.npy`` members. Rows are appended chunk by chunk; each
column streams into its own temporary file, already deflated when compression is on (pieces of
at most 4 MiB compressed independently, each ended by a sync flush, so they concatenate into one
valid deflate stream), with its CRC-32 combined from the pieces'. When a shard is full
(``max_rows``) or at the end, the archive is assembled from those files: per member a local
header, the ``.npy`` header (whose shape is only known now; its CRC is combined with the
data's) and the column's bytes. The central directory is written last, after the small
per-archive arrays. ``np.load(path, allow_pickle=False)`` reads the result; nothing is pickled.

With ``threads`` > 1 the pieces are deflated on a thread pool (the deflate libraries release
the GIL) and :meth:`ShardedNpzWriter.append` returns once the *previous* chunk is written, so
the caller encodes the next chunk while this one is compressed; pieces are always written in
order, so the bytes are the same for any number of threads. The deflate library is
``ringrift.export.deflate``'s choice (ISA-L when installed).

Memory stays at two chunks plus copy buffers; the temporary files hold the compressed columns.
Everything is built in a temporary directory beside the final files, and the caller renames
the archives into place only when all of them are complete (:func:`publish`), so a failure
never leaves a partial file under a final name.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..engine.errors import RingRiftError
from . import deflate as _deflate
from .deflate import crc32_concat

_PIECE = 4 << 20       # bytes per independently deflated piece
_COPY_BLOCK = 8 << 20


def npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a header over 64 KiB: cannot happen for these shapes
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


# ---- a minimal zip64 writer ---------------------------------------------------------------------

def _dos_time() -> tuple[int, int]:
    t = time.localtime()
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            (max(t.tm_year - 1980, 0) << 9) | (t.tm_mon << 5) | t.tm_mday)


class _Zip:
    """Writes members whose CRC and sizes are known up front; every entry carries zip64 sizes.
    :meth:`finish` writes the central directory."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, "wb")
        self.entries: list[tuple] = []
        self.time, self.date = _dos_time()

    def begin(self, name: str, method: int, crc: int, usize: int, csize: int) -> None:
        raw = name.encode()
        offset = self.fh.tell()
        extra = struct.pack("<HHQQ", 1, 16, usize, csize)
        self.fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, self.time, self.date, crc,
                                  0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra)) + raw + extra)
        self.entries.append((raw, method, crc, usize, csize, offset))

    def suspend(self) -> None:
        """Close the file between shards (no open handle per finished shard)."""
        self.fh.close()

    def resume(self) -> None:
        self.fh = open(self.path, "r+b")
        self.fh.seek(0, os.SEEK_END)

    def add_bytes(self, name: str, data: bytes, lib: "_deflate.Deflate | None") -> None:
        """One member from bytes in memory: deflated with ``lib``, stored when it is None."""
        payload = lib.whole(data) if lib is not None else data
        self.begin(name, 8 if lib is not None else 0, zlib.crc32(data), len(data), len(payload))
        self.fh.write(payload)

    def finish(self) -> None:
        start = self.fh.tell()
        for raw, method, crc, usize, csize, offset in self.entries:
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
            self.fh.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, self.time, self.date,
                                      crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0o644 << 16,
                                      0xFFFFFFFF) + raw + extra)
        end = self.fh.tell()
        n = len(self.entries)
        self.fh.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, end - start, start))
        self.fh.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        self.fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                  min(end - start, 0xFFFFFFFF), min(start, 0xFFFFFFFF), 0))
        self.fh.close()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


def write_npy_member(zf: _Zip, name: str, arr, lib: "_deflate.Deflate | None", allow_pickle: bool = False) -> None:
    """Add one small array as ``name.npy``, deflated with ``lib`` (stored when None); never
    pickled unless ``allow_pickle``: object arrays that only an explicit opt-in such as
    ``ringrift-export --object-arrays`` asks for."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=allow_pickle)
    zf.add_bytes(name + ".npy", buf.getvalue(), lib)


# ---- columns and shards ------------------------------------------------------------------------------

class _Column:
    """One column of one shard: its bytes (deflated or not) in a temporary file. Pieces being
    deflated on the pool wait in ``pending`` (future, uncompressed length) and are written in
    order by :meth:`drain`."""

    def __init__(self, path: Path, dtype, tail: tuple, lib, crc_lib, pool):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.tail = tuple(tail)
        self.lib = lib            # Deflate, or None: stored
        self.crc_lib = crc_lib    # the CRC-32 functions (the deflate library's: faster than zlib's)
        self.pool = pool
        self.rows = 0
        self.crc = 0
        self.usize = 0
        self.pending: deque = deque()
        self.fh = open(path, "wb")

    def append(self, arr: np.ndarray) -> int:
        """Queue (or write) ``arr``'s rows; returns the number of pieces left pending."""
        arr = np.asarray(arr)
        if arr.dtype != self.dtype or arr.shape[1:] != self.tail:
            raise ValueError(f"{self.path.name}: got {arr.dtype}{arr.shape[1:]}, expected {self.dtype}{self.tail}")
        self.rows += arr.shape[0]
        if not arr.size:
            return 0
        buf = memoryview(np.ascontiguousarray(arr)).cast("B")  # the view keeps the array alive while pending
        if self.lib is None:
            self.fh.write(buf)
            self._add_crc(self.crc_lib.crc32(buf), len(buf))
            return 0
        pieces = [buf[i:i + _PIECE] for i in range(0, len(buf), _PIECE)]
        if self.pool is None:
            for p in pieces:
                data, crc = self.lib.piece_with_crc(p)
                self.fh.write(data)
                self._add_crc(crc, len(p))
            return 0
        for p in pieces:
            self.pending.append((self.pool.submit(self.lib.piece_with_crc, p), len(p)))
        return len(pieces)

    def _add_crc(self, crc: int, n: int) -> None:
        self.crc = self.crc_lib.crc32_combine(self.crc, crc, n) if self.usize else crc
        self.usize += n

    def drain(self, keep: int = 0) -> None:
        """Write the finished pieces in order until ``keep`` remain pending."""
        while len(self.pending) > keep:
            future, n = self.pending[0]
            data, crc = future.result()
            self.pending.popleft()
            self.fh.write(data)
            self._add_crc(crc, n)

    def write_member(self, zf: _Zip, name: str) -> None:
        self.drain()
        self.fh.close()
        header = npy_header(self.dtype, (self.rows,) + self.tail)
        crc = self.crc_lib.crc32_combine(zlib.crc32(header), self.crc, self.usize) if self.usize else zlib.crc32(header)
        stored = self.path.stat().st_size
        if self.lib is not None:
            head = self.lib.piece(header)
            zf.begin(name, 8, crc, len(header) + self.usize, len(head) + stored + len(_deflate.END))
        else:
            head = header
            zf.begin(name, 0, crc, len(header) + self.usize, len(header) + stored)
        zf.fh.write(head)
        with open(self.path, "rb") as src:
            shutil.copyfileobj(src, zf.fh, _COPY_BLOCK)
        if self.lib is not None:
            zf.fh.write(_deflate.END)
        os.unlink(self.path)

    def discard(self) -> None:
        for future, _ in self.pending:
            future.cancel()
        self.pending.clear()
        if not self.fh.closed:
            self.fh.close()


class ShardedNpzWriter:
    """Append rows of fixed columns; produce one or more ``.npz`` archives in ``tmpdir``.

    ``schema`` maps each column to ``(dtype, trailing shape)``. ``max_rows`` (None = no limit)
    caps the rows per archive. ``threads`` > 1 deflates pieces on that many threads, overlapped
    with the caller: the arrays given to :meth:`append` must stay unchanged until the next
    :meth:`append` (or :meth:`finish`) returns. ``deflate`` is a ``ringrift.export.deflate``
    library (default: its choice). :meth:`finish` adds the small per-archive arrays and
    returns the archives with their row counts.
    """

    def __init__(self, tmpdir: Path, tag: str, schema: dict, *, max_rows: int | None = None,
                 compress: bool = True, threads: int = 1, pickle_extras: bool = False, deflate=None,
                 ragged: dict | None = None, offsets_key="policy_offsets"):
        self.tmpdir = Path(tmpdir)
        self.tag = tag
        self.schema = {k: (np.dtype(d), tuple(t)) for k, (d, t) in schema.items()}
        # Ragged columns: a variable number of entries per row, flat, plus the int64 column
        # ``offsets_key`` (rows + 1 per archive, starting at 0) that says which are whose; a
        # tuple of names writes the same offsets under each.
        self.ragged = {k: (np.dtype(d), tuple(t)) for k, (d, t) in (ragged or {}).items()}
        self.offsets_keys = (offsets_key,) if isinstance(offsets_key, str) else tuple(offsets_key)
        self._entries = 0  # entries of the open shard's ragged columns
        self.max_rows = max_rows
        self.compress = bool(compress)
        self.pickle_extras = bool(pickle_extras)  # object arrays among the extras (opt-in)
        self.lib = (deflate or _deflate.choose()) if self.compress else None
        self.crc_lib = self.lib or _crc_library()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="npz-deflate") \
            if self.compress and threads > 1 else None
        self.shards: list[tuple[_Zip, int]] = []
        self._cols: dict[str, _Column] | None = None
        self._rows = 0
        self.total_rows = 0

    def _open_shard(self) -> None:
        k = len(self.shards)
        layout = dict(self.schema)
        if self.ragged:
            layout.update(self.ragged)
            for key in self.offsets_keys:
                layout[key] = (np.dtype(np.int64), ())
        self._cols = {key: _Column(self.tmpdir / f"{self.tag}.{k:05d}.{key}.part", d, t, self.lib, self.crc_lib,
                                   self.pool)
                      for key, (d, t) in layout.items()}
        self._rows = 0
        self._entries = 0
        if self.ragged:
            for key in self.offsets_keys:
                self._cols[key].append(np.zeros(1, dtype=np.int64))

    def append(self, columns: dict, counts=None, flat: dict | None = None) -> None:
        """Append rows: ``columns`` per row; with ragged columns also ``counts`` (entries per
        row) and ``flat`` (each ragged column's entries of these rows, in row order)."""
        if set(columns) != set(self.schema):
            raise ValueError(f"columns {sorted(columns)} differ from the schema {sorted(self.schema)}")
        lengths = {np.asarray(a).shape[0] for a in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths {sorted(lengths)}")
        n = lengths.pop()
        flat = flat or {}
        if set(flat) != set(self.ragged):
            raise ValueError(f"ragged columns {sorted(flat)} differ from the schema {sorted(self.ragged)}")
        if self.ragged:
            counts = np.asarray(counts, dtype=np.int64)
            if counts.shape != (n,) or (n and counts.min() < 0):
                raise ValueError(f"counts must be {n} entry counts >= 0")
            cum = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(counts, out=cum[1:])
            for key, arr in flat.items():
                if np.asarray(arr).shape[0] != cum[-1]:
                    raise ValueError(f"{key}: {np.asarray(arr).shape[0]} entries, the counts say {cum[-1]}")
        start = 0
        fresh: dict = {}
        while start < n:
            if self._cols is None:
                self._open_shard()
                fresh = {}
            room = (self.max_rows - self._rows) if self.max_rows else n - start
            take = min(room, n - start)
            for key, arr in columns.items():
                fresh[key] = fresh.get(key, 0) + self._cols[key].append(arr[start:start + take])
            if self.ragged:
                a, b = int(cum[start]), int(cum[start + take])
                for key, arr in flat.items():
                    fresh[key] = fresh.get(key, 0) + self._cols[key].append(arr[a:b])
                offs = cum[start + 1:start + take + 1] - a + self._entries
                for key in self.offsets_keys:
                    fresh[key] = fresh.get(key, 0) + self._cols[key].append(offs)
                self._entries += b - a
            self._rows += take
            self.total_rows += take
            start += take
            if self.max_rows and self._rows >= self.max_rows:
                self._close_shard()
        if self._cols is not None:  # the previous chunk's pieces are written; this chunk's go on
            for key, col in self._cols.items():
                col.drain(keep=fresh.get(key, 0))

    def drain(self) -> None:
        """Write every pending piece: after this the arrays of earlier appends are free to change."""
        if self._cols is not None:
            for col in self._cols.values():
                col.drain()

    def _close_shard(self) -> None:
        zf = _Zip(self.tmpdir / f"{self.tag}.{len(self.shards):05d}.npz")
        try:
            for key, col in self._cols.items():
                col.write_member(zf, key + ".npy")
        except BaseException:
            zf.close()
            raise
        zf.suspend()  # finish() adds the small arrays and the central directory
        self.shards.append((zf, self._rows))
        self._cols = None
        self._rows = 0

    def finish(self, extras) -> list[tuple[Path, int]]:
        """Close the last shard (an empty archive when nothing was appended), add the arrays of
        ``extras(part, num_parts, rows) -> {name: array}`` to each archive and close them."""
        if self._cols is None and not self.shards:
            self._open_shard()
        if self._cols is not None:
            if self._rows > 0 or not self.shards:
                self._close_shard()
            else:  # an opened but empty trailing shard
                self.abort_columns()
        num = len(self.shards)
        out = []
        for part, (zf, rows) in enumerate(self.shards):
            zf.resume()
            for name, arr in extras(part, num, rows).items():
                write_npy_member(zf, name, arr, self.lib, allow_pickle=self.pickle_extras)
            zf.finish()
            out.append((zf.path, rows))
        self._shutdown()
        return out

    def abort_columns(self) -> None:
        if self._cols is not None:
            for c in self._cols.values():
                c.discard()
            self._cols = None

    def abort(self) -> None:
        self.abort_columns()
        for zf, _ in self.shards:
            zf.close()
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class TurnBuffers:
    """Two float32 buffers for the encoders' features, used by turns (one per chunk). Reusing
    them saves the kernel's zeroing of fresh pages (as costly as the encoding); two, because
    with threads the writer may still deflate one chunk's features while the next chunk is
    encoded. A writer that gets no rows from a chunk must :meth:`ShardedNpzWriter.drain`."""

    def __init__(self):
        self.buffers = [None, None]
        self.turn = 0

    def next(self, elements: int) -> np.ndarray:
        t, self.turn = self.turn, self.turn ^ 1
        buf = self.buffers[t]
        if buf is None or buf.size < elements:
            self.buffers[t] = None  # free the old one first
            buf = self.buffers[t] = np.empty(max(int(elements), 1), dtype=np.float32)
        return buf


def _crc_library():
    """The CRC-32 functions for stored archives: the fastest installed library's."""
    try:
        return _deflate.choose()
    except (ImportError, ValueError):  # RINGRIFT_DEFLATE does not matter to stored archives
        return _deflate.load("zlib")


def final_names(base: Path, num_parts: int) -> list[Path]:
    """``base.npz`` for one archive; ``base_part000.npz``, ... for several."""
    if num_parts <= 1:
        return [base.with_name(base.name + ".npz")]
    return [base.with_name(f"{base.name}_part{i:03d}.npz") for i in range(num_parts)]


def stale_files(base: Path, keep: list[Path]) -> list[Path]:
    """Earlier outputs of the same base name that this export does not rewrite."""
    pat = re.compile(re.escape(base.name) + r"(_part\d{3,})?\.npz")
    keep_set = {p.resolve() for p in keep}
    out = []
    if base.parent.is_dir():
        for p in base.parent.iterdir():
            if pat.fullmatch(p.name) and p.resolve() not in keep_set and p.is_file():
                out.append(p)
    return sorted(out)


class PublishError(RingRiftError):
    """A finished archive that could not be renamed onto its final name. The message names that
    file and says which outputs were already replaced (the renames are atomic one by one, not
    together): the CLI's usual "no output file was changed" would be wrong after the first."""


def publish(moves: list[tuple[Path, Path]], stale: list[Path]) -> None:
    """Rename each finished temporary archive onto its final name (atomic per file), then
    remove stale files of earlier runs."""
    for i, (tmp, final) in enumerate(moves):
        try:
            os.replace(tmp, final)
        except OSError as exc:
            done = [str(f) for _, f in moves[:i]]
            changed = f"already replaced: {', '.join(done)}" if done else "no output file was changed"
            raise PublishError(f"{final}: cannot write it ({exc.strerror or exc}); {changed}") from None
    for p in stale:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


__all__ = ["PublishError", "ShardedNpzWriter", "TurnBuffers", "crc32_concat", "final_names", "npy_header", "publish",
           "stale_files", "write_npy_member"]
