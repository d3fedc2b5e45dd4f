"""Tests of the game database (``ringrift.db.GameDB``) on real SQLite files."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager

import numpy as np
import pytest

import ringrift
from ringrift import _core
from ringrift.db import DBError, DBSchemaError, GameDB, GameRow, SCHEMA_VERSION

RUN = dict(board="square8", num_players=2, seed=11, policy="random",
           engine_version="test-1", host="testhost", max_moves=2000)

# The games table as documented in docs/game_db.md: (name, declared type, not null).
GAMES_COLUMNS = [
    ("id", "INTEGER", 0), ("board", "TEXT", 1), ("num_players", "INTEGER", 1), ("policy", "TEXT", 1),
    ("seed", "INTEGER", 1), ("game_index", "INTEGER", 1), ("engine_version", "TEXT", 0),
    ("host", "TEXT", 0), ("max_moves", "INTEGER", 0), ("winner", "INTEGER", 1), ("reason", "TEXT", 0),
    ("move_count", "INTEGER", 1), ("capped", "INTEGER", 1), ("started_at", "TEXT", 0),
    ("duration_ms", "INTEGER", 0), ("created_at", "TEXT", 1), ("parity_status", "TEXT", 1),
    ("hash_kind", "INTEGER", 1), ("final_hash", "INTEGER", 0), ("steps", "BLOB", 1), ("hashes", "BLOB", 1),
]


def _batch(board="square8", num_players=2, seed=11, games=range(20), policy="random", max_moves=2000):
    return _core.selfplay_batch(board, num_players, seed, list(games), policy=policy, max_moves=max_moves)


def _insert(db, batch, **over):
    kw = dict(RUN)
    kw.update(over)
    return db.insert_batch(batch, **kw)


@pytest.fixture(scope="module")
def batch():
    return _batch()


@pytest.fixture
def dbpath(tmp_path):
    return tmp_path / "games.db"


def _copy_batch(b):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in b.items()}


# ---- schema -----------------------------------------------------------------------------

def test_schema_creation(dbpath):
    with GameDB(dbpath) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    con = sqlite3.connect(dbpath)
    try:
        info = con.execute("PRAGMA table_info(games)").fetchall()
        assert [(r[1], r[2], r[3]) for r in info] == GAMES_COLUMNS
        assert [r[1] for r in info if r[5]] == ["id"]
        meta = dict(con.execute("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION) == "3"
        assert meta["format"] == "ringrift-gamedb"
        uniques = [r[1] for r in con.execute("PRAGMA index_list(games)") if r[2]]
        cols = [[c[2] for c in con.execute(f"PRAGMA index_info('{name}')")] for name in uniques]
        # the identity led by its integers, so an insert's uniqueness probe compares no text
        assert ["seed", "game_index", "board", "num_players", "policy"] in cols
        # only checked games in the parity index: a new (unchecked) game pays no index insert
        (ddl,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'idx_games_parity'").fetchone()
        assert ddl.endswith("ON games (parity_status) WHERE parity_status <> 'unchecked'")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"meta", "games"}
    finally:
        con.close()
    # reopening an existing file keeps it as it is
    with GameDB(dbpath, create=False) as db:
        assert db.count_games() == 0


# ---- insert / read --------------------------------------------------------------------------

def test_two_processes_creating_one_db_at_once_both_open_it(tmp_path):
    """Two runs that start together on a new DB file: SQLite refuses the switch to WAL at once
    ("database is locked", no busy wait) while the other connection holds the file, which made
    one of them fail about half the time. Separate processes, started on a shared instant."""
    import subprocess
    import sys
    import time

    code = ("import sys, time\nfrom ringrift.db import GameDB\nt = float(sys.argv[2])\n"
            "while time.time() < t: pass\nwith GameDB(sys.argv[1]) as g: print(g.count_games())")
    for k in range(12):
        path = tmp_path / f"new{k}.db"
        start = repr(time.time() + 0.4)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), start], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0] and [o.strip() for o, _ in outs] == ["0", "0"], outs


def test_insert_and_read_round_trip(dbpath, batch):
    with GameDB(dbpath) as db:
        assert _insert(db, batch, started_at="2025-01-02T03:04:05.000+00:00") == 20
        rows = list(db.iter_games())
    assert len(rows) == 20
    offs = batch["move_offsets"]
    for g, row in enumerate(rows):
        assert isinstance(row, GameRow)
        a, b = offs[g], offs[g + 1]
        assert row.identity == ("square8", 2, "random", 11, int(batch["game_index"][g]))
        assert row.move_count == batch["move_count"][g] == b - a
        assert row.winner == batch["winner"][g]
        assert row.reason == (_core.REASONS[batch["reason"][g]] or None)
        assert row.capped == bool(batch["capped"][g])
        assert row.duration_ms == round(batch["seconds"][g] * 1000)
        assert (row.engine_version, row.host, row.max_moves) == ("test-1", "testhost", 2000)
        assert row.started_at == "2025-01-02T03:04:05.000+00:00"
        assert row.created_at.endswith("+00:00")
        assert row.parity_status == "unchecked"
        assert row.moves.shape == (b - a, 16) and row.moves.dtype == np.uint8
        np.testing.assert_array_equal(row.moves, batch["moves"][a:b])
        # self-play records the cells step hash; the DB keeps its low 32 bits and the final one whole
        assert batch["hash_kind"] == "cells64" and row.hash_kind == "cells32"
        np.testing.assert_array_equal(row.hashes, batch["hashes"][a:b] & 0xFFFFFFFF)
        assert row.final_hash == int(batch["hashes"][b - 1])
        np.testing.assert_array_equal(row.phases, batch["phases"][a:b])
        np.testing.assert_array_equal(row.players, batch["players"][a:b])
        assert row.hash_hex(0) == f"{int(batch['hashes'][a]) & 0xFFFFFFFF:08x}"
        rec = row.move_records()
        assert rec["type"][0] == batch["moves"][a, 0]
    # the blobs are the documented byte layouts
    con = sqlite3.connect(dbpath)
    try:
        kind, final, steps, hs = con.execute(
            "SELECT hash_kind, final_hash, steps, hashes FROM games WHERE game_index = 0").fetchone()
    finally:
        con.close()
    a, b = offs[0], offs[1]
    assert kind == 4 and final == int(batch["hashes"][b - 1].astype(np.int64))
    assert hs == batch["hashes"][a:b].astype("<u4").tobytes()
    mv, ph, pl = _core.unpack_steps(steps, b - a)
    assert mv.tobytes() == batch["moves"][a:b].tobytes()
    assert ph.tobytes() == batch["phases"][a:b].tobytes() and pl.tobytes() == batch["players"][a:b].tobytes()
    assert len(steps) < 6 * (b - a)  # packed: 2 to 6 bytes a step, not 18


def test_move_records_decode(dbpath):
    b = _batch(games=range(2))
    with GameDB(dbpath) as db:
        _insert(db, b)
        row = next(db.iter_games())
    game = ringrift.Game("square8", 2)
    for i in range(row.move_count):
        m = _core.move_from_record(row.moves[i].tobytes())
        assert m.to_record() == row.moves[i].tobytes()
        assert row.move_records()[i]["type"] == _core.MOVE_TYPES.index(m.type)
        game.apply(m)
        assert game.cells_hash() & 0xFFFFFFFF == row.hashes[i] == game.step_hash("cells32")
        assert game.hash() == f"{int(row.reference_hashes()[i]):016x}"
        assert _core.PHASES[row.phases[i]] == game.phase
        assert row.players[i] == game.current_player


def test_duplicate_batch_inserts_nothing(dbpath, batch):
    with GameDB(dbpath) as db:
        assert _insert(db, batch) == 20
        assert _insert(db, batch) == 0
        assert db.count_games() == 20
        # an overlapping batch adds only the new games
        assert _insert(db, _batch(games=range(10, 30))) == 10
        assert db.count_games() == 30
        # another seed / policy is another identity
        assert _insert(db, batch, seed=12) == 20
        assert db.count_games() == 50


def test_batch_is_atomic_on_constraint_failure(dbpath, batch):
    bad = _copy_batch(batch)
    bad["winner"][7] = 9  # CHECK (winner BETWEEN 0 AND num_players) fails on the 8th row
    with GameDB(dbpath) as db:
        assert _insert(db, _batch(games=range(100, 103))) == 3
        with pytest.raises(DBError, match="nothing of the batch was stored") as ei:
            _insert(db, bad)
        assert str(dbpath) in str(ei.value)
        assert db.count_games() == 3
        assert db.existing_indices(**{k: RUN[k] for k in ("board", "num_players", "seed", "policy")}) == {100, 101, 102}
        # the store is still usable afterwards
        assert _insert(db, batch) == 20
    with GameDB(dbpath) as db:
        assert db.count_games() == 23


def test_insert_checks_hold_without_a_per_row_ephemeral_table(dbpath, batch):
    """The CHECKs on capped and hash_kind still refuse bad values, and the insert statement builds
    no ephemeral table per row (SQLite does for an IN list in a CHECK: a third of the insert cost)."""
    from ringrift.db import store

    with GameDB(dbpath) as db:
        ops = [r[1] for r in db.conn.execute("EXPLAIN " + store._INSERT_SQL, [None] * len(store.INSERT_COLUMNS))]
        assert "OpenEphemeral" not in ops
        assert _insert(db, batch) == 20
        cols = ", ".join(store.INSERT_COLUMNS)
        good = db.conn.execute(f"SELECT {cols} FROM games ORDER BY id LIMIT 1").fetchone()
        at = {c: i for i, c in enumerate(store.INSERT_COLUMNS)}
        for col, value in (("capped", 2), ("capped", 0.5), ("capped", -1), ("hash_kind", 3), ("hash_kind", -1)):
            row = list(good)
            row[at[col]] = value
            row[at["game_index"]] = 10_000
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                db.conn.execute(store._INSERT_SQL, row)
        assert db.count_games() == 20


@pytest.mark.parametrize("writer", ["python", "native"])
def test_batch_is_atomic_on_bad_python_field(dbpath, batch, writer, monkeypatch):
    monkeypatch.setenv("RINGRIFT_DB_WRITER", writer)  # native: where it can run (test_db_writer.py)
    bad = _copy_batch(batch)
    bad["reason"][12] = 200  # not an index of _core.REASONS: the Python path fails while rows stream in
    with GameDB(dbpath) as db:
        with pytest.raises(DBError, match="bad batch field|malformed batch: reason code 200 of game 12"):
            _insert(db, bad)
        assert db.count_games() == 0


def test_malformed_batch_rejected(dbpath, batch):
    bad = _copy_batch(batch)
    bad["move_count"][3] += 1
    with GameDB(dbpath) as db:
        with pytest.raises(DBError, match="malformed batch"):
            _insert(db, bad)
        missing = {k: v for k, v in batch.items() if k != "hashes"}
        with pytest.raises(DBError, match="hashes"):
            _insert(db, missing)
        assert db.count_games() == 0


def test_empty_batch(dbpath):
    with GameDB(dbpath) as db:
        assert _insert(db, _batch(games=[])) == 0


# ---- opening errors -------------------------------------------------------------------------

def test_schema_version_mismatch(dbpath):
    with GameDB(dbpath):
        pass
    con = sqlite3.connect(dbpath)
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")  # a newer ringrift's file
    con.commit()
    con.close()
    with pytest.raises(DBSchemaError) as ei:
        GameDB(dbpath)
    err = ei.value
    assert isinstance(err, DBError) and isinstance(err, ringrift.RingRiftError)
    assert str(dbpath) in str(err) and "4" in str(err) and "3" in str(err)
    assert (err.found, err.expected) == ("4", SCHEMA_VERSION)


@pytest.mark.parametrize("content", [
    os.urandom(64 * 1024),
    os.urandom(10),
    b"SQLite format 3\x00" + os.urandom(8192 - 16),
    b"hello, this is a text file\n" * 100,
], ids=["random-64k", "random-10-bytes", "magic-then-garbage", "text-file"])
def test_not_a_database(tmp_path, content):
    p = tmp_path / "junk.db"
    p.write_bytes(content)
    for kw in ({}, {"readonly": True}, {"create": False}):
        with pytest.raises(DBError) as ei:
            GameDB(p, **kw)
        assert str(p) in str(ei.value)
        assert not isinstance(ei.value, sqlite3.Error)


def test_truncated_database(tmp_path, batch):
    p = tmp_path / "real.db"
    with GameDB(p) as db:
        _insert(db, batch)
        _insert(db, batch, seed=99)
    data = p.read_bytes()
    assert data.startswith(b"SQLite format 3\x00") and len(data) > 3 * 32768
    for cut in (len(data) // 2, len(data) - 32768, 32768 + 1000, 50):
        q = tmp_path / f"cut{cut}.db"
        q.write_bytes(data[:cut])
        with pytest.raises(DBError) as ei:
            with GameDB(q, create=False) as db:
                list(db.iter_games())
        assert str(q) in str(ei.value)
    # with a (junk) write-ahead log beside it the header check stands back; SQLite's own
    # errors on reading the missing pages must still come out as DBError
    q = tmp_path / "cutwal.db"
    q.write_bytes(data[:len(data) // 2])
    (tmp_path / "cutwal.db-wal").write_bytes(os.urandom(4096))
    with pytest.raises(DBError) as ei:
        with GameDB(q, create=False) as db:
            list(db.iter_games())
            db.summary()
    assert str(q) in str(ei.value)


def _sqlite_file(path, *statements):
    """A SQLite file that is not a game DB, made by running `statements`."""
    con = sqlite3.connect(path)
    for sql in statements:
        con.execute(sql)
    con.commit()
    con.close()
    return path


def test_missing_file_and_other_paths(tmp_path, batch):
    with pytest.raises(DBError, match="no such game database"):
        GameDB(tmp_path / "absent.db", create=False)
    with pytest.raises(DBError, match="no such game database"):
        GameDB(tmp_path / "absent.db", readonly=True)
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(DBError, match="directory"):
        GameDB(tmp_path)
    with pytest.raises(DBError, match="does not exist"):
        GameDB(tmp_path / "no" / "such" / "dir.db")
    # a SQLite file that is someone else's
    other = _sqlite_file(tmp_path / "other.db", "CREATE TABLE t (x)")
    before = other.read_bytes()
    with pytest.raises(DBError, match="not a ringrift game database"):
        GameDB(other)
    # ... and one with a meta table of its own, and an empty file opened as an existing DB: each is
    # refused without a byte written to it (the switch to WAL would rewrite the header)
    foreign = _sqlite_file(tmp_path / "foreign.db", "CREATE TABLE meta (key TEXT, value TEXT)",
                           "INSERT INTO meta VALUES ('format', 'someone-else')")
    foreign_before = foreign.read_bytes()
    with pytest.raises(DBError, match="meta.format is 'someone-else'"):
        GameDB(foreign)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(DBError, match="empty database"):
        GameDB(empty, create=False)
    assert other.read_bytes() == before and foreign.read_bytes() == foreign_before and empty.read_bytes() == b""
    # a FIFO (its header read would wait forever for a writer) and a device (it read as empty)
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    from ringrift.db.replaydb import replaydb_summary  # what `ringrift-db info` tries next

    for path in (fifo, "/dev/urandom"):
        with pytest.raises(DBError, match="not a regular file, not a game database"):
            GameDB(path, create=False)
        with pytest.raises(DBError, match="not a regular file, not a replay database"):
            replaydb_summary(path)
    fifo.unlink()
    assert not any(p.name.endswith(("-wal", "-shm")) for p in tmp_path.iterdir())
    # read-only handles refuse writes
    p = tmp_path / "ro.db"
    GameDB(p).close()
    with GameDB(p, readonly=True) as db:
        with pytest.raises(DBError, match="read-only"):
            _insert(db, batch)
    db = GameDB(p)
    db.close()
    db.close()
    with pytest.raises(DBError, match="closed"):
        db.count_games()


# ---- queries --------------------------------------------------------------------------------

def test_existing_indices(dbpath):
    with GameDB(dbpath) as db:
        assert db.existing_indices(board="square8", num_players=2, seed=11, policy="random") == set()
        _insert(db, _batch(games=[0, 3, 5, 8]))
        _insert(db, _batch(games=[1, 2]), seed=12)
        _insert(db, _batch(games=[7], policy="heuristic"), policy="heuristic")
        assert db.existing_indices(board="square8", num_players=2, seed=11, policy="random") == {0, 3, 5, 8}
        assert db.existing_indices(board="square8", num_players=2, seed=12, policy="random") == {1, 2}
        assert db.existing_indices(board="square8", num_players=2, seed=11, policy="heuristic") == {7}
        assert db.existing_indices(board="hex8", num_players=2, seed=11, policy="random") == set()


def test_filters_sampling_and_parity_status(dbpath):
    with GameDB(dbpath) as db:
        _insert(db, _batch(games=range(30)))
        _insert(db, _batch("hex8", 3, games=range(10)), board="hex8", num_players=3)
        assert db.count_games() == 40
        assert db.count_games(board="hex8") == 10
        assert db.count_games(board="square8", num_players=2) == 30
        assert db.count_games(game_index=[0, 1, 2]) == 6
        assert len(list(db.iter_games(board="hex8", num_players=3))) == 10
        with pytest.raises(TypeError):
            db.count_games(colour="red")

        s1 = [r.id for r in db.iter_games(sample=7, seed_for_sample=5)]
        s2 = [r.id for r in db.iter_games(sample=7, seed_for_sample=5)]
        s3 = [r.id for r in db.iter_games(sample=7, seed_for_sample=6)]
        assert len(s1) == 7 and s1 == s2 == sorted(s1) and s1 != s3
        assert len(list(db.iter_games(board="hex8", sample=100))) == 10
        assert [r.id for r in db.iter_games(ids=[s1[3], s1[0], 10_000])] == sorted([s1[0], s1[3]])

        assert db.set_parity_status(s1[:4], "ok") == 4
        assert db.set_parity_status(s1[4], "failed") == 1
        assert {r.id for r in db.iter_games(parity_status="ok")} == set(s1[:4])
        assert db.count_games(parity_status="failed") == 1
        assert db.count_games(parity_status="unchecked") == 35
        with pytest.raises(ValueError):
            db.set_parity_status([1], "")
        assert db.get_game(s1[0]).parity_status == "ok"
        with pytest.raises(KeyError):
            db.get_game(10_000)


def _older_layout(path):
    """A schema-3 file as versions before the integer-led identity made it: the identity led by
    board, every game in the parity index."""
    from ringrift.db import schema

    with GameDB(path):
        pass
    con = sqlite3.connect(path)
    with con:
        table = schema.GAMES_TABLE_SQL.format(name="games_old").replace(
            "UNIQUE (seed, game_index, board, num_players, policy)", "UNIQUE (board, num_players, policy, seed, game_index)")
        assert "UNIQUE (board, num_players, policy, seed, game_index)" in table
        con.execute(table)
        con.execute("DROP TABLE games")
        con.execute("ALTER TABLE games_old RENAME TO games")
        con.execute("CREATE INDEX idx_games_parity ON games (parity_status)")
    con.close()


@pytest.mark.parametrize("layout", ["current", "older"])
def test_identity_and_parity_queries_on_either_layout(dbpath, batch, layout):
    if layout == "older":
        _older_layout(dbpath)
    with GameDB(dbpath) as db:
        assert _insert(db, batch) == 20
        assert _insert(db, batch) == 0  # ON CONFLICT names the identity as a set: either order
        assert _insert(db, _batch(games=range(15, 25))) == 5
        assert db.existing_indices(board="square8", num_players=2, seed=11, policy="random") == set(range(25))
        ids = sorted(r.id for r in db.iter_games())
        assert db.set_parity_status(ids[:3], "ok") == 3 and db.set_parity_status(ids[3], "failed") == 1
        assert db.summary()["parity_status"] == {"failed": 1, "ok": 3, "unchecked": 21}
        assert [r.id for r in db.iter_games(parity_status="ok")] == ids[:3]
        assert db.count_games(parity_status=["ok", "failed"]) == 4
        assert db.count_games(parity_status=["ok", "unchecked"]) == 24
        assert db.count_games(parity_status="unchecked") == 21
        plan = " ".join(r[3] for r in db.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM games WHERE parity_status = 'failed' AND parity_status <> 'unchecked'"))
        assert "idx_games_parity" in plan  # the filters' extra clause lets the partial index serve
        db.set_parity_status(ids, "ok")
        assert db.summary()["parity_status"] == {"ok": 25}


def test_iter_games_pages_through_many_rows(dbpath):
    with GameDB(dbpath) as db:
        _insert(db, _batch(games=range(600), max_moves=20), max_moves=20)
        ids = [r.id for r in db.iter_games()]
        assert len(ids) == 600 and ids == sorted(ids) and len(set(ids)) == 600
        assert sum(1 for _ in db.iter_games(ids=ids[::2])) == 300


def test_any_number_of_ids_is_queried_a_chunk_at_a_time(dbpath):
    """iter_games(ids=...), its `id` filter and count_games(id=[...]) bound every id in one
    `IN (...)`: past SQLite's variable limit (32766 by default, 250000 in some builds) they
    failed with "too many SQL variables". 300,000 ids are past every build's default, and the
    limit is lowered to the old default of 999 where Python can (3.11+)."""
    with GameDB(dbpath) as db:
        _insert(db, _batch(games=range(6), max_moves=20), max_moves=20)
        _insert(db, _batch("hex8", 2, games=range(3), max_moves=20), board="hex8", max_moves=20)
        stored = [r.id for r in db.iter_games()]
        square = [r.id for r in db.iter_games(board="square8")]
        if hasattr(db.conn, "setlimit"):
            db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        many = range(0, 300_000)
        assert [r.id for r in db.iter_games(ids=many)] == stored
        assert [r.id for r in db.iter_games(id=list(many))] == stored
        assert [r.id for r in db.iter_games(ids=reversed(many), board="square8")] == square  # order, filters kept
        assert [r.id for r in db.iter_games(ids=np.arange(300_000), board="hex8", sample=2, seed_for_sample=1)] \
            == sorted(r.id for r in db.iter_games(board="hex8", sample=2, seed_for_sample=1))
        assert db.count_games(id=list(many)) == 9 and db.count_games(id=list(many), board="hex8") == 3
        assert list(db.iter_games(ids=range(10**6, 2 * 10**6))) == [] and db.count_games(id=[]) == 0


def test_long_list_filters_on_any_column_are_one_json_array(dbpath):
    """A list filter on another column (game_index, seed, board...) bound one variable per value
    failed past SQLite's variable limit ("too many SQL variables"); a long one is now one JSON
    array. The same rows, in id order, with the other filters and an id list kept."""
    with GameDB(dbpath) as db:
        _insert(db, _batch(games=range(6), max_moves=20), max_moves=20)
        _insert(db, _batch("hex8", 2, games=range(3), max_moves=20), board="hex8", max_moves=20)
        rows = list(db.iter_games())
        if hasattr(db.conn, "setlimit"):
            db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        many = list(range(300_000)) + [2**64, -2**70]  # ints no column can hold match nothing
        assert [r.id for r in db.iter_games(game_index=many)] == [r.id for r in rows]
        assert [r.id for r in db.iter_games(game_index=np.arange(300_000), board="hex8")] == \
            [r.id for r in rows if r.board == "hex8"]
        assert db.count_games(game_index=many) == 9 and db.count_games(game_index=many, board="hex8") == 3
        odd = [r.id for r in rows if r.game_index % 2]
        assert [r.id for r in db.iter_games(game_index=list(range(1, 300_001, 2)))] == odd
        assert [r.id for r in db.iter_games(ids=range(300_000), game_index=list(range(1, 300_001, 2)))] == odd
        assert db.count_games(id=list(range(300_000)), game_index=list(range(1, 300_001, 2))) == len(odd)
        assert len(list(db.iter_games(game_index=many, sample=4, seed_for_sample=3))) == 4
        boards = ["square8"] + [f"b{i}" for i in range(1000)]
        assert db.count_games(board=boards) == 6 and db.count_games(seed=list(range(1000, 2000))) == 0
        with pytest.raises(TypeError, match="game filter 'seed': a list of more than 256 values may hold only"):
            db.count_games(seed=[object()] * 300)
        # short lists and single values beyond 64 bits match nothing too (sqlite3 raised OverflowError)
        assert db.count_games(seed=[2**64]) == 0 and list(db.iter_games(seed=2**64)) == []
        assert [r.id for r in db.iter_games(game_index=[1, 2**70, np.int64(2)])] == \
            [r.id for r in rows if r.game_index in (1, 2)]


def test_summary(dbpath, batch):
    with GameDB(dbpath) as db:
        _insert(db, batch)
        _insert(db, _batch("hex8", 4, games=range(5), max_moves=30), board="hex8", num_players=4, max_moves=30)
        s = db.summary()
    assert s["games"] == 25
    assert s["moves"] == int(batch["total_moves"]) + s["by_config"][0]["moves"]
    assert s["capped"] == int(batch["capped"].sum()) + 5
    assert sum(s["wins_by_seat"].values()) == 25
    assert s["wins_by_seat"].get(0, 0) == 5 + int((batch["winner"] == 0).sum())
    assert sum(s["reasons"].values()) == 25 and s["reasons"]["none"] >= 5
    assert s["parity_status"] == {"unchecked": 25}
    assert [(c["board"], c["num_players"], c["games"]) for c in s["by_config"]] == [("hex8", 4, 5), ("square8", 2, 20)]


# ---- merge ----------------------------------------------------------------------------------

def test_merge(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with GameDB(a) as db:
        _insert(db, _batch(games=range(0, 10)))
    with GameDB(b) as db:
        _insert(db, _batch(games=range(5, 15)))
        _insert(db, _batch("hex8", 2, games=range(3)), board="hex8")
        db.set_parity_status([r.id for r in db.iter_games(board="hex8")], "ok")
    assert not any(p.name.endswith(("-wal", "-shm")) for p in tmp_path.iterdir())
    with GameDB(a) as db:
        assert db.merge_from(b) == 8
        # the merged-from file is left as it was found, with no -wal/-shm beside it
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("b.db")) == ["b.db"]
        assert db.merge_from(b) == 0
        assert db.count_games() == 18
        assert db.existing_indices(board="square8", num_players=2, seed=11, policy="random") == set(range(15))
        assert db.count_games(board="hex8", parity_status="ok") == 3
        merged = {r.identity: r for r in db.iter_games()}
    with GameDB(b) as db:
        for r in db.iter_games():
            m = merged[r.identity]
            np.testing.assert_array_equal(m.moves, r.moves)
            np.testing.assert_array_equal(m.hashes, r.hashes)

    # another schema version is refused, and nothing is merged
    c = tmp_path / "c.db"
    with GameDB(c) as db:
        _insert(db, _batch(games=range(20, 25)))
    con = sqlite3.connect(c)
    con.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with GameDB(a) as db:
        with pytest.raises(DBSchemaError):
            db.merge_from(c)
        with pytest.raises(DBError, match="no such"):
            db.merge_from(tmp_path / "absent.db")
        with pytest.raises(DBError, match="itself"):
            db.merge_from(a)
        os.link(a, tmp_path / "hard.db")  # the same file under another name
        with pytest.raises(DBError, match="itself"):
            db.merge_from(tmp_path / "hard.db")
        junk = tmp_path / "junk.db"
        junk.write_bytes(os.urandom(5000))
        with pytest.raises(DBError):
            db.merge_from(junk)
        assert db.count_games() == 18


# ---- replay verification ------------------------------------------------------------------------

@pytest.mark.parametrize("board,num_players,policy,max_moves", [
    ("square8", 2, "random", 2000),
    ("square8", 3, "heuristic", 2000),
    ("hex8", 4, "random", 2000),
    ("square19", 2, "random", 300),
    ("hexagonal", 3, "heuristic", 200),
])
def test_replay_verify_every_stored_game(dbpath, board, num_players, policy, max_moves):
    b = _batch(board, num_players, seed=3, games=range(6), policy=policy, max_moves=max_moves)
    with GameDB(dbpath) as db:
        assert _insert(db, b, board=board, num_players=num_players, seed=3, policy=policy,
                       max_moves=max_moves) == 6
        rows = list(db.iter_games())
    assert len(rows) == 6
    for row in rows:
        game = ringrift.Game(row.board, row.num_players)
        assert _core.replay_verify(game, row.moves, row.hashes, row.hash_kind) == (-1, "")
        assert game.move_count == row.move_count
        assert (game.winner or 0) == row.winner
    # a damaged hash is caught at its step
    row = rows[0]
    hashes = row.hashes.copy()
    hashes[5] ^= 1
    step, why = _core.replay_verify(ringrift.Game(row.board, row.num_players), row.moves, hashes, "cells32")
    assert step == 5 and "cells32" in why
    step, why = _core.replay_verify(ringrift.Game(row.board, row.num_players), row.moves, hashes)  # auto kind
    assert step == 5 and why


class _InterruptAt:
    """The real connection, with a Ctrl-C raised right after one statement has run (the
    interrupt's timing is the only thing injected; SQLite does all the work)."""

    def __init__(self, conn, statement):
        self._conn, self._statement = conn, statement

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        result = self._conn.execute(sql, *args)
        if sql == self._statement:
            raise KeyboardInterrupt
        return result


@pytest.mark.parametrize("statement, stored", [("COMMIT", 3), ("BEGIN IMMEDIATE", 0)])
def test_ctrl_c_around_a_commit_stays_a_ctrl_c_and_the_db_says_what_it_holds(tmp_path, statement, stored,
                                                                             monkeypatch):
    # The Python writer's transaction (the native one takes no Ctrl-C until it has returned).
    monkeypatch.setenv("RINGRIFT_DB_WRITER", "python")
    batch = _core.selfplay_batch("square8", 2, 1, [0, 1, 2], "random", threads=1, max_moves=2000)
    with GameDB(tmp_path / "c.db") as db:
        real = db._conn
        db._conn = _InterruptAt(real, statement)
        try:
            with pytest.raises(KeyboardInterrupt):  # not a DBError claiming nothing was stored
                db.insert_batch(batch, board="square8", num_players=2, seed=1, policy="random",
                                engine_version="t", host="t", max_moves=2000)
        finally:
            db._conn = real
        assert not real.in_transaction
        assert db.count_games() == stored


def test_readonly_open_in_a_read_only_folder_writes_nothing_beside_the_file(tmp_path):
    """A WAL-mode game DB on read-only media (the golden files under ../shared) is read without
    the -wal/-shm files SQLite would otherwise create next to it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "games.db"
    with GameDB(path) as db:
        assert db.count_games() == 0
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)
    try:
        with GameDB(path, create=False, readonly=True) as db:
            assert db.count_games() == 0
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        folder.chmod(0o755)


def test_ids_beyond_64_bits_are_unknown_ids_not_overflow_errors(dbpath, batch):
    with GameDB(dbpath) as db:
        _insert(db, batch)
        with pytest.raises(KeyError, match="no game with id"):
            db.get_game(2**64)
        assert list(db.iter_games(ids=[2**64, -2**70])) == []
        assert db.set_parity_status([2**64], "ok") == 0


# ---- damaged rows ---------------------------------------------------------------------------

def test_a_damaged_row_fails_as_one_game_and_the_rest_are_checked(dbpath, batch):
    """Rows a damaged file (or a writer with its CHECKs off) can hold: each is one line naming the
    game and the field, and parity tags it failed and checks the others."""
    from ringrift.db.replaydb import completed_at
    from ringrift.parity.db_check import verify_db

    with GameDB(dbpath) as db:
        _insert(db, batch)
        ids = [r[0] for r in db.conn.execute("SELECT id FROM games ORDER BY id")]
        blob = bytearray(db.conn.execute("SELECT steps FROM games WHERE id = ?", (ids[0],)).fetchone()[0])
        blob[5] ^= 0x80
        db.conn.execute("UPDATE games SET steps = ? WHERE id = ?", (bytes(blob), ids[0]))
        db.conn.execute("PRAGMA ignore_check_constraints = ON")
        damage = {ids[1]: ("board = 'chess'", "unknown board 'chess'"),
                  ids[2]: ("hash_kind = 7", "hash_kind 7 is not one of 0..4"),
                  ids[3]: ("hashes = zeroblob(0)", "hashes hold 0 bytes, not"),
                  ids[4]: ("steps = 'text'", "steps is a str, not a blob"),
                  ids[5]: ("num_players = 7", "num_players 7 is not 2, 3 or 4"),
                  ids[6]: ("move_count = 'abc'", "move_count 'abc' is not a count")}
        for gid, (change, _) in damage.items():
            db.conn.execute(f"UPDATE games SET {change} WHERE id = ?", (gid,))
    with GameDB(dbpath, readonly=True) as db:
        for gid, (_, why) in damage.items():
            with pytest.raises(DBError, match=f"corrupt game row: game {gid}: {why}"):
                db.get_game(gid)
        with pytest.raises(DBError, match=f"corrupt game row: game {ids[0]}: packed steps"):
            list(db.iter_games())
        seen = []
        good = [r.id for r in db.iter_games(on_corrupt=lambda gid, why: seen.append(gid))]
    assert seen == ids[:7] and good == ids[7:]
    out = __import__("io").StringIO()
    matched, checked, _ = verify_db(dbpath, out=out)
    assert (matched, checked) == (len(ids) - 7, len(ids)), out.getvalue()
    assert out.getvalue().count("corrupt row: game") == 7
    with GameDB(dbpath, readonly=True) as db:
        assert db.summary()["parity_status"] == {"failed": 7, "ok": len(ids) - 7}
    # a start or duration no clock can hold has no completion time rather than an OverflowError
    assert completed_at("2026-01-01T00:00:00+00:00", 1500) == "2026-01-01T00:00:01.500+00:00"
    for start, ms in (("2026-01-01T00:00:00+00:00", 2**63 - 1), ("2026-01-01T00:00:00+00:00", -2**63),
                      ("9999-12-31T23:59:59+00:00", 100000), ("2026-01-01T00:00:00+00:00", "abc"), (12345, 1)):
        assert completed_at(start, ms) is None


def test_readonly_open_leaves_no_wal_or_shm_beside_the_file_and_refuses_writes(tmp_path, batch):
    """A mode=ro connection could not remove the -wal/-shm that reading a WAL-mode file made:
    they stayed beside the file after every `ringrift-db info` and export. Read-only handles now
    tidy up as the last connection to close, and still refuse every write."""
    import sqlite3

    from ringrift.db.replaydb import replaydb_summary

    path = tmp_path / "games.db"
    with GameDB(path) as db:
        _insert(db, batch)
        stored = db.count_games()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]
    before = path.read_bytes()
    with GameDB(path, readonly=True) as db:
        assert db.count_games() == stored
        assert (tmp_path / "games.db-shm").exists()  # reading a WAL file makes them: the check can fail
        with pytest.raises(DBError, match="read-only"):
            _insert(db, batch)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.conn.execute("DELETE FROM games")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]
    assert path.read_bytes() == before
    with pytest.raises(DBError, match="not a replay database"):  # `ringrift-db info` tries it too
        replaydb_summary(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]
    # while another connection holds the file, the reader leaves the log to it
    keep = sqlite3.connect(path)
    keep.execute("SELECT count(*) FROM games").fetchone()
    with GameDB(path, readonly=True) as db:
        assert db.count_games() == stored
    assert (tmp_path / "games.db-wal").exists()
    keep.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]


_AS_ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                              reason="reading as another user needs root here (a subprocess drops to uid 65534)")


@contextmanager
def _someone_elses_db(batch):
    """A game DB in a 0755 folder of root's under /tmp (pytest's own folders are 0700), for a
    subprocess that reads it as uid 65534: yields (folder, path, games stored)."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="ringrift-shared-")
    try:
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "games.db")
        with GameDB(path) as db:
            _insert(db, batch)
            stored = db.count_games()
        os.chmod(path, 0o644)
        yield folder, path, stored
    finally:
        shutil.rmtree(folder)


