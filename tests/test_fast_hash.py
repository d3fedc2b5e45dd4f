"""The self-play step hash (csrc/engine/fast_hash.h), the packed step blob of game DB schema 2
(csrc/export/step_pack.h), and reading / migrating schema-1 game DBs."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import ringrift
import ringrift.db
from ringrift import _core
from ringrift.db import GameDB
from ringrift.parity.db_check import verify_row

# Games per board for the collision check: every state of every game, a few seconds in all.
# The recorder keeps the cells hash's board part up to date from the cells each step touched
# (game_driver.h, fast_hash.h: CellHashTracker): every recorded hash is checked against a full
# cells_hash of the replayed state. The fast hash (rows of schema-2 files) is checked the same way.
CORPUS = [("square8", 2, 120, "random"), ("square8", 4, 40, "random"), ("square8", 3, 30, "heuristic"),
          ("hex8", 3, 60, "random"), ("hex8", 2, 20, "heuristic"), ("square19", 2, 4, "random"),
          ("hexagonal", 2, 2, "random")]


def _states(board, num_players, games, policy="random"):
    """(fingerprint, cells hash, fast hash) of every state after every step of `games` self-play games."""
    b = _core.selfplay_batch(board, num_players, 5, range(games), policy, threads=1, max_moves=3000)
    assert b["hash_kind"] == "cells64"
    out = []
    offs = b["move_offsets"]
    for g in range(games):
        game = ringrift.Game(board, num_players)
        out.append((game.fingerprint(), game.cells_hash(), game.fast_hash()))
        for i in range(offs[g], offs[g + 1]):
            game._apply_unchecked(_core.move_from_record(b["moves"][i].tobytes()))
            h = game.cells_hash()
            assert h == int(b["hashes"][i]), f"game {g} step {i - offs[g]}"  # the recorder's hash is the state's
            out.append((game.fingerprint(), h, game.fast_hash()))
    return out


def _collisions(states, which=1, mask=(1 << 64) - 1):
    """Hash values (column `which` of _states) shared by states with different reference fingerprints."""
    seen: dict[int, str] = {}
    bad = []
    for st in states:
        fp, key = st[0], st[which] & mask
        if seen.setdefault(key, fp) != fp:
            bad.append(key)
    return bad


@pytest.mark.parametrize("board,num_players,games,policy", CORPUS)
def test_step_hashes_have_no_collisions_over_a_corpus(board, num_players, games, policy):
    states = _states(board, num_players, games, policy)
    distinct = {st[0] for st in states}
    assert len(distinct) > 1000
    for which in (1, 2):  # the cells hash (self-play now) and the fast hash (schema-2 rows)
        assert _collisions(states, which) == []
        # the check can fail: a hash cut to 8 bits collides at once
        assert _collisions(states, which, mask=0xFF)


def test_step_hashes_are_finer_than_the_reference_and_see_buried_rings():
    g = ringrift.Game("square8", 2)
    h0, c0 = g.fast_hash(), g.cells_hash()
    assert ringrift.Game("square8", 2).fast_hash() == h0 and ringrift.Game("square8", 3).fast_hash() != h0
    assert ringrift.Game("square8", 2).cells_hash() == c0 and ringrift.Game("square8", 3).cells_hash() != c0
    assert c0 != h0
    g.apply(g.legal_moves()[0])
    assert g.fast_hash() != h0 and g.cells_hash() != c0


def test_recorded_hash_follows_every_touched_cell_on_long_games():
    """Captures, lines, territory and recovery touch many cells in one step (touched_all): the
    recorder's incremental hash must still equal a full recompute after each of them."""
    for board, players in (("square8", 3), ("hex8", 4)):
        b = _core.selfplay_batch(board, players, 11, range(30), "heuristic", threads=2, max_moves=3000)
        offs = b["move_offsets"]
        for g in range(30):
            game = ringrift.Game(board, players)
            hs = _core.replay_hashes(game, b["moves"][offs[g]:offs[g + 1]], "cells64")
            assert np.array_equal(hs, b["hashes"][offs[g]:offs[g + 1]]), (board, g)


