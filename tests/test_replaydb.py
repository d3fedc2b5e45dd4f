"""Tests of the conversion to and from the upstream GameReplayDB format (schema v18)."""

from __future__ import annotations

import ast
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ringrift
from ringrift import _core
from ringrift.db import DBError, DBSchemaError, GameDB, from_replaydb, to_replaydb
from ringrift.db import cli, replaydb, upstream_state
from ringrift.engine.json_io import engine_move_key

# Column lists of the upstream v18 schema (ai-service/app/db/game_replay.py at commit
# 2aa9f89b5d64193fd3252366b362acdc3331ddb8), in table order.
V18_COLUMNS = {
    "schema_metadata": ["key", "value"],
    "games": ["game_id", "board_type", "num_players", "rng_seed", "created_at", "completed_at",
              "game_status", "winner", "termination_reason", "total_moves", "total_turns",
              "duration_ms", "source", "schema_version", "time_control_type", "initial_time_ms",
              "time_increment_ms", "metadata_json", "quality_score", "quality_category",
              "engine_mode", "parity_status", "parity_checked_at", "parity_divergence_move",
              "opponent_type", "opponent_model_id"],
    "game_players": ["game_id", "player_number", "player_type", "ai_type", "ai_difficulty",
                     "ai_profile_id", "final_eliminated_rings", "final_territory_spaces",
                     "final_rings_in_hand"],
    "game_initial_state": ["game_id", "initial_state_json", "compressed"],
    "game_moves": ["game_id", "move_number", "turn_number", "player", "phase", "move_type",
                   "move_json", "timestamp", "think_time_ms", "time_remaining_ms", "engine_eval",
                   "engine_eval_type", "engine_depth", "engine_nodes", "engine_pv",
                   "engine_time_ms", "move_probs", "search_stats_json", "heuristic_features"],
    "game_state_snapshots": ["game_id", "move_number", "state_json", "compressed", "state_hash"],
    "game_choices": ["game_id", "move_number", "choice_type", "player", "options_json",
                     "selected_option_json", "ai_reasoning"],
    "game_history_entries": ["game_id", "move_number", "player", "phase_before", "phase_after",
                             "status_before", "status_after", "progress_before_json",
                             "progress_after_json", "state_hash_before", "state_hash_after",
                             "board_summary_before_json", "board_summary_after_json",
                             "state_before_json", "state_after_json", "compressed_states",
                             "available_moves_json", "available_moves_count", "engine_eval",
                             "engine_depth", "fsm_valid", "fsm_error_code"],
    "game_nnue_features": ["game_id", "move_number", "player_perspective", "features", "value",
                           "board_type", "feature_dim"],
    "orphaned_games": ["game_id", "detected_at", "reason", "original_status", "board_type",
                       "num_players"],
}
V18_PRIMARY_KEYS = {
    "schema_metadata": ["key"], "games": ["game_id"], "game_players": ["game_id", "player_number"],
    "game_initial_state": ["game_id"], "game_moves": ["game_id", "move_number"],
    "game_state_snapshots": ["game_id", "move_number"],
    "game_choices": ["game_id", "move_number", "choice_type"],
    "game_history_entries": ["game_id", "move_number"],
    "game_nnue_features": ["game_id", "move_number", "player_perspective"],
    "orphaned_games": ["game_id"],
}
V18_INDEXES = {
    "idx_games_board_created", "idx_games_board_engine", "idx_games_board_opponent",
    "idx_games_board_parity", "idx_games_board_players", "idx_games_board_type", "idx_games_config",
    "idx_games_created", "idx_games_created_board", "idx_games_engine_mode",
    "idx_games_opponent_type", "idx_games_parity_created", "idx_games_parity_status",
    "idx_games_quality", "idx_games_quality_board", "idx_games_source", "idx_games_termination",
    "idx_games_winner", "idx_history_game", "idx_history_game_phase", "idx_history_game_player",
    "idx_moves_game_turn", "idx_moves_lookup", "idx_moves_player", "idx_nnue_board_type",
    "idx_nnue_game", "idx_orphaned_detected",
}
V18_TRIGGERS = {"enforce_moves_on_complete", "enforce_moves_on_insert"}