def _as_nobody(code: str, *args: str):
    """Runs `code` in a subprocess as uid 65534; it imports before the uid changes (root's
    interpreter files may be 0700)."""
    import subprocess
    import sys

    prologue = ("import os, sys, numpy\nfrom ringrift.db import GameDB, DBError\n"
                "from ringrift.parity.db_check import verify_db\n")
    drop = "os.setgid(65534); os.setuid(65534)\n"
    return subprocess.run([sys.executable, "-c", prologue + drop + code, *args], capture_output=True, text=True,
                          timeout=120)


@_AS_ROOT
def test_another_users_folder_is_read_without_writing_beside_the_file(batch):
    """A game DB in a folder owned by someone else (0755, a shared dataset) is read through; by
    the mode bits alone that folder counted as writable, SQLite was asked for a -shm there, and
    the open failed with "attempt to write a readonly database"."""
    with _someone_elses_db(batch) as (folder, path, stored):
        r = _as_nobody("with GameDB(sys.argv[1], readonly=True) as db:\n    print(db.count_games())\n", path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(stored)
        assert sorted(os.listdir(folder)) == ["games.db"]


@_AS_ROOT
def test_parity_checks_a_read_only_dataset_untagged_and_says_why_it_cannot_tag(batch):
    """Checking without tagging (ringrift-parity --no-tag) writes nothing, so it reads a DB this
    process may not write; it opened the DB for writing and failed with "not a readable game
    database (unable to open database file)". Tagging says what is wrong."""
    with _someone_elses_db(batch) as (folder, path, stored):
        r = _as_nobody("m, n, steps = verify_db(sys.argv[1], tag=False, quiet=True)\nprint(m, n)\n", path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(stored), str(stored)]
        r = _as_nobody("from ringrift.db.errors import DBNotWritableError\ntry:\n    verify_db(sys.argv[1], quiet=True)\n"
                       "except DBNotWritableError as e:\n    print(e)\n", path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith(f"{path}: cannot open for writing: the file or its folder is read-only")
        assert sorted(os.listdir(folder)) == ["games.db"]


def test_a_full_disk_still_reads_and_says_why_it_cannot_write(tmp_path, batch):
    """Reading a WAL-mode file needs a 32 KiB -shm beside it, which a full disk refuses (here a
    16 KiB file-size limit, EFBIG where a full disk gives ENOSPC): `ringrift-db info` and every
    read failed with "not a readable game database (disk I/O error)" and left a 3-byte -shm and an
    empty -wal behind. Reads now go on without them (the file is all there is); a write says the
    disk may be full, with exit status 1, and leaves nothing either."""
    import subprocess
    import sys

    path = tmp_path / "games.db"
    with GameDB(path) as db:
        _insert(db, batch)
        stored = db.count_games()

    def small_files():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))

    def tool(*args):
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120,
                              preexec_fn=small_files, cwd=tmp_path)

    r = tool("ringrift.db", "info", str(path))
    assert r.returncode == 0 and f"games {stored}," in r.stdout, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]
    r = tool("ringrift.parity", "--db", str(path), "--quiet")
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"ringrift-parity: error: {path}: cannot open for writing "
                                                 f"(disk I/O error; is the disk full?)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["games.db"]
    r = tool("ringrift.parity", "--db", str(path), "--quiet", "--no-tag")  # reads only: it can check
    assert r.returncode == 0 and f"{stored}/{stored} games match" in r.stdout + r.stderr, r.stderr


