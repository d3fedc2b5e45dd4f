"""``GameDB``: a SQLite file of self-play games, one row per game with its steps as blobs.

See ``docs/game_db.md`` for the schema.  The store is plain :mod:`sqlite3`:

* WAL journal, ``synchronous=NORMAL``; every write is one explicit transaction, so a batch is
  stored whole or not at all;
* a game is identified by ``(board, num_players, policy, seed, game_index)``; inserting a game
  whose identity is already stored does nothing (so re-running a batch, or merging two files
  with overlapping games, is safe);
* schema 3 (as 2) packs a game's moves, phases and players into one ``steps`` blob
  (``_core.pack_steps``) and self-play stores the low 32 bits of the cells step hash per step plus
  the full 64-bit hash of the final state (schema-2 rows carry the fast step hash the same way);
  schema 1 and 2 files are read as they are and migrated in place (one transaction) when opened
  for writing;
* every failure of SQLite itself (a file that is not a database, a truncated or corrupt one,
  a constraint violated by a bad batch) is raised as :class:`DBError` naming the file.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from .. import _core
from . import schema as _schema
from .errors import DBError, DBNotWritableError, DBSchemaError, DBWriteError
from .schema import (
    FILTER_COLUMNS,
    FORMAT_NAME,
    GAME_COLUMNS,
    GAMES_TABLE_SQL,
    HASH_KIND_NAMES,
    HASH_KIND_REFERENCE,
    HASH_STORED_AS,
    HASH_WIDTH,
    IDENTITY_COLUMNS,
    INDEX_SQL,
    INSERT_COLUMNS,
    MOVE_RECORD_SIZE,
    PARITY_INDEXED,
    READABLE_VERSIONS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    V1_GAME_COLUMNS,
    parity_index_serves,
)


class _Numpy:
    """numpy, imported on first use: opening a DB and the CPU self-play path (which stores its
    games natively) never touch an array, and console scripts start without numpy's import."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)


np = _Numpy()


def _loaded_numpy():
    """numpy if this process has imported it (else no value can be a numpy array or scalar)."""
    return sys.modules.get("numpy")


_SQLITE_MAGIC = b"SQLite format 3\x00"
_PAGE_SIZE = 32768          # for new files: rows are a few KiB of blobs; big pages halve the I/O
_BUSY_TIMEOUT_MS = 30_000
_FETCH_CHUNK = 256          # rows per query while iterating
# ids bound per query of an id list: one `IN (...)` of them all failed with "too many SQL variables"
# past SQLite's limit (32766 since 3.32, 999 before; some builds 250000)
_ID_CHUNK = _FETCH_CHUNK
_ROW_ID_MIN, _ROW_ID_MAX = -2**63, 2**63 - 1  # what a SQLite INTEGER (a row id) can hold
_LIST_BIND_MAX = _ID_CHUNK  # longer list filters on other columns are bound as one JSON array

_INSERT_SQL = (
    f"INSERT INTO games ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))}) "
    f"ON CONFLICT ({', '.join(IDENTITY_COLUMNS)}) DO NOTHING"
)
_MERGE_SQL = (
    f"INSERT INTO main.games ({', '.join(INSERT_COLUMNS)}) "
    f"SELECT {', '.join(INSERT_COLUMNS)} FROM src.games WHERE 1 ORDER BY id "
    f"ON CONFLICT ({', '.join(IDENTITY_COLUMNS)}) DO NOTHING"
)

_MIGRATE_CHUNK = 2048      # schema-1 rows repacked per step of a migration

_BATCH_GAME_FIELDS = ("game_index", "move_offsets", "move_count", "winner", "reason", "capped", "seconds")
_BATCH_STEP_FIELDS = ("moves", "hashes", "phases", "players")