SMALL_CAP = {"square8": 2000, "hex8": 2000, "square19": 70, "hexagonal": 70}
CONFIGS = [(b, n) for b in ringrift.BOARDS for n in (2, 3, 4)]


def _fill(path: Path, configs=CONFIGS, games=range(2), policies=("random",)):
    with GameDB(path) as db:
        for board, n in configs:
            for policy in policies:
                cap = SMALL_CAP[board]
                b = _core.selfplay_batch(board, n, 21, list(games), policy=policy, max_moves=cap)
                db.insert_batch(b, board=board, num_players=n, seed=21, policy=policy,
                                engine_version="0.1.0", host="testhost", max_moves=cap,
                                started_at="2025-06-01T12:00:00.000+00:00")
        return db.count_games()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Our DB with 2 games for every board and 2-4 players, and its replay-DB conversion."""
    d = tmp_path_factory.mktemp("replaydb")
    ours, replay = d / "ours.db", d / "replay.db"
    n = _fill(ours, policies=("random", "heuristic"))
    res = to_replaydb(ours, replay)
    assert (res.read, res.written, res.skipped) == (n, n, [])
    return ours, replay


def _rows(path):
    with GameDB(path, create=False, readonly=True) as db:
        return {r.identity: r for r in db.iter_games()}


def _sql(path, query, params=()):
    con = sqlite3.connect(path)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


# ---- schema ---------------------------------------------------------------------------------

def test_replaydb_tables_and_columns_match_v18(converted):
    _, replay = converted
    tables = [r[0] for r in _sql(replay, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    assert sorted(tables) == sorted(V18_COLUMNS)
    for table, cols in V18_COLUMNS.items():
        info = _sql(replay, f"PRAGMA table_info({table})")
        assert [r[1] for r in info] == cols, table
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        assert pk == V18_PRIMARY_KEYS[table], table
    indexes = {r[0] for r in _sql(replay, "SELECT name FROM sqlite_master WHERE type='index' "
                                          "AND name NOT LIKE 'sqlite_autoindex%'")}
    assert indexes == V18_INDEXES
    triggers = {r[0] for r in _sql(replay, "SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert triggers == V18_TRIGGERS
    assert _sql(replay, "SELECT value FROM schema_metadata WHERE key='schema_version'") == [("18",)]
    fks = _sql(replay, "PRAGMA foreign_key_list(game_moves)")
    assert [(r[2], r[3], r[4], r[6]) for r in fks] == [("games", "game_id", "game_id", "CASCADE")]


UPSTREAM_GIT = Path("/work/.mirror/synaptent+RingRift/repo")
UPSTREAM_COMMIT = "2aa9f89b5d64193fd3252366b362acdc3331ddb8"


def _upstream_source(path: str) -> str:
    """One file of upstream's ai-service at UPSTREAM_COMMIT, read from the mirror (skips without it)."""
    if not UPSTREAM_GIT.is_dir() or shutil.which("git") is None:
        pytest.skip("upstream mirror not available")
    try:
        return subprocess.run(["git", "--git-dir", str(UPSTREAM_GIT), "show", f"{UPSTREAM_COMMIT}:ai-service/{path}"],
                              capture_output=True, text=True, check=True, timeout=30).stdout
    except (subprocess.SubprocessError, OSError):
        pytest.skip("upstream commit not readable")


def _upstream_schema_sql():
    text = _upstream_source("app/db/game_replay.py")
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SCHEMA_SQL":
            return node.value.value
    pytest.skip("SCHEMA_SQL not found upstream")


def _describe(sql: str) -> dict:
    con = sqlite3.connect(":memory:")
    con.executescript(sql)
    out = {}
    for typ, name, s in con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"):
        if typ == "table":
            out[name] = (con.execute(f"PRAGMA table_info({name})").fetchall(),
                         con.execute(f"PRAGMA foreign_key_list({name})").fetchall())
        elif typ == "index":
            out[name] = con.execute(f"PRAGMA index_xinfo({name})").fetchall()
        else:
            out[name] = " ".join(s.split())
    con.close()
    return out