def _random_records(n, rng):
    """Arbitrary 16-byte records (every field random): the packing must be lossless for any."""
    rec = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    rec[:, 0] %= 32
    return rec


def test_pack_steps_round_trips_any_record():
    rng = np.random.default_rng(1)
    moves = _random_records(500, rng)
    phases = rng.integers(0, 8, 500).astype(np.uint8)
    players = rng.integers(1, 5, 500).astype(np.uint8)
    offs = np.array([0, 1, 1, 200, 500], dtype=np.int64)
    blob, boffs = _core.pack_steps(moves, phases, players, offs)
    for g in range(4):
        a, b = offs[g], offs[g + 1]
        mv, ph, pl = _core.unpack_steps(blob[boffs[g]:boffs[g + 1]], int(b - a))
        assert mv.tobytes() == moves[a:b].tobytes()
        assert ph.tobytes() == phases[a:b].tobytes() and pl.tobytes() == players[a:b].tobytes()


def test_pack_steps_refuses_what_it_cannot_hold_and_unpack_refuses_damage():
    moves = np.zeros((3, 16), np.uint8)
    ok_ph, ok_pl = np.zeros(3, np.uint8), np.ones(3, np.uint8)
    offs = np.array([0, 3], dtype=np.int64)
    with pytest.raises(ValueError, match="step 1"):
        _core.pack_steps(moves, ok_ph, np.array([1, 5, 1], np.uint8), offs)
    with pytest.raises(ValueError, match="step 2"):
        _core.pack_steps(moves, np.array([0, 0, 8], np.uint8), ok_pl, offs)
    b = _core.selfplay_batch("square8", 2, 1, range(1), "random")
    blob, _ = _core.pack_steps(b["moves"], b["phases"], b["players"], b["move_offsets"])
    n = int(b["move_count"][0])
    with pytest.raises(ValueError, match="truncated"):
        _core.unpack_steps(blob[:-1], n)
    with pytest.raises(ValueError, match="trailing"):
        _core.unpack_steps(blob + b"\x00", n)
    with pytest.raises(ValueError, match="truncated"):
        _core.unpack_steps(blob, n + 1)


# ---- schema 1 files ----------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE games (
    id INTEGER PRIMARY KEY, board TEXT NOT NULL, num_players INTEGER NOT NULL, policy TEXT NOT NULL,
    seed INTEGER NOT NULL, game_index INTEGER NOT NULL, engine_version TEXT, host TEXT, max_moves INTEGER,
    winner INTEGER NOT NULL, reason TEXT, move_count INTEGER NOT NULL, capped INTEGER NOT NULL,
    started_at TEXT, duration_ms INTEGER, created_at TEXT NOT NULL,
    parity_status TEXT NOT NULL DEFAULT 'unchecked',
    moves BLOB NOT NULL CHECK (length(moves) = 16 * move_count),
    hashes BLOB NOT NULL CHECK (length(hashes) = 8 * move_count),
    phases BLOB NOT NULL CHECK (length(phases) = move_count),
    players BLOB NOT NULL CHECK (length(players) = move_count),
    UNIQUE (board, num_players, policy, seed, game_index));
CREATE INDEX idx_games_parity ON games (parity_status);
"""


def _old_file(path, ddl, version, created):
    """An older ringrift's game DB file: its tables and its meta rows, the games still to write."""
    con = sqlite3.connect(path)
    con.executescript(ddl)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "ringrift-gamedb"), ("schema_version", str(version)),
                                                        ("created_at", created)])
    return con