@contextmanager
def _immediate_transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception, Ctrl-C included. An interrupt can
    land after COMMIT returned: then no transaction is open, the work is stored, and the interrupt
    goes on as itself (a blind ROLLBACK would fail and turn it into a false "nothing stored")."""
    try:
        conn.execute("BEGIN IMMEDIATE")  # inside: an interrupt just after BEGIN must roll back too
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (millisecond precision)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    if isinstance(value, str):
        return value
    raise TypeError(f"started_at must be a datetime or an ISO string, got {type(value).__name__}")


class GameRow(NamedTuple):
    """One stored game.  ``moves`` (M,16) uint8, ``hashes`` uint64[M], ``phases`` and
    ``players`` uint8[M] are read-only numpy arrays; step ``i`` is the move played, the state
    hash after it, the phase after it and the player to move after it.  ``hash_kind`` says which
    hash ``hashes`` holds: ``reference`` (the TS engine's, schema-1 rows), ``cells32`` (the low 32
    bits of ``Game.cells_hash()``: self-play and imports), ``fast32`` (the low 32 bits of
    ``Game.fast_hash()``: rows written before the cells hash), or a 64-bit ``cells64``/``fast64``;
    ``final_hash`` is the full 64-bit hash of that kind of the final state where stored (else None);
    ``Game.step_hash(kind)`` computes either. A NamedTuple (immutable; ``_replace`` and ``_asdict``
    as any): see ringrift/cli.py on dataclasses."""

    id: int
    board: str
    num_players: int
    policy: str
    seed: int
    game_index: int
    engine_version: str | None
    host: str | None
    max_moves: int | None
    winner: int
    reason: str | None
    move_count: int
    capped: bool
    started_at: str | None
    duration_ms: int | None
    created_at: str
    parity_status: str
    moves: np.ndarray
    hashes: np.ndarray
    phases: np.ndarray
    players: np.ndarray
    hash_kind: str = "reference"
    final_hash: int | None = None

    @property
    def identity(self) -> tuple:
        """``(board, num_players, policy, seed, game_index)``."""
        return (self.board, self.num_players, self.policy, self.seed, self.game_index)

    def move_records(self) -> np.ndarray:
        """The moves as a structured array with the fields of ``struct Move``."""
        return self.moves.reshape(-1).view(_schema.MOVE_RECORD_DTYPE)

    def hash_hex(self, step: int) -> str:
        """The stored hash after ``step`` in hex: 16 digits (for ``reference`` rows the reference
        engine's form), 8 for ``cells32`` and ``fast32``."""
        return f"{int(self.hashes[step]):0{2 * HASH_WIDTH[HASH_KIND_NAMES.index(self.hash_kind)]}x}"

    def reference_hashes(self) -> np.ndarray:
        """The reference (TS engine) hash after every step, uint64[M]: the stored ones for a
        ``reference`` row, else recomputed by replaying the moves (checked; ValueError at an
        illegal move)."""
        if self.hash_kind == "reference":
            return self.hashes
        return _core.replay_hashes(_core.Game(self.board, self.num_players), self.moves, "reference")

    def phase_names(self) -> list[str]:
        return [_core.PHASES[p] for p in self.phases.tolist()]


def _check_row(gid, board, num_players, move_count, hash_kind, steps, hashes) -> None:
    """The fields a row is decoded and replayed by, as the schema's CHECKs promise them: a file
    damaged on disk, or written by another program with its checks off, gets a ValueError that
    names the game and the field instead of failing deep in the decoder or the engine."""
    def bad(what):
        raise ValueError(f"game {gid}: {what}")

    if board not in _core.BOARDS:
        bad(f"unknown board {board!r}")
    if type(num_players) is not int or not 2 <= num_players <= 4:
        bad(f"num_players {num_players!r} is not 2, 3 or 4")
    if type(move_count) is not int or move_count < 0:
        bad(f"move_count {move_count!r} is not a count")
    if type(hash_kind) is not int or not 0 <= hash_kind < len(HASH_KIND_NAMES):
        bad(f"hash_kind {hash_kind!r} is not one of 0..{len(HASH_KIND_NAMES) - 1}")
    for name, blob in (("steps", steps), ("hashes", hashes)):
        if not isinstance(blob, bytes):
            bad(f"{name} is a {type(blob).__name__}, not a blob")
    width = HASH_WIDTH[hash_kind]
    if len(hashes) != move_count * width:
        bad(f"hashes hold {len(hashes)} bytes, not {move_count} x {width}")


def _row_from_sql(r: tuple) -> GameRow:
    """A row of schema 2 or 3 (``GAME_COLUMNS``)."""
    (gid, board, num_players, policy, seed, game_index, engine_version, host, max_moves,
     winner, reason, move_count, capped, started_at, duration_ms, created_at, parity_status,
     hash_kind, final_hash, steps, hashes) = r
    _check_row(gid, board, num_players, move_count, hash_kind, steps, hashes)
    try:
        moves, phases, players = _core.unpack_steps(steps, move_count)
    except ValueError as exc:
        raise ValueError(f"game {gid}: {exc}") from None
    for a in (moves, phases, players):
        a.flags.writeable = False
    hs = np.frombuffer(hashes, dtype=_schema.FAST32_DTYPE if HASH_WIDTH.get(hash_kind) == 4 else _schema.HASH_DTYPE)
    return GameRow(
        id=gid, board=board, num_players=num_players, policy=policy, seed=seed,
        game_index=game_index, engine_version=engine_version, host=host, max_moves=max_moves,
        winner=winner, reason=reason, move_count=move_count, capped=bool(capped),
        started_at=started_at, duration_ms=duration_ms, created_at=created_at,
        parity_status=parity_status, moves=moves,
        hashes=hs if hs.dtype == _schema.HASH_DTYPE else _readonly(hs.astype(np.uint64)),
        phases=phases, players=players, hash_kind=HASH_KIND_NAMES[hash_kind],
        final_hash=None if final_hash is None else final_hash & 0xFFFFFFFFFFFFFFFF,
    )


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _row_from_sql_v1(r: tuple) -> GameRow:
    """A row of schema 1 (``V1_GAME_COLUMNS``): fixed-width blobs, reference hashes."""
    (gid, board, num_players, policy, seed, game_index, engine_version, host, max_moves,
     winner, reason, move_count, capped, started_at, duration_ms, created_at, parity_status,
     moves, hashes, phases, players) = r
    return GameRow(
        id=gid, board=board, num_players=num_players, policy=policy, seed=seed,
        game_index=game_index, engine_version=engine_version, host=host, max_moves=max_moves,
        winner=winner, reason=reason, move_count=move_count, capped=bool(capped),
        started_at=started_at, duration_ms=duration_ms, created_at=created_at,
        parity_status=parity_status,
        moves=np.frombuffer(moves, dtype=np.uint8).reshape(-1, MOVE_RECORD_SIZE),
        hashes=np.frombuffer(hashes, dtype=_schema.HASH_DTYPE),
        phases=np.frombuffer(phases, dtype=np.uint8),
        players=np.frombuffer(players, dtype=np.uint8),
    )


def _pack_logical(rows, hash_kind: int) -> list[tuple]:
    """Rows in ``LOGICAL_COLUMNS`` order (fixed-width step blobs, hashes of ``hash_kind`` as
    uint64) to rows in ``INSERT_COLUMNS`` order: steps packed, a 64-bit kind (cells64, fast64)
    stored as its 32-bit kind plus the final hash."""
    out = []
    for row in rows:
        scalars, (mv, hs, ph, pl) = row[:-4], row[-4:]
        moves = np.frombuffer(mv, dtype=np.uint8).reshape(-1, MOVE_RECORD_SIZE)
        n = moves.shape[0]
        blob, _ = _core.pack_steps(moves, np.frombuffer(ph, dtype=np.uint8), np.frombuffer(pl, dtype=np.uint8),
                                   np.array([0, n], dtype=np.int64))
        hashes = np.frombuffer(hs, dtype=_schema.HASH_DTYPE)
        if hash_kind in HASH_STORED_AS:
            final = int(hashes[-1].astype(np.int64)) if n else None
            out.append((*scalars, HASH_STORED_AS[hash_kind], final, blob, hashes.astype(_schema.FAST32_DTYPE).tobytes()))
        else:
            out.append((*scalars, hash_kind, None, blob, bytes(hs)))
    return out


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, waiting as for any lock. SQLite answers "database is locked"
    at once, without its busy handler, when another connection holds the file while the mode
    changes: two runs that create one new DB together used to fail that way (about half the time
    when they start in the same millisecond). Bounded by the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _check_header(path: Path) -> None:
    """Refuse files that are not SQLite databases, or whose header promises more pages than
    the file holds (a truncated copy), before SQLite gets to read them."""
    size = path.stat().st_size
    if size == 0:
        return  # SQLite treats an empty file as an empty database
    with open(path, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise DBError(f"{path}: not a SQLite database", path=str(path))
    page_size = int.from_bytes(head[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size & (page_size - 1):
        raise DBError(f"{path}: corrupt SQLite header (page size {page_size})", path=str(path))
    if wal_holds_frames(path):
        return  # pages may legitimately still live in the write-ahead log (e.g. after a crash)
    pages = int.from_bytes(head[28:32], "big")
    if pages and head[24:28] == head[92:96] and pages * page_size > size:
        raise DBError(
            f"{path}: truncated or corrupt SQLite database "
            f"(header says {pages * page_size} bytes, the file has {size})",
            path=str(path),
        )
    if size % page_size:
        raise DBError(
            f"{path}: truncated or corrupt SQLite database "
            f"(size {size} is not a multiple of the page size {page_size})",
            path=str(path),
        )


def _is_list(value) -> bool:
    """Whether a filter value means IN (a list of values) rather than equality."""
    nm = _loaded_numpy()
    return isinstance(value, (list, tuple, set, frozenset, range)) or bool(nm and isinstance(value, nm.ndarray))


def _plain(value):
    """A numpy scalar as the Python value it holds (what sqlite3 and json can take)."""
    nm = _loaded_numpy()
    return value.item() if nm and isinstance(value, nm.generic) else value


def _beyond_sqlite(value) -> bool:
    """An integer no column can hold (SQLite's are 64-bit): as a filter value it matches nothing,
    where sqlite3 would raise OverflowError."""
    return isinstance(value, int) and not _ROW_ID_MIN <= value <= _ROW_ID_MAX


def _row_ids(ids) -> list[int]:
    """The game ids as ints, in their order, without those no row can have: beyond SQLite's 64-bit
    integers an id changes and matches nothing, as an unknown id does (SQLite would overflow)."""
    nm = _loaded_numpy()
    ids = ids.tolist() if nm and isinstance(ids, nm.ndarray) else ids
    return [i for i in map(int, ids) if not _beyond_sqlite(i)]


def _id_list(ids) -> list[int]:
    """Distinct game ids in ascending order, without those no row can have (unknown ids)."""
    return sorted(set(_row_ids(ids)))


def _id_chunk_queries(where: str, params: list, id_list: list[int]):
    """(WHERE clause, parameters) of `where` restricted to each chunk of _ID_CHUNK ids of
    `id_list`, in its order: ascending ids give results in ascending id order."""
    joiner = " AND " if where else " WHERE "
    for start in range(0, len(id_list), _ID_CHUNK):
        chunk = id_list[start:start + _ID_CHUNK]
        yield f"{where}{joiner}id IN ({', '.join('?' * len(chunk))})", [*params, *chunk]


def _long_list(value) -> bool:
    """A list filter bound as one JSON array (_list_sql) rather than one variable per value."""
    return _is_list(value) and len(value) > _LIST_BIND_MAX


def _list_sql(key: str, values: list) -> tuple[str, list]:
    """`key IN (...)` for a list filter. A long list is one JSON array read by json_each: bound
    value by value, past SQLite's variable limit (32766 by default, 999 in older builds) the
    query failed with "too many SQL variables"."""
    if len(values) <= _LIST_BIND_MAX:
        return f"{key} IN ({', '.join('?' * len(values))})", values
    try:
        text = json.dumps(values, allow_nan=False)
    except (TypeError, ValueError):
        raise TypeError(f"game filter {key!r}: a list of more than {_LIST_BIND_MAX} values may hold only "
                        f"numbers, strings and None") from None
    return f"{key} IN (SELECT value FROM json_each(?))", [text]


def _filters_sql(filters: dict[str, object]) -> tuple[str, list]:
    clauses, params = [], []
    nm = _loaded_numpy()
    for key, value in filters.items():
        if key not in FILTER_COLUMNS:
            raise TypeError(f"unknown game filter {key!r} (allowed: {', '.join(FILTER_COLUMNS)})")
        if value is None:
            continue
        if _is_list(value):
            values = list(value.tolist() if nm and isinstance(value, nm.ndarray) else value)
            values = [v for v in (_plain(v) for v in values) if not _beyond_sqlite(v)]
            if not values:
                clauses.append("0")
                continue
            clause, bound = _list_sql(key, values)
            clauses.append(clause)
            params.extend(bound)
        elif _beyond_sqlite(_plain(value)):
            clauses.append("0")
        else:
            clauses.append(f"{key} = ?")
            params.append(_plain(value))
        if key == "parity_status" and parity_index_serves(values if _is_list(value) else [_plain(value)]):
            clauses.append(PARITY_INDEXED)  # the same rows, and the partial parity index can serve them
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def readonly_uri(path: Path) -> str:
    """SQLite URI that reads ``path`` without writing anything beside it.

    A WAL-mode file needs a ``-shm`` index even to be read, and SQLite creates it (and an empty
    ``-wal``) next to the file. In a folder this process may not write (a shared, read-only
    dataset, another user's folder) that fails ("attempt to write a readonly database"), so such
    files are opened ``immutable`` when no log holds committed frames: nothing past the file
    exists to be read. (Judged by ``_may_write``, mode bits and access(2): by the mode bits
    alone, another user's 0755 folder counted as writable and the open failed.)
    """
    path = Path(path).resolve()
    uri = f"{path.as_uri()}?mode=ro"
    if not _may_write(path.parent) and not wal_holds_frames(path):  # nothing committed past the file
        uri += "&immutable=1"
    return uri


def wal_holds_frames(path: Path) -> bool:
    """Whether a non-empty ``-wal`` lies beside ``path``: committed pages may live there only
    (a writer crashed, or is still at work), so the file alone is not the whole database."""
    wal = Path(f"{path}-wal")
    return wal.exists() and wal.stat().st_size > 0


def connect_writable(path: str | os.PathLike, *, timeout: float) -> sqlite3.Connection:
    """A read-write connection to ``path``, created when absent, in autocommit mode (the store's
    own transactions say BEGIN): how every writer of ours opens a database file. The URI form
    keeps a name with '?' or '#' a plain file name."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=rwc", uri=True, isolation_level=None,
                           timeout=timeout)


def connect_readonly(path: str | os.PathLike, *, timeout: float) -> sqlite3.Connection:
    """A connection that reads ``path``, refuses SQL writes, and leaves nothing beside the file.

    Opened ``mode=ro``, a WAL-mode file keeps the ``-wal`` and ``-shm`` that reading it made (a
    read-only connection cannot remove them): they were left next to the user's file after every
    ``ringrift-db info`` or export. Where this process may write the file and its folder the
    connection is therefore read-write under ``PRAGMA query_only``: SQL writes fail as they do on
    a read-only connection, and the last connection to close the file folds the log in and
    removes both, as a writer's does (folding committed frames in changes no row). Elsewhere (a
    read-only folder or mount, a file without write permission) it is ``readonly_uri``'s.

    On a full disk SQLite cannot make the ``-shm`` that reading a WAL-mode file needs ("disk I/O
    error"). Where no log was there before (nothing past the file, no other connection), the
    file is then read ``immutable``, which needs none, and the stubs the attempt left go.
    """
    path = Path(path).resolve()
    if _may_write(path) and _may_write(path.parent):
        fresh = not _log_files(path)
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=timeout)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA schema_version").fetchone()  # the first read makes the log files
        except sqlite3.Error as exc:
            conn.close()
            if not (fresh and _io_error(exc)):
                raise
            _remove_log_stubs(path)
            return sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None,
                                   timeout=timeout)
        except BaseException:
            conn.close()
            raise
        return conn
    return sqlite3.connect(readonly_uri(path), uri=True, isolation_level=None, timeout=timeout)


def _log_files(path: Path) -> list[Path]:
    """The ``-wal`` and ``-shm`` beside ``path`` that exist."""
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def _sqlite_error_is(exc: BaseException, code: int, message: str) -> bool:
    """Whether ``exc`` is SQLite's primary result ``code`` (its extended codes included): by the
    code where Python gives it (3.11+), else by SQLite's ``message`` (older Pythons, and the
    native writer's RuntimeError, which carries SQLite's message)."""
    found = getattr(exc, "sqlite_errorcode", None)
    return (found & 0xFF) == code if found is not None else message in str(exc)


def _io_error(exc: BaseException) -> bool:
    """SQLITE_IOERR or one of its extended codes (a full disk, a failed read or write)."""
    return _sqlite_error_is(exc, 10, "disk I/O error")


def disk_failure(exc: BaseException) -> bool:
    """A full disk or an I/O error (SQLITE_FULL, SQLITE_IOERR): work that ran and failed
    (DBWriteError, exit status 1), not an unusable database."""
    return _io_error(exc) or _sqlite_error_is(exc, 13, "database or disk is full")


def write_error(exc: BaseException) -> type[DBError]:
    """The error to raise for a write that ``exc`` stopped: DBWriteError for a full or failing
    disk, else DBError."""
    return DBWriteError if disk_failure(exc) else DBError


def _remove_log_stubs(path: Path) -> None:
    """Remove the log files a failed open made where there were none: an empty ``-wal`` and a
    ``-shm`` shorter than its first 32 KiB region (never set up, so nothing uses it)."""
    for p, limit in ((Path(f"{path}-wal"), 1), (Path(f"{path}-shm"), 32 << 10)):
        try:
            if p.stat().st_size < limit:
                p.unlink()
        except OSError:
            pass


def _tidy_after_attach(path: Path) -> None:
    """Remove the ``-wal``/``-shm`` that attaching ``path`` read-only left beside it.

    An ATTACH under ``readonly_uri`` cannot remove them (the merging connection writes, so it
    cannot be ``query_only`` as ``connect_readonly``'s are). Reading the file once more through
    ``connect_readonly`` and closing it does, where this process may write there and nothing
    else has the file open; otherwise they stay, as they would for any reader.
    """
    try:
        conn = connect_readonly(path, timeout=0)
    except sqlite3.Error:
        return
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # the file is opened on first read
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def _writer_may_open(path: Path, exists: bool) -> bool:
    """Whether a writer may open ``path``: the file (when it exists) and its folder, where the
    ``-wal`` and ``-shm`` go."""
    path = path.resolve()
    return (not exists or _may_write(path)) and _may_write(path.parent)


def _may_write(path: Path) -> bool:
    """Whether this process may write ``path``: by its mode bits (root ignores permissions, not
    these) and by access(2) (another user's file, a read-only mount)."""
    try:
        return bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK)
    except OSError:
        return False


class GameDB:
    """A game database file (see ``docs/game_db.md``).

    ``GameDB(path)`` opens ``path``, creating it (with the current schema) when it does not
    exist and ``create`` is true.  ``readonly=True`` refuses writes (``connect_readonly``; the file must
    exist).  Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = bool(readonly)
        self._conn: sqlite3.Connection | None = None
        where = str(self.path)
        if self.path.is_dir():
            raise DBError(f"{where}: is a directory, not a game database", path=where)
        exists = self.path.exists()
        if not exists and (readonly or not create):
            raise DBError(f"{where}: no such game database", path=where)
        if exists and not self.path.is_file():  # a FIFO would block the header read; a device reads as empty
            raise DBError(f"{where}: not a regular file, not a game database", path=where)
        if not exists and not self.path.parent.is_dir():
            raise DBError(f"{where}: directory {self.path.parent} does not exist", path=where)
        fresh = exists and not _log_files(self.path)
        try:
            if exists:
                _check_header(self.path)
            if readonly:
                self._conn = connect_readonly(self.path, timeout=_BUSY_TIMEOUT_MS / 1000)
            else:
                self._conn = connect_writable(self.path, timeout=_BUSY_TIMEOUT_MS / 1000)
            self._setup(create=create)
        except DBError:
            self._close_quietly()
            raise
        except OSError as exc:
            self._close_quietly()
            raise DBError(f"{where}: cannot open ({exc.strerror or exc})", path=where) from None
        except sqlite3.Error as exc:
            self._close_quietly()
            if not readonly and not _writer_may_open(self.path, exists):
                raise DBNotWritableError(f"{where}: cannot open for writing: the file or its folder is "
                                         f"read-only ({exc})", path=where) from None
            if not readonly and disk_failure(exc):  # no room for the -shm or the schema: a full disk
                if fresh or not exists:
                    _remove_log_stubs(self.path)
                if not exists:  # the empty file this open made
                    try:
                        if self.path.stat().st_size == 0:
                            self.path.unlink()
                    except OSError:
                        pass
                hint = "" if "full" in str(exc) else "; is the disk full?"
                raise DBWriteError(f"{where}: cannot open for writing ({exc}{hint})", path=where) from None
            raise DBError(f"{where}: not a readable game database ({exc})", path=where) from None

    # -- opening -------------------------------------------------------------------------
    def _setup(self, *, create: bool) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        tables = self._tables()
        if "meta" not in tables:
            if tables:
                raise DBError(
                    f"{self.path}: not a ringrift game database (no meta table; it has "
                    f"{', '.join(sorted(tables))})", path=str(self.path))
            if self.readonly or not create:
                raise DBError(f"{self.path}: empty database, not a ringrift game database", path=str(self.path))
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            self._use_wal()
            self._create_schema()
            self._read_meta()
            return
        # A file that is not ours, or of a version this build cannot read, is refused before
        # anything is written to it (the switch to WAL rewrites the header).
        self._read_meta()
        if not self.readonly:
            self._use_wal()
            if self.version < SCHEMA_VERSION:
                self._migrate()

    def _use_wal(self) -> None:
        mode = _switch_to_wal(self._conn)
        if str(mode).lower() != "wal":
            raise DBError(f"{self.path}: cannot switch to WAL journal mode (got {mode})", path=str(self.path))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        # the native writer's value (csrc/db/game_writer.h says why): the log folded in as it grows
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(_core.DB_WAL_AUTOCHECKPOINT_PAGES)}")

    def _tables(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _create_schema(self) -> None:
        conn = self._conn
        with _immediate_transaction(conn):
            if "meta" not in self._tables():  # another process may have won the race
                for stmt in SCHEMA_SQL.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                now = utc_now()
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("format", FORMAT_NAME),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_at", now),
                    ("created_by", f"ringrift {_package_version()}"),
                ])

    def _read_meta(self) -> None:
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_NAME:
            raise DBError(f"{self.path}: not a ringrift game database (meta.format is "
                          f"{meta.get('format')!r})", path=str(self.path))
        found = meta.get("schema_version")
        try:
            version = int(found)
        except (TypeError, ValueError):
            version = None
        if version not in READABLE_VERSIONS:
            raise DBSchemaError(str(self.path), found, SCHEMA_VERSION)
        self.version = version
        self.meta = meta

    def _migrate(self) -> None:
        """Rewrite an older file as the current schema in place, in one transaction (all or
        nothing), ids and every column's content unchanged. Schema 1: the step blobs are packed
        and the reference hashes kept (``hash_kind = reference``). Schema 2: the same rows, in a
        table whose ``hash_kind`` admits the cells hash."""
        conn = self._conn
        try:
            with _immediate_transaction(conn):
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
                if found == "1":
                    self._migrate_v1_tables()
                elif found == "2":
                    self._migrate_v2_tables()
                # else another process migrated it meanwhile
        except ValueError as exc:  # a row the packed format cannot hold: nothing was changed
            raise DBError(f"{self.path}: cannot migrate schema {self.version} to {SCHEMA_VERSION} (the file is "
                          f"unchanged; open it read-only to read it): {exc}", path=str(self.path)) from None
        self.version = SCHEMA_VERSION
        self.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def _migrate_v1_tables(self) -> None:
        """The migration's work, inside _migrate's transaction: a current-schema table filled
        chunk by chunk from the schema-1 rows, then swapped in."""
        conn = self._conn
        cols = ", ".join(INSERT_COLUMNS)
        conn.execute(GAMES_TABLE_SQL.format(name="games_v2"))
        last = -1
        while True:
            rows = conn.execute(f"SELECT {', '.join(V1_GAME_COLUMNS)} FROM games WHERE id > ? ORDER BY id "
                                f"LIMIT {_MIGRATE_CHUNK}", (last,)).fetchall()
            if not rows:
                break
            packed = _pack_logical([r[1:] for r in rows], HASH_KIND_REFERENCE)
            conn.executemany(f"INSERT INTO games_v2 (id, {cols}) VALUES ({', '.join('?' * (len(INSERT_COLUMNS) + 1))})",
                             [(r[0], *p) for r, p in zip(rows, packed)])
            last = rows[-1][0]
        self._swap_in_games_table("games_v2", migrated_from=1)

    def _migrate_v2_tables(self) -> None:
        """Schema 2 to 3, inside _migrate's transaction: the rows copied as they are (same columns)
        into a table with the current constraints, then swapped in."""
        conn = self._conn
        cols = ", ".join(GAME_COLUMNS)
        conn.execute(GAMES_TABLE_SQL.format(name="games_v3"))
        conn.execute(f"INSERT INTO games_v3 ({cols}) SELECT {cols} FROM games ORDER BY id")
        self._swap_in_games_table("games_v3", migrated_from=2)

    def _swap_in_games_table(self, name: str, *, migrated_from: int) -> None:
        conn = self._conn
        conn.execute("DROP TABLE games")
        conn.execute(f"ALTER TABLE {name} RENAME TO games")
        conn.execute(INDEX_SQL)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_from', ?)", (str(migrated_from),))

    def _columns(self) -> str:
        return ", ".join(GAME_COLUMNS if self.version >= 2 else V1_GAME_COLUMNS)

    def _decode(self, r: tuple) -> GameRow:
        """One row as a GameRow; ValueError naming the game and the field when it cannot be."""
        return _row_from_sql(r) if self.version >= 2 else _row_from_sql_v1(r)

    def _row(self, r: tuple) -> GameRow:
        try:
            return self._decode(r)
        except ValueError as exc:
            raise DBError(f"{self.path}: corrupt game row: {exc}", path=str(self.path)) from None

    def _rows(self, raw: list, on_corrupt) -> Iterator[GameRow]:
        for r in raw:
            if on_corrupt is None:
                yield self._row(r)
                continue
            try:
                row = self._decode(r)
            except ValueError as exc:
                on_corrupt(r[0], str(exc))
                continue
            yield row

    # -- plumbing ------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DBError(f"{self.path}: game database is closed", path=str(self.path))
        return self._conn

    def _writable(self) -> sqlite3.Connection:
        conn = self.conn
        if self.readonly:
            raise DBError(f"{self.path}: opened read-only", path=str(self.path))
        return conn

    def _fail(self, what: str, exc: BaseException, *, writing: bool = False) -> DBError:
        # a write that a full disk or an I/O error stopped is work that ran and failed
        # (DBWriteError, exit status 1), not an unusable database
        error = write_error(exc) if writing and isinstance(exc, sqlite3.Error) else DBError
        return error(f"{self.path}: {what} failed: {exc}", path=str(self.path))

    def _close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._close_quietly()

    def __enter__(self) -> "GameDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("read-only" if self.readonly else "open")
        return f"<GameDB {str(self.path)!r} v{getattr(self, 'version', SCHEMA_VERSION)} {state}>"

    def _query(self, what: str, sql: str, params: Iterable = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(what, exc) from None

    # -- writing -------------------------------------------------------------------------
    def insert_batch(self, batch: dict, *, board: str, num_players: int, seed: int, policy: str,
                     engine_version: str | None, host: str | None, max_moves: int | None,
                     started_at=None) -> int:
        """Store every game of a ``_core.selfplay_batch`` result in one transaction.

        Games whose identity ``(board, num_players, policy, seed, game_index)`` is already
        stored are skipped.  Returns the number of rows inserted.  Any error (malformed batch,
        constraint violation, I/O) rolls the whole batch back and raises :class:`DBError`.
        """
        self._writable()  # a read-only handle is refused before any work
        native = _native_writer(batch)
        if native is not None:
            return self._insert_batch_native(native, batch, board=board, num_players=num_players, seed=seed,
                                             policy=policy, engine_version=engine_version, host=host,
                                             max_moves=max_moves, started_at=started_at)
        try:
            cols = _batch_columns(batch)
        except (KeyError, TypeError, ValueError) as exc:
            raise DBError(f"{self.path}: insert_batch: malformed batch: {exc}", path=str(self.path)) from None
        G = cols["G"]
        if G == 0:
            return 0
        started = _iso(started_at) or utc_now()
        created = utc_now()
        board, policy = str(board), str(policy)
        num_players, seed = int(num_players), int(seed)
        max_moves = None if max_moves is None else int(max_moves)
        engine_version = None if engine_version is None else str(engine_version)
        host = None if host is None else str(host)

        reasons = _REASON_TEXT
        one = itertools.repeat
        # One tuple per game, zipped in C from per-game lists and repeated constants (lazily: a bad
        # field fails inside the transaction, which then stores nothing).
        rows = zip(one(board), one(num_players), one(policy), one(seed), cols["game_index"], one(engine_version),
                   one(host), one(max_moves), cols["winner"], map(reasons.__getitem__, cols["reason"]),
                   cols["move_count"], cols["capped"], one(started), cols["duration_ms"], one(created),
                   one("unchecked"), one(cols["hash_kind"]), cols["final_hash"], cols["steps"], cols["hashes"])
        return self._insert_packed(rows, what="insert_batch")

    def _insert_batch_native(self, module: str, batch: dict, *, board, num_players, seed, policy, engine_version,
                             host, max_moves, started_at) -> int:
        """insert_batch's rows written by the C++ core (csrc/db/game_writer.h) on a connection of its
        own, in one transaction, without the GIL: the same rows as the Python path, a few times cheaper."""
        kind = HASH_KIND_NAMES.index(batch.get("hash_kind", "reference"))
        try:
            return _core.db_insert_batch(
                module, str(self.path), _INSERT_SQL, batch, str(board), int(num_players), str(policy), int(seed),
                None if engine_version is None else str(engine_version), None if host is None else str(host),
                None if max_moves is None else int(max_moves), _iso(started_at) or utc_now(), utc_now(),
                HASH_STORED_AS.get(kind, kind), kind in HASH_STORED_AS, list(_WRITER_REASONS),
                _BUSY_TIMEOUT_MS)
        except ValueError as exc:
            raise DBError(f"{self.path}: insert_batch: malformed batch: {exc}", path=str(self.path)) from None
        except RuntimeError as exc:
            error = write_error(exc)
            raise error(f"{self.path}: insert_batch failed, nothing of the batch was stored: {exc}",
                        path=str(self.path)) from None

    def native_writer_args(self, hash_kind: str = "cells64") -> dict | None:
        """The keyword arguments with which the C++ core writes self-play rows of `hash_kind` into
        this file itself (``_core.selfplay_into_db``: csrc/selfplay/db_runner.h), the same rows as
        insert_batch; None when the native writer cannot run here (then use insert_batch)."""
        self._writable()
        module = native_writer_module()
        kind = HASH_KIND_NAMES.index(hash_kind)
        if module is None or kind not in HASH_STORED_AS:
            return None
        return {"module_path": module, "path": str(self.path), "sql": _INSERT_SQL,
                "stored_kind": HASH_STORED_AS[kind], "keep_low32": True,
                "reasons": list(_WRITER_REASONS), "busy_timeout_ms": _BUSY_TIMEOUT_MS}

    def _insert_rows(self, rows, *, what: str = "insert", hash_kind: str = "reference") -> int:
        """Insert games given as ``LOGICAL_COLUMNS`` tuples (fixed-width step blobs, hashes of
        ``hash_kind`` as uint64) in one transaction, skipping identities already stored; returns
        the number inserted.  All or nothing."""
        try:
            packed = _pack_logical(rows, HASH_KIND_NAMES.index(hash_kind))
        except ValueError as exc:
            raise DBError(f"{self.path}: {what}: bad game, nothing of the batch was stored: {exc}",
                          path=str(self.path)) from None
        return self._insert_packed(packed, what=what)

    def _insert_packed(self, rows, *, what: str = "insert") -> int:
        """Insert full row tuples (``INSERT_COLUMNS`` order) in one transaction, skipping
        identities already stored; returns the number inserted.  All or nothing."""
        conn = self._writable()
        before = conn.total_changes
        try:
            with _immediate_transaction(conn):
                conn.executemany(_INSERT_SQL, rows)
        except sqlite3.Error as exc:
            error = write_error(exc)
            raise error(f"{self.path}: {what} failed, nothing of the batch was stored: {exc}",
                        path=str(self.path)) from None
        except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DBError(f"{self.path}: {what}: bad batch field, nothing of the batch was "
                          f"stored: {type(exc).__name__}: {exc}", path=str(self.path)) from None
        return conn.total_changes - before

    def set_parity_status(self, ids: Iterable[int] | int, status: str) -> int:
        """Set ``parity_status`` of the given game ids (one transaction); returns rows changed."""
        conn = self._writable()
        if not isinstance(status, str) or not status or len(status) > 64:
            raise ValueError(f"parity status must be a short non-empty string, got {status!r}")
        nm = _loaded_numpy()
        if isinstance(ids, int) or (nm and isinstance(ids, nm.integer)):
            ids = [ids]
        id_list = [(status, i) for i in _row_ids(ids)]
        before = conn.total_changes
        try:
            with _immediate_transaction(conn):
                conn.executemany("UPDATE games SET parity_status = ? WHERE id = ?", id_list)
        except sqlite3.Error as exc:
            raise self._fail("set_parity_status", exc, writing=True) from None
        return conn.total_changes - before

    def merge_from(self, other_path: str | os.PathLike) -> int:
        """Copy every game of another game database into this one (one transaction).

        Games already present (same identity) are skipped; the copied rows get new ids.
        Refuses a file of another schema version (:class:`DBSchemaError`).  Returns the number
        of games added.
        """
        conn = self._writable()
        other = Path(other_path)
        with GameDB(other, create=False, readonly=True) as src:  # validates format and schema version
            if other.resolve() == self.path.resolve() or (other.exists() and os.path.samefile(other, self.path)):
                # samefile: a hard link is the same file under another name
                raise DBError(f"{self.path}: cannot merge a database into itself", path=str(self.path))
            if src.version < 2:  # a schema-1 file: read through the reader, packed here (2 and 3 share columns)
                return self._insert_rows(
                    [_logical(r) for r in src.iter_games()], what=f"merge from {other}")
        try:
            conn.execute("ATTACH DATABASE ? AS src", (readonly_uri(other),))
        except sqlite3.Error as exc:
            raise DBError(f"{other}: cannot attach for merging: {exc}", path=str(other)) from None
        try:
            before = conn.total_changes
            with _immediate_transaction(conn):
                conn.execute(_MERGE_SQL)
                added = conn.total_changes - before
                _merge_side_tables(conn)
            return added
        except sqlite3.Error as exc:
            error = write_error(exc)
            raise error(f"{self.path}: merge from {other} failed, nothing was merged: {exc}",
                        path=str(self.path)) from None
        finally:
            try:
                conn.execute("DETACH DATABASE src")
            except sqlite3.Error:
                pass
            _tidy_after_attach(other)

    # -- reading -------------------------------------------------------------------------
    def existing_indices(self, *, board: str, num_players: int, seed: int, policy: str) -> set[int]:
        """The ``game_index`` values already stored for one run."""
        rows = self._query(
            "existing_indices",
            "SELECT game_index FROM games WHERE board = ? AND num_players = ? AND policy = ? AND seed = ?",
            (board, int(num_players), policy, int(seed)))
        return {r[0] for r in rows}

    def count_games(self, **filters) -> int:
        """Number of games matching equality filters on scalar columns (a list means IN)."""
        if _is_list(filters.get("id")):  # any number of ids: counted a chunk at a time
            id_list = _id_list(filters.pop("id"))
            where, params = _filters_sql(filters)
            if any(_long_list(v) for v in filters.values()):  # the long list read once, not once a chunk
                wanted = set(id_list)
                return sum(r[0] in wanted for r in self._query("count_games", f"SELECT id FROM games{where}", params))
            return sum(self._query("count_games", f"SELECT COUNT(*) FROM games{sql}", p)[0][0]
                       for sql, p in _id_chunk_queries(where, params, id_list))
        where, params = _filters_sql(filters)
        return self._query("count_games", f"SELECT COUNT(*) FROM games{where}", params)[0][0]

    def iter_games(self, board: str | None = None, num_players: int | None = None,
                   parity_status: str | None = None, sample: int | None = None,
                   seed_for_sample: int = 0, ids: Iterable[int] | None = None,
                   on_corrupt=None, **filters) -> Iterator[GameRow]:
        """Yield matching games as :class:`GameRow`, in ascending id order.

        ``ids`` restricts to those ids (unknown ids are skipped).  ``sample=n`` yields a
        uniformly random subset of ``n`` matching games (all of them when fewer match), chosen
        reproducibly from ``seed_for_sample``.  Further keyword filters as in
        :meth:`count_games`.  A row that cannot be decoded raises DBError ("corrupt game row"),
        or, given ``on_corrupt(game_id, why)``, is handed to it and skipped.
        """
        filters.update(board=board, num_players=num_players, parity_status=parity_status)
        if ids is None and _is_list(filters.get("id")):  # an id list given as a filter: the same
            ids = filters["id"]
        id_list = None
        if ids is not None:  # queried a chunk of ids at a time, each with the other filters
            filters.pop("id", None)
            id_list = _id_list(ids)
        long_list = any(_long_list(v) for v in filters.values())
        where, params = _filters_sql(filters)
        cols = self._columns()
        if long_list:
            # The matching ids from one query, then their rows a chunk of ids at a time: paging
            # by id, or one query per chunk of `ids`, would read the long list again for each.
            try:
                matching = [r[0] for r in self.conn.execute(f"SELECT id FROM games{where} ORDER BY id", params)]
            except sqlite3.Error as exc:
                raise self._fail("iter_games", exc) from None
            if id_list is not None:
                wanted = set(id_list)
                matching = [i for i in matching if i in wanted]
            id_list, where, params = matching, "", []
        if sample is not None:
            if int(sample) < 0:
                raise ValueError(f"sample must be >= 0, got {sample}")
            if int(seed_for_sample) < 0:
                raise ValueError(f"seed_for_sample must be >= 0, got {seed_for_sample}")
            if long_list:  # the matching ids are known already
                all_ids = np.array(id_list, dtype=np.int64)
            else:
                queries = ([(where, params)] if id_list is None else _id_chunk_queries(where, params, id_list))
                try:
                    all_ids = np.fromiter((r[0] for sql, p in queries
                                           for r in self.conn.execute(f"SELECT id FROM games{sql} ORDER BY id", p)),
                                          dtype=np.int64)
                except sqlite3.Error as exc:
                    raise self._fail("iter_games", exc) from None
            if int(sample) < len(all_ids):
                rng = np.random.default_rng(seed_for_sample)
                all_ids = np.sort(rng.choice(all_ids, size=int(sample), replace=False))
            return self._iter_ids(all_ids.tolist(), on_corrupt)
        if id_list is not None:
            return self._iter_ids(id_list, on_corrupt, where, params)
        return self._iter_keyset(cols, where, params, on_corrupt)

    def _iter_ids(self, id_list: list[int], on_corrupt=None, where: str = "", params=()) -> Iterator[GameRow]:
        """The games of `id_list` (ascending) that match `where`, one chunk of ids per query."""
        cols = self._columns()
        for sql, p in _id_chunk_queries(where, params, id_list):
            yield from self._rows(self._query("iter_games", f"SELECT {cols} FROM games{sql} ORDER BY id", p),
                                  on_corrupt)

    def _iter_keyset(self, cols: str, where: str, params: list, on_corrupt=None) -> Iterator[GameRow]:
        last = None
        joiner = " AND " if where else " WHERE "
        while True:
            if last is None:
                sql, p = f"SELECT {cols} FROM games{where} ORDER BY id LIMIT {_FETCH_CHUNK}", params
            else:
                sql, p = (f"SELECT {cols} FROM games{where}{joiner}id > ? ORDER BY id LIMIT {_FETCH_CHUNK}",
                          params + [last])
            rows = self._query("iter_games", sql, p)
            yield from self._rows(rows, on_corrupt)
            if len(rows) < _FETCH_CHUNK:
                return
            last = rows[-1][0]

    def get_game(self, game_id: int) -> GameRow:
        """One game by id (KeyError when absent)."""
        if not _ROW_ID_MIN <= int(game_id) <= _ROW_ID_MAX:  # SQLite's OverflowError otherwise
            raise KeyError(f"{self.path}: no game with id {game_id}")
        rows = self._query("get_game", f"SELECT {self._columns()} FROM games WHERE id = ?", (int(game_id),))
        if not rows:
            raise KeyError(f"{self.path}: no game with id {game_id}")
        return self._row(rows[0])

    def summary(self) -> dict:
        """Totals: games, moves, capped, wins by seat, reasons, parity statuses, per board/players."""
        q = self._query
        games, moves, capped = q("summary", "SELECT COUNT(*), COALESCE(SUM(move_count), 0), "
                                            "COALESCE(SUM(capped), 0) FROM games")[0]
        wins = {w: n for w, n in q("summary", "SELECT winner, COUNT(*) FROM games GROUP BY winner ORDER BY winner")}
        reasons = {(r if r is not None else "none"): n for r, n in
                   q("summary", "SELECT reason, COUNT(*) FROM games GROUP BY reason ORDER BY COUNT(*) DESC")}
        # The checked games from the parity index (PARITY_INDEXED: no table scan), the rest unchecked.
        parity = {s: n for s, n in q("summary", f"SELECT parity_status, COUNT(*) FROM games WHERE {PARITY_INDEXED} "
                                                "GROUP BY parity_status")}
        unchecked = games - sum(parity.values())
        if unchecked > 0:  # (the queries are separate reads: a concurrent insert can come between)
            parity["unchecked"] = unchecked
        parity = dict(sorted(parity.items()))
        # the policy of each game: random / heuristic, or onnx:<board>-<model id>:<options> for a net
        policies = {p: n for p, n in q("summary", "SELECT policy, COUNT(*) FROM games GROUP BY policy "
                                                  "ORDER BY COUNT(*) DESC, policy")}
        configs = [
            {"board": b, "num_players": n, "games": g, "moves": m, "capped": c, "mean_moves": (m / g if g else 0.0)}
            for b, n, g, m, c in q("summary", "SELECT board, num_players, COUNT(*), SUM(move_count), SUM(capped) "
                                              "FROM games GROUP BY board, num_players ORDER BY board, num_players")
        ]
        return {
            "path": str(self.path),
            "schema_version": self.version,
            "games": games,
            "moves": moves,
            "capped": capped,
            "wins_by_seat": wins,
            "reasons": reasons,
            "parity_status": parity,
            "policies": policies,
            "by_config": configs,
        }


# ---- batch plumbing --------------------------------------------------------------------------

_REASON_TEXT = tuple(r if r else None for r in _core.REASONS)
_WRITER_REASONS = tuple(r or "" for r in _REASON_TEXT)  # the native writer's form: "" stores NULL

#: RINGRIFT_DB_WRITER=python writes self-play batches through Python's sqlite3 even where the
#: native writer can run (the two paths store the same rows; tests compare them).
_WRITER_ENV = "RINGRIFT_DB_WRITER"


@functools.cache
def _sqlite_module() -> str | None:
    """The path the native writer resolves SQLite from (Python's _sqlite3 extension; "" when it is
    built into the interpreter), or None when the writer cannot run here. Looked up once."""
    import _sqlite3

    path = getattr(_sqlite3, "__file__", None) or ""
    ok = tuple(_core.DB_WRITER_COLUMNS) == INSERT_COLUMNS and _core.db_writer_available(path)
    return path if ok else None


def native_writer_module() -> str | None:
    """Where the native writer finds SQLite when self-play batches go through it (not forced to
    Python by RINGRIFT_DB_WRITER=python, the library found), else None."""
    return None if os.environ.get(_WRITER_ENV, "") == "python" else _sqlite_module()


def _native_writer(batch: dict) -> str | None:
    """The module path the native writer resolves SQLite from, when it can take this batch: a
    self-play batch of numpy arrays with a hash kind it stores, the same column order, the
    library found. Anything else goes the Python way (whose errors name a malformed field)."""
    module = native_writer_module()
    if module is None or not isinstance(batch, dict):
        return None
    kind = batch.get("hash_kind", "reference")
    if kind not in HASH_KIND_NAMES or (HASH_KIND_NAMES.index(kind) not in HASH_STORED_AS and kind != "reference"):
        return None
    if not all(isinstance(batch.get(k), np.ndarray) for k in _BATCH_GAME_FIELDS + _BATCH_STEP_FIELDS):
        return None
    return module


def _package_version() -> str:
    try:
        from .. import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


# Tables that other parts of the package keep beside the games, keyed by game identity (not by
# id, which a merge renumbers): copied by merge_from in the same transaction, known keys skipped.
# search_targets: the Gumbel search's per-move targets (ringrift.search.selfplay, its DDL there).
_SIDE_TABLES = ("search_targets",)


def _merge_side_tables(conn) -> None:
    for table in _SIDE_TABLES:
        if not conn.execute("SELECT 1 FROM src.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
            continue
        ddl = conn.execute("SELECT sql FROM src.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
        conn.execute(ddl.replace(f"CREATE TABLE {table}", f"CREATE TABLE IF NOT EXISTS main.{table}", 1))
        conn.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM src.{table}")


def _batch_columns(batch: dict) -> dict:
    """Validate a selfplay batch and turn it into Python lists / byte strings for the insert."""
    for key in _BATCH_GAME_FIELDS + _BATCH_STEP_FIELDS:
        if key not in batch:
            raise KeyError(f"missing field {key!r}")
    gi = np.asarray(batch["game_index"])
    G = gi.shape[0] if gi.ndim == 1 else -1
    if G < 0:
        raise ValueError("game_index must be one-dimensional")
    for key in _BATCH_GAME_FIELDS:
        n = np.asarray(batch[key]).shape
        want = (G + 1,) if key == "move_offsets" else (G,)
        if n != want:
            raise ValueError(f"{key} has shape {n}, expected {want}")
    offs = np.asarray(batch["move_offsets"], dtype=np.int64)
    mc = np.asarray(batch["move_count"], dtype=np.int64)
    moves = np.ascontiguousarray(batch["moves"], dtype=np.uint8)
    if moves.ndim != 2 or moves.shape[1] != MOVE_RECORD_SIZE:
        raise ValueError(f"moves has shape {moves.shape}, expected (M, {MOVE_RECORD_SIZE})")
    M = moves.shape[0]
    hashes = np.ascontiguousarray(batch["hashes"], dtype=_schema.HASH_DTYPE)
    phases = np.ascontiguousarray(batch["phases"], dtype=np.uint8)
    players = np.ascontiguousarray(batch["players"], dtype=np.uint8)
    for key, arr in (("hashes", hashes), ("phases", phases), ("players", players)):
        if arr.shape != (M,):
            raise ValueError(f"{key} has shape {arr.shape}, expected ({M},)")
    if G and (offs[0] < 0 or offs[-1] > M or np.any(np.diff(offs) != mc)):
        raise ValueError("move_offsets do not match move_count and the step arrays")
    kind = batch.get("hash_kind", "reference")
    if kind not in HASH_KIND_NAMES:
        raise ValueError(f"hash_kind {kind!r} is not one of {', '.join(HASH_KIND_NAMES)}")
    steps, step_offsets = _core.pack_steps(moves, phases, players, offs)
    if HASH_KIND_NAMES.index(kind) in HASH_STORED_AS:  # the low 32 bits per step, the final state's 64
        kind_code = HASH_STORED_AS[HASH_KIND_NAMES.index(kind)]
        last = np.asarray(offs[1:] - 1)
        final = np.where(mc > 0, hashes[np.maximum(last, 0)] if M else 0, 0).astype(np.uint64).view(np.int64)
        final = [f if n else None for f, n in zip(final.tolist(), mc.tolist())]
        stored = hashes.astype(_schema.FAST32_DTYPE)
    else:
        kind_code = HASH_KIND_NAMES.index(kind)
        final = [None] * G
        stored = hashes
    seconds = np.asarray(batch["seconds"], dtype=np.float64)
    dur = np.rint(np.nan_to_num(seconds, nan=0.0) * 1000.0).astype(np.int64)
    return {
        "G": G,
        "game_index": gi.astype(np.int64).tolist(),
        "move_count": mc.tolist(),
        "winner": np.asarray(batch["winner"]).astype(np.int64).tolist(),
        "reason": np.asarray(batch["reason"]).astype(np.int64).tolist(),
        "capped": (np.asarray(batch["capped"]) != 0).astype(np.int64).tolist(),
        "duration_ms": dur.tolist(),
        "steps": _core.split_blob(steps, step_offsets),
        "hashes": _core.split_blob(stored, offs, stored.dtype.itemsize),
        "hash_kind": kind_code,
        "final_hash": final,
    }


def _logical(row: GameRow) -> tuple:
    """A GameRow as a ``LOGICAL_COLUMNS`` tuple (for repacking rows of an older file)."""
    return (row.board, row.num_players, row.policy, row.seed, row.game_index, row.engine_version, row.host,
            row.max_moves, row.winner, row.reason, row.move_count, int(row.capped), row.started_at,
            row.duration_ms, row.created_at, row.parity_status, row.moves.tobytes(),
            np.ascontiguousarray(row.hashes, dtype=_schema.HASH_DTYPE).tobytes(), row.phases.tobytes(),
            row.players.tobytes())


__all__ = ["GameDB", "GameRow", "utc_now"]