def test_schema_identical_to_upstream_when_mirror_present():
    """Column types, defaults, keys, indexes (with DESC) and trigger bodies equal upstream's."""
    assert _describe(replaydb.REPLAYDB_SCHEMA_SQL) == _describe(_upstream_schema_sql())


# ---- contents ---------------------------------------------------------------------------------

def test_replaydb_contents(converted):
    ours, replay = converted
    rows = _rows(ours)
    recovery_slides = []
    con = sqlite3.connect(replay)
    try:
        for row in rows.values():
            gid = replaydb.game_id_for(row)
            (board, n, seed, status, winner, total_moves, total_turns, source, version, meta_json,
             reason, engine_mode, parity, created, completed) = con.execute(
                "SELECT board_type, num_players, rng_seed, game_status, winner, total_moves, total_turns, "
                "source, schema_version, metadata_json, termination_reason, engine_mode, parity_status, "
                "created_at, completed_at FROM games WHERE game_id = ?", (gid,)).fetchone()
            assert (board, n, seed, total_moves, version) == (row.board, row.num_players, row.seed,
                                                               row.move_count, 18)
            assert source == replaydb.SOURCE and engine_mode == row.policy and parity == "pending"
            assert created == row.started_at
            if row.winner:
                assert (status, winner) == ("completed", row.winner)
                assert completed is not None and reason is not None
            else:
                assert row.capped and (status, winner, reason, completed) == ("active", None, "max_moves", None)
            meta = json.loads(meta_json)[replaydb.META_KEY]
            assert (meta["policy"], meta["game_index"]) == (row.policy, row.game_index)

            (init,) = con.execute("SELECT initial_state_json FROM game_initial_state WHERE game_id = ?",
                                  (gid,)).fetchone()
            init = json.loads(init)
            assert upstream_state.missing_fields(init) == []
            assert init == upstream_state.upstream_state(ringrift.Game(row.board, row.num_players),
                                                         game_id=gid, created_at=created)
            assert (init["id"], init["boardType"], init["maxPlayers"]) == (gid, row.board, row.num_players)

            moves = con.execute("SELECT move_number, turn_number, player, phase, move_type, move_json "
                                "FROM game_moves WHERE game_id = ? ORDER BY move_number", (gid,)).fetchall()
            assert [m[0] for m in moves] == list(range(row.move_count))
            snaps = {i: (json.loads(text), h) for i, text, h in con.execute(
                "SELECT move_number, state_json, state_hash FROM game_state_snapshots WHERE game_id = ?", (gid,))}
            # upstream's cadence: after moves 19, 39, ... (0-based) and after the last move
            assert sorted(snaps) == sorted({i for i in range(row.move_count) if (i + 1) % 20 == 0}
                                           | {row.move_count - 1})
            game = ringrift.Game(row.board, row.num_players)
            turn, last = 0, 1
            for i, (_, turn_no, player, phase, mtype, mj) in enumerate(moves):
                doc = json.loads(mj)
                m = _core.move_from_record(row.moves[i].tobytes())
                expected = ringrift.move_to_json(game, m)
                assert {k: doc[k] for k in expected} == expected
                assert (doc["type"], doc["player"], doc["moveNumber"]) == (mtype, player, i + 1)
                assert phase == game.phase == doc["phase"]
                if player != last:
                    turn, last = turn + 1, player
                assert turn_no == turn
                if m.type == "recovery_slide":
                    # the first stack (insertion order) with a ring of the mover below its top,
                    # as the TS engine picks it; none for a line's option 2 (free)
                    paid = not (doc["recoveryMode"] == "line" and doc["recoveryOption"] == 2)
                    first = next(c for c, rings in game.stacks() if player in rings[1:])
                    assert doc["extractionStacks"] == ([game.cell_key(first)] if paid else [])
                    recovery_slides.append(doc["recoveryMode"])
                game.apply(m)
                if i in snaps:
                    state, h = snaps[i]
                    assert h == game.hash() == f"{int(row.reference_hashes()[i]):016x}"
                    assert upstream_state.missing_fields(state) == []
                    assert [d["moveNumber"] for d in state["moveHistory"]] == list(range(1, i + 2))
                    # stacks bottom ring first (upstream's engine reads rings[-1] as the top)
                    assert {k: v["rings"] for k, v in state["board"]["stacks"].items()} == \
                        {game.cell_key(c): r[::-1] for c, r in game.stacks()}
                    assert all(v["controllingPlayer"] == v["rings"][-1] for v in state["board"]["stacks"].values())
                    assert state["totalRingsEliminated"] == sum(p["eliminated_rings"] for p in game.players())
                    assert (state["gameStatus"], state["winner"]) == (game.status, game.winner)
            assert total_turns == turn + 1

            players = con.execute("SELECT player_number, player_type, ai_type, final_eliminated_rings, "
                                  "final_territory_spaces, final_rings_in_hand FROM game_players "
                                  "WHERE game_id = ? ORDER BY player_number", (gid,)).fetchall()
            assert players == [(p["player"], "ai", row.policy, p["eliminated_rings"], p["territory_spaces"],
                                p["rings_in_hand"]) for p in game.players()]
    finally:
        con.close()
    assert recovery_slides  # the check above ran
    # camelCase fields of the reference Move JSON appear
    blob = " ".join(r[0] for r in _sql(replay, "SELECT move_json FROM game_moves"))
    for key in ('"placementCount"', '"captureTarget"', '"formedLines"', '"disconnectedRegions"'):
        assert key in blob


