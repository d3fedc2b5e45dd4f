"""canonical_selfplay end to end: real subprocesses, real SQLite files, real SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ctrl_c_reaches_child
from ringrift import _core
from ringrift.db import GameDB

BOARDS = ("square8", "hex8", "square19", "hexagonal")
# Small enough to keep the suite fast, large enough to reach lines, territory and endings.
GAMES = {"square8": 12, "hex8": 10, "square19": 3, "hexagonal": 2}


def pipeline(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "ringrift.pipeline", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def parity_db(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ringrift.parity", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_selfplay_then_self_verification(tmp_path, board, players):
    db_path = tmp_path / f"canonical_{board}.db"
    policy = "heuristic" if players == 3 else "random"
    r = pipeline("run", "canonical_selfplay", "--board", board, "--num-games", str(GAMES[board]),
                 "--players", str(players), "--policy", policy, "--seed", "5", "--output-db", str(db_path),
                 "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert f"{GAMES[board]} new games" in r.stdout
    assert "wins by seat" in r.stdout and "games/s" in r.stdout
    v = parity_db("--db", str(db_path))
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.strip().splitlines()[-1].startswith(f"parity: {GAMES[board]}/{GAMES[board]} games match")
    with GameDB(db_path, create=False) as db:
        assert db.count_games(parity_status="ok") == GAMES[board]
        rows = list(db.iter_games())
    assert sorted(r.game_index for r in rows) == list(range(GAMES[board]))
    assert all(r.policy == policy and r.num_players == players for r in rows)
    assert all(r.winner in range(1, players + 1) for r in rows if not r.capped)


def test_self_verification_detects_a_corrupted_hash(tmp_path):
    db_path = tmp_path / "g.db"
    assert pipeline("run", "canonical_selfplay", "--board", "square8", "--num-games", "4",
                    "--output-db", str(db_path), "--quiet").returncode == 0
    con = sqlite3.connect(db_path)
    gid, hashes = con.execute("SELECT id, hashes FROM games ORDER BY id LIMIT 1").fetchone()
    bad = bytearray(hashes)
    bad[4 * 5] ^= 1  # flip one bit of the (32-bit fast) step hash after move 5
    con.execute("UPDATE games SET hashes = ? WHERE id = ?", (bytes(bad), gid))
    con.commit()
    con.close()
    v = parity_db("--db", str(db_path))
    assert v.returncode == 1
    assert f"game {gid}" in v.stdout and "step 5" in v.stdout
    assert v.stdout.strip().splitlines()[-1].startswith("parity: 3/4 games match")
    with GameDB(db_path, create=False) as db:
        assert db.count_games(parity_status="failed") == 1


def test_batches_do_not_depend_on_thread_count():
    a = _core.selfplay_batch("hex8", 3, 11, list(range(20)), "random", threads=1)
    b = _core.selfplay_batch("hex8", 3, 11, list(range(19, -1, -1)), "random", threads=2)
    order = np.argsort(b["game_index"])
    for g in range(20):
        j = order[g]
        ma = a["moves"][a["move_offsets"][g]:a["move_offsets"][g + 1]]
        mb = b["moves"][b["move_offsets"][j]:b["move_offsets"][j + 1]]
        assert np.array_equal(ma, mb)
        ha = a["hashes"][a["move_offsets"][g]:a["move_offsets"][g + 1]]
        hb = b["hashes"][b["move_offsets"][j]:b["move_offsets"][j + 1]]
        assert np.array_equal(ha, hb)


def test_a_single_game_regenerates_alone():
    full = _core.selfplay_batch("square8", 2, 3, list(range(10)), "heuristic", threads=2)
    alone = _core.selfplay_batch("square8", 2, 3, [7], "heuristic", threads=1)
    lo, hi = full["move_offsets"][7], full["move_offsets"][8]
    assert np.array_equal(full["moves"][lo:hi], alone["moves"])
    assert np.array_equal(full["hashes"][lo:hi], alone["hashes"])


def test_move_cap_marks_games_capped(tmp_path):
    db_path = tmp_path / "capped.db"
    r = pipeline("run", "canonical_selfplay", "--board", "square8", "--num-games", "5", "--max-moves", "20",
                 "--output-db", str(db_path), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "capped: 5" in r.stdout
    with GameDB(db_path, create=False) as db:
        rows = list(db.iter_games())
    assert all(row.capped and row.move_count == 20 and row.winner == 0 for row in rows)
    assert parity_db("--db", str(db_path)).returncode == 0


def test_sigkill_leaves_complete_games_and_the_rerun_resumes_exactly(tmp_path):
    db_path = tmp_path / "kill.db"
    target = 400
    args = ["run", "canonical_selfplay", "--board", "square19", "--num-games", str(target), "--seed", "9",
            "--output-db", str(db_path), "--batch-size", "8", "--threads", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "ringrift.pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=1) as con:
                    stored = con.execute("SELECT count(*) FROM games").fetchone()[0]
            except sqlite3.Error:
                stored = 0
            if stored >= 16:
                break
    assert proc.poll() is None, "self-play finished before it could be killed; raise the target"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_after_kill = con.execute("SELECT count(*) FROM games").fetchone()[0]
    con.close()
    assert 0 < n_after_kill < target and n_after_kill % 8 == 0  # whole batches only
    assert parity_db("--db", str(db_path)).returncode == 0  # only complete, valid games
    r = pipeline(*args)
    assert r.returncode == 0, r.stderr
    assert f"{target - n_after_kill} new games ({n_after_kill} already present" in r.stdout
    with GameDB(db_path, create=False) as db:
        idx = sorted(row.game_index for row in db.iter_games())
    assert idx == list(range(target))  # no seed duplicated or skipped


@pytest.mark.parametrize("args, message", [
    (["--board", "chess", "--num-games", "3"], "invalid choice: 'chess'"),
    (["--board", "square8"], "--num-games"),
    (["--board", "square8", "--num-games", "x"], "invalid int value"),
])
def test_bad_flags_give_one_line_errors(tmp_path, args, message):
    r = pipeline("run", "canonical_selfplay", *args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unwritable_output_gives_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = pipeline("run", "canonical_selfplay", "--board", "square8", "--num-games", "2",
                 "--output-db", str(blocker / "x.db"))
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr


def test_config_supplies_defaults_and_bad_config_names_file_line_key(tmp_path):
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("default_board: hex8\nselfplay:\n  num_players: 3\n  policy: heuristic\n")
    db_path = tmp_path / "c.db"
    r = pipeline("--config", str(cfg), "run", "canonical_selfplay", "--num-games", "2", "--output-db",
                 str(db_path), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "selfplay hex8 3p policy=heuristic" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_board: hex8\nselfplay:\n  num_player: 3\n")
    r = pipeline("--config", str(bad), "run", "canonical_selfplay", "--num-games", "2", "--output-db",
                 str(db_path))
    assert r.returncode == 2  # a bad config: usage (docs/cli.md)
    assert f"{bad}:3: unknown key 'selfplay.num_player'" in r.stderr
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("selfplay:\n  max_moves:\n    square8: many\n")
    r = pipeline("--config", str(wrong), "run", "canonical_selfplay", "--num-games", "2", "--output-db",
                 str(db_path))
    assert r.returncode == 2  # a bad config: usage (docs/cli.md)
    assert f"{wrong}:3: 'selfplay.max_moves.square8' must be an integer 1..1000000, got 'many'" in r.stderr


def test_ctrl_c_stops_cleanly_and_keeps_committed_batches(tmp_path):
    db_path = tmp_path / "int.db"
    # far more games than are played before the interrupt (about 1,000 square19 games a second
    # here), so the run is still going when the poll sees its first batch
    args = ["run", "canonical_selfplay", "--board", "square19", "--num-games", "50000", "--seed", "4",
            "--output-db", str(db_path), "--batch-size", "8", "--threads", "2", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "ringrift.pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_child)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=1) as con:
                    if con.execute("SELECT count(*) FROM games").fetchone()[0] >= 8:
                        break
            except sqlite3.Error:
                pass
    assert proc.poll() is None, "self-play finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "terminate called" not in err and "Traceback" not in err
    assert "rerun to resume" in err
    assert parity_db("--db", str(db_path)).returncode == 0


def test_runner_counts_wins_reasons_and_caps_as_stored(tmp_path):
    """The runner's per-batch tallies (one bincount per batch) agree with the stored rows."""
    from ringrift.selfplay.runner import run_selfplay

    with GameDB(tmp_path / "tally.db") as db:
        res = run_selfplay(db, board="square8", num_games=70, num_players=3, seed=5, threads=1, batch_size=32,
                           max_moves=150)
        s = db.summary()
    assert res.games == 70 and res.capped == s["capped"] > 0
    assert dict(res.wins) == {w: n for w, n in s["wins_by_seat"].items() if w}
    assert dict(res.reasons) == {r: n for r, n in s["reasons"].items() if r != "none"}
    assert sum(res.wins.values()) + res.capped == 70 and len(res.wins) == 3 and len(res.reasons) >= 2