def _write_v1(path, board="square8", num_players=2, games=range(6)):
    """A schema-1 file as ringrift 0.1 wrote it: 16-byte records and the reference hash per step."""
    b = _core.selfplay_batch(board, num_players, 9, list(games), "random")
    con = _old_file(path, V1_SCHEMA, 1, "2026-01-01T00:00:00.000+00:00")
    offs = b["move_offsets"]
    for g, gi in enumerate(b["game_index"]):
        a, e = offs[g], offs[g + 1]
        ref = _core.replay_hashes(ringrift.Game(board, num_players), b["moves"][a:e], "reference")
        con.execute("INSERT INTO games (board, num_players, policy, seed, game_index, winner, reason, move_count, "
                    "capped, created_at, parity_status, moves, hashes, phases, players) "
                    "VALUES (?, ?, 'random', 9, ?, ?, ?, ?, ?, '2026-01-01', 'ok', ?, ?, ?, ?)",
                    (board, num_players, int(gi), int(b["winner"][g]), _core.REASONS[b["reason"][g]] or None,
                     int(e - a), int(b["capped"][g]), b["moves"][a:e].tobytes(), ref.astype("<u8").tobytes(),
                     b["phases"][a:e].tobytes(), b["players"][a:e].tobytes()))
    con.commit()
    con.close()
    return b


# ---- schema 2 files: the fast hash per step ------------------------------------------------------

def _write_v2(path, board="square8", num_players=2, games=range(5)):
    """A schema-2 file as ringrift wrote it before the cells hash: the table's CHECK admits hash
    kinds 0 to 2 only, and self-play rows carry fast32 step hashes and the final fast64."""
    from ringrift.db.schema import GAMES_TABLE_SQL, INDEX_SQL

    v2_table = GAMES_TABLE_SQL.format(name="games")
    for new, old in (("CHECK (hash_kind BETWEEN 0 AND 4)", "CHECK (hash_kind = 0 OR hash_kind = 1 OR hash_kind = 2)"),
                     ("WHEN 2 THEN 4 WHEN 4 THEN 4 ELSE 8", "WHEN 2 THEN 4 ELSE 8")):
        assert new in v2_table
        v2_table = v2_table.replace(new, old)
    b = _core.selfplay_batch(board, num_players, 4, list(games), "random")
    con = _old_file(path, f"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); {v2_table}; {INDEX_SQL};",
                    2, "2026-11-01T00:00:00.000+00:00")
    offs = b["move_offsets"]
    for g, gi in enumerate(b["game_index"]):
        a, e = offs[g], offs[g + 1]
        fast = _core.replay_hashes(ringrift.Game(board, num_players), b["moves"][a:e], "fast64")
        steps, _ = _core.pack_steps(b["moves"][a:e], b["phases"][a:e], b["players"][a:e],
                                    np.array([0, e - a], dtype=np.int64))
        con.execute("INSERT INTO games (board, num_players, policy, seed, game_index, winner, reason, move_count, "
                    "capped, created_at, hash_kind, final_hash, steps, hashes) "
                    "VALUES (?, ?, 'random', 4, ?, ?, ?, ?, ?, '2026-11-01', 2, ?, ?, ?)",
                    (board, num_players, int(gi), int(b["winner"][g]), _core.REASONS[b["reason"][g]] or None,
                     int(e - a), int(b["capped"][g]), int(fast[-1].astype(np.int64)), steps,
                     fast.astype("<u4").tobytes()))
    con.commit()
    con.close()
    return b


def test_schema2_file_reads_as_it_is_and_migrates_when_opened_for_writing(tmp_path):
    path = tmp_path / "v2.db"
    b = _write_v2(path)
    with GameDB(path, readonly=True) as db:
        assert db.version == 2
        rows = list(db.iter_games())
    assert {r.hash_kind for r in rows} == {"fast32"} and all(verify_row(r) is None for r in rows)
    with sqlite3.connect(path) as con:  # the old table refuses the cells hash: why the file migrates
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            con.execute("UPDATE games SET hash_kind = 4 WHERE id = 1")
    with GameDB(path) as db:
        assert db.version == 3 and db.meta["migrated_from"] == "2"
        migrated = list(db.iter_games())
        assert [(r.id, r.hash_kind, r.final_hash, r.hashes.tobytes(), r.moves.tobytes()) for r in migrated] == \
            [(r.id, r.hash_kind, r.final_hash, r.hashes.tobytes(), r.moves.tobytes()) for r in rows]
        new = _core.selfplay_batch("square8", 2, 4, [50, 51], "random")
        assert db.insert_batch(new, board="square8", num_players=2, seed=4, policy="random",
                               engine_version="t", host="h", max_moves=2000) == 2
        assert {r.hash_kind for r in db.iter_games()} == {"fast32", "cells32"}
        assert all(verify_row(r) is None for r in db.iter_games())
    dst = tmp_path / "merged.db"  # a schema-2 file merges into a new one as it is
    other = tmp_path / "v2b.db"
    _write_v2(other, games=range(3, 8))
    with GameDB(dst) as db:
        assert db.merge_from(other) == 5 and db.merge_from(path) == 5  # 3 and 4 were there; + 50, 51
        assert db.count_games() == 10 and all(verify_row(r) is None for r in db.iter_games())
    assert len(b["game_index"]) == 5