# ---- round trips ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def round_tripped(converted):
    """The replay DB read back into a fresh game DB."""
    ours, replay = converted
    back = replay.with_name("back.db")
    res = from_replaydb(replay, back)
    assert res.skipped == [] and res.written == res.read
    return ours, back


@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_round_trip_every_board_and_player_count(round_tripped, board, num_players):
    ours, back = round_tripped
    a = {k: v for k, v in _rows(ours).items() if k[:2] == (board, num_players)}
    b = {k: v for k, v in _rows(back).items() if k[:2] == (board, num_players)}
    assert len(a) == 4 and a.keys() == b.keys()
    for k, x in a.items():
        y = b[k]
        for f in ("winner", "reason", "move_count", "capped", "engine_version", "host", "max_moves",
                  "started_at", "duration_ms", "created_at", "parity_status"):
            assert getattr(x, f) == getattr(y, f), (k, f)
        np.testing.assert_array_equal(x.moves, y.moves)
        np.testing.assert_array_equal(x.hashes, y.hashes)
        np.testing.assert_array_equal(x.phases, y.phases)
        np.testing.assert_array_equal(x.players, y.players)
        assert _core.replay_verify(ringrift.Game(board, num_players), y.moves, y.hashes) == (-1, "")


def test_round_trip_from_move_json_alone(converted, tmp_path):
    """Without our record field the JSON alone must give the same hashes, phases and players,
    and moves that the engine cannot tell apart from the originals."""
    ours, replay = converted
    stripped = tmp_path / "stripped.db"
    shutil.copy(replay, stripped)
    con = sqlite3.connect(stripped)
    rows = con.execute("SELECT game_id, move_number, move_json FROM game_moves").fetchall()
    con.executemany("UPDATE game_moves SET move_json = ? WHERE game_id = ? AND move_number = ?",
                    [(json.dumps({k: v for k, v in json.loads(mj).items() if k != replaydb.RECORD_FIELD}), g, i)
                     for g, i, mj in rows])
    con.commit()
    con.close()
    back = tmp_path / "back.db"
    res = from_replaydb(stripped, back)
    assert res.skipped == [] and res.written == res.read
    a, b = _rows(ours), _rows(back)
    assert a.keys() == b.keys()
    for k, x in a.items():
        y = b[k]
        np.testing.assert_array_equal(x.hashes, y.hashes)
        np.testing.assert_array_equal(x.phases, y.phases)
        np.testing.assert_array_equal(x.players, y.players)
        game = ringrift.Game(x.board, x.num_players)
        for i in range(x.move_count):
            mx = _core.move_from_record(x.moves[i].tobytes())
            my = _core.move_from_record(y.moves[i].tobytes())
            assert engine_move_key(game, mx) == engine_move_key(game, my)
            game.apply(my)


