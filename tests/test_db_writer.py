"""The native game writer (csrc/db/game_writer.h): GameDB.insert_batch's rows written by the C++ core
through the SQLite library of Python's own sqlite3 module. It must store exactly what the Python
path stores, all or nothing, and skip identities already stored."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ringrift import _core
from ringrift.db import DBError, GameDB
from ringrift.db import store
from ringrift.db.schema import GAME_COLUMNS, INSERT_COLUMNS
from ringrift.parity.db_check import verify_row

RUN = dict(board="hex8", num_players=3, seed=7, policy="random", engine_version="t", host="h", max_moves=2000,
           started_at="2026-12-06T00:00:00.000+00:00")


def _native_or_skip():
    if store.native_writer_module() is None:
        pytest.skip("the native game writer does not run here (RINGRIFT_DB_WRITER=python, or no SQLite library "
                    "found in this interpreter): the Python path serves")


@pytest.fixture
def batch():
    return _core.selfplay_batch("hex8", 3, 7, range(40), "random", threads=1)


def _rows(path):
    with sqlite3.connect(path) as con:
        cols = [c for c in GAME_COLUMNS if c != "created_at"]  # the clock
        return con.execute(f"SELECT {', '.join(cols)} FROM games ORDER BY id").fetchall()


def test_native_and_python_writers_store_the_same_rows(tmp_path, batch, monkeypatch):
    _native_or_skip()
    assert tuple(_core.DB_WRITER_COLUMNS) == INSERT_COLUMNS
    with GameDB(tmp_path / "native.db") as db:
        assert store._native_writer(batch) is not None
        assert db.insert_batch(batch, **RUN) == 40
        assert all(verify_row(r) is None for r in db.iter_games())
    monkeypatch.setenv("RINGRIFT_DB_WRITER", "python")
    with GameDB(tmp_path / "python.db") as db:
        assert store._native_writer(batch) is None
        assert db.insert_batch(batch, **RUN) == 40
    native, python = _rows(tmp_path / "native.db"), _rows(tmp_path / "python.db")
    assert native == python and len(native) == 40
    with sqlite3.connect(tmp_path / "native.db") as con:  # cells32 per step, the final state's 64 bits
        assert con.execute("SELECT DISTINCT hash_kind FROM games").fetchall() == [(4,)]
        assert con.execute("SELECT COUNT(*) FROM games WHERE final_hash IS NULL").fetchone() == (0,)


def test_native_writer_skips_stored_games_and_counts_only_new_rows(tmp_path, batch):
    _native_or_skip()
    with GameDB(tmp_path / "g.db") as db:
        part = {k: (v[:10] if k in ("game_index", "move_count", "winner", "reason", "capped", "seconds") else v)
                for k, v in batch.items()}
        part["move_offsets"] = batch["move_offsets"][:11]
        assert db.insert_batch(part, **RUN) == 10
        assert db.insert_batch(batch, **RUN) == 30
        assert db.insert_batch(batch, **RUN) == 0
        assert db.count_games() == 40


def test_native_writer_stores_all_or_nothing(tmp_path, batch):
    _native_or_skip()
    bad = dict(batch)
    bad["game_index"] = batch["game_index"].copy()
    bad["game_index"][25] = -1  # refused by the table's CHECK after 25 rows went in
    with GameDB(tmp_path / "g.db") as db:
        with pytest.raises(DBError, match="nothing of the batch was stored.*CHECK"):
            db.insert_batch(bad, **RUN)
        assert db.count_games() == 0
        assert db.insert_batch(batch, **RUN) == 40  # the connection and file are fine afterwards


def test_native_writer_refuses_a_malformed_batch_in_one_line(tmp_path, batch):
    _native_or_skip()
    bad = dict(batch)
    bad["move_offsets"] = batch["move_offsets"][:-1]
    with GameDB(tmp_path / "g.db") as db:
        with pytest.raises(DBError, match="malformed batch: move_offsets"):
            db.insert_batch(bad, **RUN)
        bad = dict(batch)
        bad["move_count"] = batch["move_count"] + 1
        with pytest.raises(DBError, match="malformed batch: move_offsets do not match"):
            db.insert_batch(bad, **RUN)
        assert db.count_games() == 0


def test_a_step_the_packed_format_cannot_hold_is_refused_and_nothing_is_stored(tmp_path, batch):
    """Both writers pack each step (csrc/export/step_pack.h); a move type past the format's 5 bits
    is refused in one line that names the step, and the whole batch is left out."""
    bad = dict(batch)
    bad["moves"] = batch["moves"].copy()
    bad["moves"][5, 0] = 40  # byte 0 of a move record: its type
    with GameDB(tmp_path / "g.db") as db:
        with pytest.raises(DBError, match="step 5: type 40, .* do not fit the packed step format"):
            db.insert_batch(bad, **RUN)
        assert db.count_games() == 0


def test_native_writer_waits_for_another_writer_then_fails_cleanly(tmp_path, batch):
    _native_or_skip()
    path = tmp_path / "g.db"
    with GameDB(path) as db:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        try:
            monkey = store._BUSY_TIMEOUT_MS
            store._BUSY_TIMEOUT_MS = 200
            with pytest.raises(DBError, match="nothing of the batch was stored.*locked"):
                db.insert_batch(batch, **RUN)
        finally:
            store._BUSY_TIMEOUT_MS = monkey
            other.execute("ROLLBACK")
            other.close()
        assert db.insert_batch(batch, **RUN) == 40
        assert np.array_equal(sorted(r.game_index for r in db.iter_games()), np.arange(40))