def test_a_full_disk_while_creating_leaves_no_file_and_is_status_1(tmp_path, batch):
    """Merging or converting into a new file on a full disk (here a 16 KiB file-size limit) failed
    with exit status 2 ("not a readable game database (database or disk is full)") and left an
    empty DST, or a hidden temporary, behind."""
    import subprocess
    import sys

    src = tmp_path / "src" / "games.db"
    src.parent.mkdir()
    with GameDB(src) as db:
        _insert(db, batch)
    out = tmp_path / "out"
    out.mkdir()

    def small_files():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))

    for args, says in ((["merge", str(out / "m.db"), str(src)], f"{out / 'm.db'}: cannot open for writing ("),
                       (["convert", "--to-replaydb", str(src), str(out / "up.db")],
                        f"{out / 'up.db'}: writing the replay database failed: ")):
        r = subprocess.run([sys.executable, "-m", "ringrift.db", *args], capture_output=True, text=True,
                           timeout=120, preexec_fn=small_files, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"ringrift-db: error: {says}"), r.stderr
        assert list(out.iterdir()) == [], [p.name for p in out.iterdir()]
    # into an existing DST: the merge's log outgrows a 64 KiB limit (past the 32 KiB -shm);
    # nothing is merged, status 1 (was 2)
    def limit_64k():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    dst = tmp_path / "dst.db"
    GameDB(dst).close()
    r = subprocess.run([sys.executable, "-m", "ringrift.db", "merge", str(dst), str(src)], capture_output=True,
                       text=True, timeout=120, preexec_fn=limit_64k, cwd=tmp_path)
    assert r.returncode == 1 and "merge from" in r.stderr and "nothing was merged" in r.stderr, r.stderr
    with GameDB(dst, readonly=True) as db:
        assert db.count_games() == 0