def test_conversions_are_idempotent(converted, tmp_path):
    ours, replay = converted
    copy = tmp_path / "replay.db"
    shutil.copy(replay, copy)
    res = to_replaydb(ours, copy)  # appending the same games: all already present
    assert (res.written, res.duplicates) == (0, res.read)
    back = tmp_path / "back.db"
    first = from_replaydb(copy, back)
    again = from_replaydb(copy, back)
    assert again.written == 0 and again.duplicates == first.written


def test_foreign_games_without_our_metadata(converted, tmp_path):
    ours, replay = converted
    foreign = tmp_path / "foreign.db"
    shutil.copy(replay, foreign)
    con = sqlite3.connect(foreign)
    con.execute("UPDATE games SET metadata_json = NULL, engine_mode = 'mcts', parity_status = 'passed'")
    con.commit()
    con.close()
    back = tmp_path / "back.db"
    res = from_replaydb(foreign, back)
    assert res.skipped == [] and res.written == res.read
    src = list(_rows(ours).values())
    got = list(_rows(back).values())
    assert {r.policy for r in got} == {"mcts"} and {r.parity_status for r in got} == {"ok"}
    assert {r.seed for r in got} == {21}
    assert sorted(r.hashes.tobytes() for r in got) == sorted(r.hashes.tobytes() for r in src)


def test_bad_games_are_skipped_or_fatal(converted, tmp_path):
    _, replay = converted
    bad = tmp_path / "bad.db"
    shutil.copy(replay, bad)
    con = sqlite3.connect(bad)
    gids = [r[0] for r in con.execute("SELECT game_id FROM games ORDER BY game_id LIMIT 4")]
    state = ringrift.Game("square8", 2).to_json()
    state["players"][0]["ringsInHand"] -= 1
    con.execute("UPDATE game_initial_state SET initial_state_json = ? WHERE game_id = ?", (json.dumps(state), gids[0]))
    con.execute("UPDATE game_moves SET move_json = '{not json' WHERE game_id = ? AND move_number = 3", (gids[1],))
    con.execute("UPDATE game_moves SET move_json = '[1, 2]' WHERE game_id = ? AND move_number = 2", (gids[3],))
    con.execute("UPDATE game_moves SET move_json = ? WHERE game_id = ? AND move_number = 0",
                (json.dumps({"type": "move_stack", "player": 1, "from": {"x": 0, "y": 0}, "to": {"x": 1, "y": 1}}), gids[2]))
    total = con.execute("SELECT COUNT(*) FROM games").fetchone()[0]
    con.commit()
    con.close()
    res = from_replaydb(bad, tmp_path / "back.db")
    assert sorted(g for g, _ in res.skipped) == sorted(gids)
    assert res.written == total - 4
    why = dict(res.skipped)
    assert "non-standard" in why[gids[0]] and "move 3" in why[gids[1]] and "move 0" in why[gids[2]]
    assert why[gids[3]] == "move 2: a move must be a JSON object, got list"
    with pytest.raises(DBError, match="game"):
        from_replaydb(bad, tmp_path / "strict.db", strict=True)
    assert not list(tmp_path.glob("strict.db*"))  # it stopped before storing a game: no empty DB is left


