"""Self-play straight into the game DB (csrc/selfplay/db_runner.h, `_core.selfplay_into_db`, the CPU
path of run_selfplay): native threads play chunks and commit them in index order. It must store the
rows the batch path stores, resume around stored games, keep the committed chunks when a later one
fails or the run is interrupted, and say what went wrong in one line."""

from __future__ import annotations

import re
import sqlite3

import pytest

from ringrift import _core
from ringrift.db import DBError, GameDB
from ringrift.db import store
from ringrift.db.schema import GAME_COLUMNS
from ringrift.parity.db_check import verify_row
from ringrift.selfplay import run_selfplay

CLOCK = ("created_at", "started_at", "duration_ms")  # when, not what


def _native_or_skip():
    if store.native_writer_module() is None:
        pytest.skip("the native game writer does not run here (RINGRIFT_DB_WRITER=python, or no SQLite library "
                    "found in this interpreter): the batch path serves")


def _rows(path):
    cols = [c for c in GAME_COLUMNS if c not in CLOCK]
    with sqlite3.connect(path) as con:
        return con.execute(f"SELECT {', '.join(cols)} FROM games ORDER BY id").fetchall()


def _play(path, n=40, **kw):
    with GameDB(path) as db:
        return run_selfplay(db, board=kw.pop("board", "hex8"), num_games=n, num_players=kw.pop("num_players", 3),
                            seed=5, threads=kw.pop("threads", 2), batch_size=kw.pop("batch_size", 7), **kw)


@pytest.mark.parametrize("threads", [1, 2])
def test_native_run_stores_the_rows_of_the_batch_path_in_index_order(tmp_path, monkeypatch, threads):
    _native_or_skip()
    res = _play(tmp_path / "native.db", threads=threads)
    monkeypatch.setenv("RINGRIFT_DB_WRITER", "python")  # the batch path: play a batch, then insert it
    old = _play(tmp_path / "batch.db", threads=threads)
    native, batch = _rows(tmp_path / "native.db"), _rows(tmp_path / "batch.db")
    assert native == batch and len(native) == 40
    with sqlite3.connect(tmp_path / "native.db") as con:  # commits in index order
        assert [i for (i,) in con.execute("SELECT game_index FROM games ORDER BY id")] == list(range(40))
    assert (res.games, res.moves, res.capped, res.wins, res.reasons) == \
        (old.games, old.moves, old.capped, old.wins, old.reasons)
    with GameDB(tmp_path / "native.db") as db:
        assert all(verify_row(r) is None for r in db.iter_games())
    with sqlite3.connect(tmp_path / "native.db") as con:
        for started, created in con.execute("SELECT started_at, created_at FROM games"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", started)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", created)


def test_native_run_fills_only_the_missing_indices(tmp_path):
    _native_or_skip()
    path = tmp_path / "g.db"
    _play(path, n=10)
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM games WHERE game_index IN (3, 4, 7)")
    res = _play(path, n=25)
    assert (res.already_present, res.games, res.duplicates) == (7, 18, 0)
    with GameDB(path) as db:
        assert sorted(r.game_index for r in db.iter_games()) == list(range(25))


def test_a_failing_chunk_keeps_the_chunks_before_it_and_says_why(tmp_path):
    _native_or_skip()
    path = tmp_path / "g.db"
    with GameDB(path):
        pass
    with sqlite3.connect(path) as con:  # the DB refuses game 20 (chunk 16..23 of 8)
        con.execute("CREATE TRIGGER no20 BEFORE INSERT ON games WHEN NEW.game_index = 20 "
                    "BEGIN SELECT RAISE(ABORT, 'game 20 refused'); END")
    with pytest.raises(DBError) as err:
        _play(path, n=60, batch_size=8)
    msg = str(err.value)
    assert "\n" not in msg and "game 20 refused" in msg and str(path) in msg
    with GameDB(path) as db:
        assert sorted(r.game_index for r in db.iter_games()) == list(range(16))


def test_an_interrupt_keeps_the_committed_chunks_and_the_run_resumes(tmp_path):
    _native_or_skip()
    path = tmp_path / "g.db"
    seen = []

    def progress(done, total, rate):
        seen.append(done)
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _play(path, n=400, batch_size=8, board="square8", num_players=2, progress=progress)
    with GameDB(path) as db:
        stored = sorted(r.game_index for r in db.iter_games())
    assert 16 <= len(stored) < 400 and stored == list(range(len(stored)))  # whole chunks, from index 0
    assert seen == sorted(seen) and seen[0] >= 8
    res = _play(path, n=400, batch_size=8, board="square8", num_players=2)
    assert res.already_present == len(stored) and res.games == 400 - len(stored)


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    _native_or_skip()
    with GameDB(tmp_path / "g.db") as db:
        args = dict(board="square8", num_players=2, seed=1, policy="random", threads=1, max_moves=100,
                    chunk_size=8, engine_version="t", host="h", **db.native_writer_args())
        with pytest.raises(ValueError, match="runs must be ascending"):
            _core.selfplay_into_db(runs=[(5, 9), (0, 3)], **args)
        with pytest.raises(ValueError, match="runs must be ascending"):
            _core.selfplay_into_db(runs=[(-1, 3)], **args)
        with pytest.raises(ValueError, match="chunk_size"):
            _core.selfplay_into_db(runs=[(0, 3)], **{**args, "chunk_size": 0})
        with pytest.raises(ValueError, match="num_players"):
            _core.selfplay_into_db(runs=[(0, 3)], **{**args, "num_players": 5})
        # the Python runner: a seed the DB cannot store (an OverflowError from SQLite before), a board
        # of None (a KeyError), a fractional count (truncated), threads -1 (read as every core)
        for kw, text in (({"seed": 2**63}, "seed must be an integer 0..9223372036854775807"),
                         ({"board": None}, "unknown board None"), ({"num_games": 1.5}, "num_games must be an integer"),
                         ({"threads": -1}, "threads must be an integer 0..1024")):
            with pytest.raises(ValueError, match=text):
                run_selfplay(db, **{"board": "square8", "num_games": 3, **kw})
        assert db.count_games() == 0


def test_the_log_is_folded_in_as_the_run_grows(tmp_path):
    # SQLite's default (1000 pages, 32 MB at our page size) left a whole run in the WAL, folded
    # into the file only at close, after the last game; the writer and GameDB fold it in every
    # DB_WAL_AUTOCHECKPOINT_PAGES (4 MiB) instead, so the log file never grows much past that.
    _native_or_skip()
    path = tmp_path / "g.db"
    with GameDB(path) as db:
        pages = db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == _core.DB_WAL_AUTOCHECKPOINT_PAGES == 128
        run_selfplay(db, board="square8", num_games=10000, seed=3, threads=2)
        data = path.stat().st_size + path.with_name("g.db-wal").stat().st_size
        log = path.with_name("g.db-wal").stat().st_size
        assert data > 10 << 20  # about 11.5 MB of games ...
        assert log < 6 << 20, log  # ... of which at most 4 MiB and a chunk wait in the log
        assert db.count_games() == 10000