def _check_rows(rows, b):
    offs = b["move_offsets"]
    assert len(rows) == len(b["game_index"])
    for g, row in enumerate(rows):
        a, e = offs[g], offs[g + 1]
        assert row.hash_kind == "reference" and row.parity_status == "ok"
        assert row.moves.tobytes() == b["moves"][a:e].tobytes()
        assert row.phases.tobytes() == b["phases"][a:e].tobytes()
        assert row.players.tobytes() == b["players"][a:e].tobytes()
        assert verify_row(row) is None
        assert row.reference_hashes() is row.hashes


def test_schema1_file_reads_as_it_is_and_migrates_when_opened_for_writing(tmp_path):
    path = tmp_path / "old.db"
    b = _write_v1(path)
    with GameDB(path, readonly=True) as db:  # read through version dispatch, the file untouched
        assert db.version == 1 and db.summary()["schema_version"] == 1
        rows = list(db.iter_games())
    _check_rows(rows, b)
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    con.close()
    with GameDB(path) as db:  # opened for writing: migrated in place, ids and columns kept
        assert db.version == ringrift.db.SCHEMA_VERSION == 3 and db.meta["migrated_from"] == "1"
        migrated = list(db.iter_games())
        assert [r.id for r in migrated] == [r.id for r in rows]
        _check_rows(migrated, b)
        np.testing.assert_array_equal(migrated[0].hashes, rows[0].hashes)
        # new self-play rows go beside the old ones
        new = _core.selfplay_batch("square8", 2, 9, [100, 101], "random")
        assert db.insert_batch(new, board="square8", num_players=2, seed=9, policy="random",
                               engine_version="t", host="h", max_moves=2000) == 2
        assert {r.hash_kind for r in db.iter_games()} == {"reference", "cells32"}
        assert all(verify_row(r) is None for r in db.iter_games())


def test_merge_from_a_schema1_file(tmp_path):
    old = tmp_path / "old.db"
    b = _write_v1(old, board="hex8", num_players=3, games=range(4))
    dst = tmp_path / "new.db"
    with GameDB(dst) as db:
        assert db.merge_from(old) == 4
        assert db.merge_from(old) == 0
        _check_rows(list(db.iter_games()), b)
    con = sqlite3.connect(old)  # the source is read only
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    con.close()


def test_schema1_file_that_cannot_be_packed_is_left_unchanged(tmp_path):
    path = tmp_path / "odd.db"
    _write_v1(path, games=range(2))
    con = sqlite3.connect(path)
    pl = bytearray(con.execute("SELECT players FROM games WHERE id = 2").fetchone()[0])
    pl[3] = 9  # no such seat: the packed format has 2 bits for it
    con.execute("UPDATE games SET players = ? WHERE id = 2", (bytes(pl),))
    con.commit()
    con.close()
    with pytest.raises(ringrift.db.DBError, match="cannot migrate schema 1.*step 3"):
        GameDB(path)
    with GameDB(path, readonly=True) as db:  # still schema 1, every row readable
        assert db.version == 1 and db.count_games() == 2 and db.get_game(2).players[3] == 9