def test_metadata_our_schema_cannot_store_skips_that_game_only(converted, tmp_path):
    # our columns ride in metadata_json for a round trip; a value the game DB cannot store (or
    # metadata that is JSON but no object) once failed the whole import, or crashed it
    _, replay = converted
    bad = tmp_path / "bad.db"
    shutil.copy(replay, bad)
    con = sqlite3.connect(bad)
    rows = con.execute("SELECT game_id, metadata_json FROM games ORDER BY game_id LIMIT 8").fetchall()
    changes = {"seed": 10**23, "game_index": -1, "capped": 7, "duration_ms": "slow", "policy": [1, 2],
               "started_at": 12345}
    for (gid, text), (key, value) in zip(rows, changes.items()):
        meta = json.loads(text)
        meta["ringrift_gamedb"][key] = value
        con.execute("UPDATE games SET metadata_json = ? WHERE game_id = ?", (json.dumps(meta), gid))
    for gid, _ in rows[6:]:  # JSON, but not an object: read as a foreign game's missing metadata
        con.execute("UPDATE games SET metadata_json = '[1]' WHERE game_id = ?", (gid,))
    total = con.execute("SELECT COUNT(*) FROM games").fetchone()[0]
    con.commit()
    con.close()
    res = from_replaydb(bad, tmp_path / "back.db")
    why = dict(res.skipped)
    assert sorted(why) == sorted(gid for gid, _ in rows[:6]) and res.written == total - 6
    for (gid, _), (key, value) in zip(rows, changes.items()):
        assert why[gid] == f"metadata_json.ringrift_gamedb.{key} is {value!r}, not a value the game DB stores"


def test_a_stored_result_the_replay_contradicts_is_not_converted(converted, tmp_path):
    # the converter replays every game; the result upstream's tools train on must be the replay's
    ours, _ = converted
    wrong = tmp_path / "wrong.db"
    shutil.copy(ours, wrong)
    con = sqlite3.connect(wrong)
    gid, winner = con.execute("SELECT id, winner FROM games WHERE winner > 0 ORDER BY id LIMIT 1").fetchone()
    con.execute("UPDATE games SET winner = ?, reason = 'timeout' WHERE id = ?", (3 - winner if winner < 3 else 1, gid))
    con.commit()
    con.close()
    with pytest.raises(DBError, match=f"cannot convert game id {gid} .*stored result winner .* but the replay ends "
                                      f"with winner {winner}"):
        to_replaydb(wrong, tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()


def test_replaydb_errors(converted, tmp_path):
    ours, replay = converted
    with pytest.raises(DBError, match="no such replay database"):
        from_replaydb(tmp_path / "absent.db", tmp_path / "x.db")
    with pytest.raises(DBError, match="not a replay database"):
        from_replaydb(ours, tmp_path / "x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(DBError, match="not a SQLite database"):
        from_replaydb(junk, tmp_path / "x.db")
    newer = tmp_path / "newer.db"
    shutil.copy(replay, newer)
    con = sqlite3.connect(newer)
    con.execute("UPDATE schema_metadata SET value = '19' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(DBSchemaError, match="19"):
        from_replaydb(newer, tmp_path / "x.db")
    with pytest.raises(DBSchemaError, match="19"):
        to_replaydb(ours, newer)
    with pytest.raises(DBError, match="not a replay database"):
        to_replaydb(ours, ours)
    with pytest.raises(DBError, match="does not exist"):
        to_replaydb(ours, tmp_path / "no" / "dir" / "r.db")
    with pytest.raises(DBError, match="no such game database"):
        to_replaydb(tmp_path / "absent.db", tmp_path / "r.db")
    assert not (tmp_path / "r.db").exists() and not list(tmp_path.glob(".r.db.tmp-*"))


def test_v18_triggers_are_live(converted, tmp_path):
    _, replay = converted
    p = tmp_path / "t.db"
    shutil.copy(replay, p)
    con = sqlite3.connect(p)
    with pytest.raises(sqlite3.IntegrityError, match="fewer than 5 moves"):
        con.execute("INSERT INTO games (game_id, board_type, num_players, created_at, game_status, "
                    "total_moves, total_turns, schema_version) VALUES ('x', 'square8', 2, 'now', "
                    "'completed', 3, 1, 18)")
    con.close()


# ---- CLI --------------------------------------------------------------------------------------

def test_cli(converted, tmp_path, capsys):
    ours, replay = converted
    out = tmp_path / "cli-replay.db"
    assert cli.main(["convert", "--to-replaydb", str(ours), str(out)]) == 0
    back = tmp_path / "cli-back.db"
    assert cli.main(["convert", "--from-replaydb", str(out), str(back)]) == 0
    capsys.readouterr()
    assert cli.main(["info", str(back)]) == 0
    text = capsys.readouterr().out
    assert "schema v3" in text and "games 48" in text and "hexagonal" in text
    assert cli.main(["info", "--json", str(back)]) == 0
    assert json.loads(capsys.readouterr().out)["games"] == 48
    assert cli.main(["info", str(out)]) == 0
    assert "GameReplayDB, schema v18" in capsys.readouterr().out
    merged = tmp_path / "merged.db"
    assert cli.main(["merge", str(merged), str(ours), str(back)]) == 0
    assert "48 games added" in capsys.readouterr().out

    for argv in (["info", str(tmp_path / "absent.db")],
                 ["convert", "--to-replaydb", str(tmp_path / "absent.db"), str(tmp_path / "o.db")],
                 ["convert", "--from-replaydb", str(ours), str(tmp_path / "o.db")],
                 ["convert", "--to-replaydb", str(ours), str(tmp_path / "nodir" / "o.db")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("ringrift-db: error: ") and err.count("\n") == 1 and "Traceback" not in err


# ---- upstream GameState shape ---------------------------------------------------------------

def _upstream_required_fields() -> dict:
    """Required fields (by alias) of upstream's pydantic models, read from app/models/core.py."""
    text = _upstream_source("app/models/core.py")
    out = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = []
        for st in node.body:
            if not isinstance(st, ast.AnnAssign) or not isinstance(st.target, ast.Name):
                continue
            name, value = st.target.id, st.value
            if value is None:
                fields.append(name)
            elif isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
                kw = {k.arg: k.value for k in value.keywords}
                if not value.args and "default" not in kw and "default_factory" not in kw:
                    fields.append(kw["alias"].value if "alias" in kw else name)
        out[node.name] = fields
    return out


def test_required_state_fields_are_upstreams():
    req = _upstream_required_fields()
    assert tuple(req["GameState"]) == upstream_state.REQUIRED_STATE_FIELDS
    assert tuple(req["BoardState"]) == upstream_state.REQUIRED_BOARD_FIELDS
    assert tuple(req["Player"]) == upstream_state.REQUIRED_PLAYER_FIELDS
    assert tuple(req["RingStack"]) == upstream_state.REQUIRED_STACK_FIELDS
    assert tuple(req["MarkerInfo"]) == upstream_state.REQUIRED_MARKER_FIELDS
    assert tuple(req["TimeControl"]) == upstream_state.REQUIRED_TIME_CONTROL_FIELDS


@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_upstream_state_has_every_required_field(board, num_players):
    g = ringrift.Game(board, num_players)
    rng = np.random.default_rng(5)
    for _ in range(60):  # some stacks and markers on the board
        if g.status != "active":
            break
        moves = g.legal_moves()
        g.apply(moves[int(rng.integers(len(moves)))])
    state = upstream_state.upstream_state(g, game_id="g", created_at="2026-01-01T00:00:00+00:00")
    assert state["board"]["stacks"] and upstream_state.missing_fields(state) == []
    assert state["board"]["size"] == {"square8": 8, "square19": 19, "hex8": 9, "hexagonal": 25}[board]
    assert json.loads(json.dumps(state)) == state
    broken = json.loads(json.dumps(state))
    del broken["players"][0]["username"], broken["timeControl"]
    key = next(iter(broken["board"]["stacks"]))
    del broken["board"]["stacks"][key]["capHeight"]
    assert upstream_state.missing_fields(broken) == [
        "timeControl", f"board.stacks[{key}].capHeight", "players[0].username"]
