"""Bad input to the command-line tools: one line on stderr and the documented exit status
(docs/cli.md: 0 ok, 1 failure, 2 usage or unusable input), memory and time bounded by the work
asked for, never by a number in the request. Real subprocesses, real SQLite files."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.pipeline.ranges import MAX_RANGES

PY = sys.executable
MEMORY_CAP = 3 << 30  # address space of each tool here: the old per-game lists needed 10-24 GB


def run(tool: str, *args, cwd: Path, timeout=120, env=None, cap=True) -> subprocess.CompletedProcess:
    def limit():
        if cap:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    return subprocess.run([PY, "-m", f"ringrift.{tool}", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL, preexec_fn=limit)


def one_line(r: subprocess.CompletedProcess, status: int, text: str) -> None:
    assert r.returncode == status, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in r.stderr, r.stderr[-2000:]


def selfplay_db(tmp_path: Path, n: int, name="g.db") -> Path:
    db = tmp_path / name
    r = run("pipeline", "--state", str(tmp_path / "seed.json"), "run", "canonical_selfplay", "--num-games", str(n),
            "--output-db", str(db), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return db


# ---- memory and time bounded by the work -------------------------------------------------------

def test_absurd_game_counts_are_refused_or_planned_in_constant_memory(tmp_path):
    state = str(tmp_path / "s.json")
    r = run("pipeline", "--state", state, "--dry-run", "run", "canonical_selfplay", "--num-games",
            "99999999999999999999", cwd=tmp_path, timeout=60)
    one_line(r, 2, "--num-games must be 0..4611686018427387904 (2^62")
    db = selfplay_db(tmp_path, 5)
    with GameDB(db) as g:  # a hole at 2: the plan lists the missing indices as runs
        g.conn.execute("DELETE FROM games WHERE game_index = 2")
        g.conn.commit()
    t = time.perf_counter()
    r = run("pipeline", "--state", state, "--dry-run", "run", "canonical_selfplay", "--num-games", str(2**62),
            "--output-db", str(db), cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"4 games already in the output DB; {2**62 - 4} to play: indices 2,5-{2**62 - 1}" in r.stdout
    assert time.perf_counter() - t < 30
    # one more than the native runners' indices hold is refused before a game is played (it once
    # passed this check and failed in the runner with a traceback, the state left "running")
    r = run("pipeline", "--state", state, "run", "canonical_selfplay", "--num-games", str(2**62 + 1),
            "--output-db", str(db), cwd=tmp_path, timeout=60)
    one_line(r, 2, "--num-games must be 0..4611686018427387904 (2^62")
    # the range worker (what ssh and p2p run) has the same limit: it once checked 2^63 and died in
    # the native runner with a traceback for an index from 2^62
    for flags in (("--start", str(2**62 - 2), "--count", "5"), ("--indices", f"3,{2**62}")):
        r = run("pipeline", "worker", "--board", "square8", *flags, "--output-db", str(tmp_path / "w.db"),
                cwd=tmp_path, timeout=60)
        one_line(r, 2, str(2**62))  # 2: a usage error, as for every other command (it was 1)
    r = run("pipeline", "worker", "--board", "square8", "--start", "0", "--count", "1", "--seed", "-1",
            "--output-db", str(tmp_path / "w.db"), cwd=tmp_path, timeout=60)
    one_line(r, 2, "--seed must be 0..")
    with pytest.raises(ValueError, match="game index: 4611686018427387904 is out of range"):
        _core.selfplay_batch("square8", 2, 1, [2**62], "random")
    # the config's bounds are the flags' bounds, and a value out of them names the file and line
    cfg = tmp_path / "big.yaml"
    for body, text in [("selfplay:\n  threads: 1025\n", "big.yaml:2: 'selfplay.threads' must be an integer 0..1024"),
                       ("selfplay:\n  seed: 9223372036854775808\n", "big.yaml:2: 'selfplay.seed' must be an integer"),
                       ("selfplay:\n  max_moves:\n    square8: 99999999999999999999\n",
                        "big.yaml:3: 'selfplay.max_moves.square8' must be an integer 1..1000000")]:
        cfg.write_text(body)
        one_line(run("pipeline", "--config", str(cfg), "--state", state, "run", "canonical_selfplay", "--num-games",
                     "5", "--output-db", str(db), cwd=tmp_path), 2, text)
    for args, text in [(["--seed", "-1"], "--seed must be 0..9223372036854775807"),
                       (["--seed", str(2**64)], "--seed must be"),
                       (["--max-moves", "0"], "--max-moves must be 1..1000000"),
                       (["--threads", "100000"], "--threads must be 0..1024"),
                       (["--batch-size", "0"], "--batch-size must be 1..100000")]:
        r = run("pipeline", "--state", state, "--dry-run", "run", "canonical_selfplay", "--num-games", "5", *args,
                cwd=tmp_path)
        one_line(r, 2, text)


def test_a_distributed_plan_has_at_most_max_ranges(tmp_path):
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  h1:\n    ssh_host: 127.0.0.1\n    role: selfplay\n")
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("hosts_file: hosts.yaml\n")
    r = run("pipeline", "--config", str(cfg), "--state", str(tmp_path / "s.json"), "--dry-run", "run",
            "canonical_selfplay", "--num-games", str(10**15), cwd=tmp_path, timeout=60)
    one_line(r, 2, f"more than {MAX_RANGES} ranges: raise --games-per-worker")
    r = run("pipeline", "--config", str(cfg), "--state", str(tmp_path / "s.json"), "--dry-run", "run",
            "canonical_selfplay", "--num-games", str(10**15), "--games-per-worker", str(10**11), cwd=tmp_path,
            timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"0 games already in the output DB; {10**15} to play in {MAX_RANGES} of {MAX_RANGES} ranges" in r.stdout
    assert f"--indices 999900000000000-999999999999999" in r.stdout


# ---- the state file -------------------------------------------------------------------------

@pytest.mark.parametrize("content, text", [
    (b'{"run": "\xff\xfe"}', "is not UTF-8 text"),
    (b'{"phase_status": 3}', "field 'phase_status' must be an object, got 3"),
    (b'{"run": [1, 2]}', "field 'run' must be an object or null"),
    (b'{"workers": {"h/1": {"range": "0-9"}}}', "workers['h/1'].range must be an array or null"),
    (b'{"ranges": [{"start": "0"}]}', "ranges[0].start must be an integer"),
    (b'{"games_target": true}', "field 'games_target' must be an integer or null"),
    (b"[" * 100000 + b"]" * 100000, "not usable JSON"),
    (b"{nope", "is not valid JSON"),
], ids=["non-utf8", "phase_status", "run", "worker-range", "range-start", "bool-target", "deep", "not-json"])
def test_a_bad_state_file_is_one_line_for_status_and_run(tmp_path, content, text):
    state = tmp_path / "s.json"
    state.write_bytes(content)
    for args in (["status"], ["status", "--json"],
                 ["run", "canonical_selfplay", "--num-games", "3", "--output-db", str(tmp_path / "g.db"), "--quiet"]):
        r = run("pipeline", "--state", str(state), *args, cwd=tmp_path)
        one_line(r, 2, text)
        assert str(state) in r.stderr
    assert state.read_bytes() == content  # left as it was, for the user to look at
    assert not (tmp_path / "g.db").exists()


def test_status_json_into_a_closed_pipe_ends_quietly(tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"current_phase": "canonical_selfplay", "ranges": [
        {"start": i, "end": i + 1, "status": "merged", "host": "h"} for i in range(5000)]}))
    cmd = f"{PY} -m ringrift.pipeline --state {state} status --json | head -c 10"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == '{\n "curren' and r.stderr == "", r.stderr


# ---- game databases -------------------------------------------------------------------------

def test_a_corrupted_output_db_of_the_same_size_is_one_line(tmp_path):
    db = selfplay_db(tmp_path, 200)
    raw = bytearray(db.read_bytes())
    page = int.from_bytes(raw[16:18], "big")
    for i in range(page, len(raw)):  # every page but the first (schema and header intact)
        raw[i] = (raw[i] * 7 + 13) & 0xFF
    db.write_bytes(bytes(raw))
    state = str(tmp_path / "s.json")
    for dry in ([], ["--dry-run"]):
        r = run("pipeline", "--state", state, *dry, "run", "canonical_selfplay", "--num-games", "300",
                "--output-db", str(db), "--quiet", cwd=tmp_path)
        one_line(r, 2, f"{db}: not a readable game database")
    assert db.read_bytes() == bytes(raw)  # nothing written into it


def test_a_full_disk_while_storing_is_status_1_and_keeps_the_committed_games(tmp_path):
    """A write that fails part-way (here a 2 MB file-size limit: EFBIG, as a full disk gives ENOSPC)
    is a run that failed (1), not unusable input (2); the batches before it stay, and the same
    command resumes to the exact target."""
    db = tmp_path / "full.db"
    args = [PY, "-m", "ringrift.pipeline", "--state", str(tmp_path / "s.json"), "run", "canonical_selfplay",
            "--num-games", "20000", "--output-db", str(db), "--quiet"]

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))

    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    one_line(r, 1, "storing self-play games failed")
    with GameDB(db, readonly=True) as g:
        kept = g.count_games()
    assert 0 < kept < 20000
    # nothing plays on after the run stopped: the state says so (its worker and range said "running")
    state = json.loads((tmp_path / "s.json").read_text())
    assert state["phase_status"]["canonical_selfplay"] == "failed"
    assert [w["status"] for w in state["workers"].values()] == ["failed"]
    assert [r["status"] for r in state["ranges"]] == ["failed"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"{kept} already present" in r.stdout, r.stdout + r.stderr
    with GameDB(db, readonly=True) as g:
        assert g.count_games() == 20000


def test_a_missing_db_is_status_2_in_every_tool(tmp_path):
    missing = str(tmp_path / "none.db")
    state = str(tmp_path / "s.json")
    for tool, args in [("db", ["info", missing]), ("parity", ["--db", missing]), ("export", ["--db", missing]),
                       ("pipeline", ["--state", state, "run", "parity_validation", "--db", missing]),
                       ("pipeline", ["--state", state, "run", "npz_export", "--db", missing])]:
        r = run(tool, *args, cwd=tmp_path)
        assert r.returncode == 2, (tool, args, r.stderr)
        assert "no such game database" in r.stderr.strip().splitlines()[-1], (tool, r.stderr)
        assert "Traceback" not in r.stderr
    # someone else's SQLite file: the pipeline's phases say so in one line with status 2, as the
    # tools do (they printed the tool's line, then a second one, with status 1)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE foo (x)")
    con.commit()
    con.close()
    for phase in ("parity_validation", "npz_export"):
        r = run("pipeline", "--state", state, "run", phase, "--db", str(other), cwd=tmp_path)
        one_line(r, 2, f"{phase}: {other}: not a ringrift game database (no meta table; it has foo)")


def test_two_runs_on_one_db_count_only_the_games_each_added(tmp_path):
    """Two orchestrators with different state files fill one DB at once: their new games add up
    to the target (each counts the rows it inserted, not what its state file expected)."""
    db = tmp_path / "shared.db"
    n = 3000
    procs = [subprocess.Popen([PY, "-m", "ringrift.pipeline", "--state", str(tmp_path / f"s{k}.json"), "run",
                               "canonical_selfplay", "--num-games", str(n), "--output-db", str(db), "--threads", "1",
                               "--batch-size", "50", "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for k in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    new = []
    for out, _ in outs:
        line = next(ln for ln in out.splitlines() if " new games (" in ln)
        new.append(int(line.split(": ", 1)[1].split(" new games")[0]))
    with GameDB(db, create=False) as g:
        assert g.count_games() == n
    assert sum(new) == n, (new, outs)


# ---- flags of the other tools ---------------------------------------------------------------

def test_bad_flags_of_parity_and_p2p_are_one_line(tmp_path):
    one_line(run("parity", "--jobs", "-1", "--db", str(tmp_path / "x.db"), cwd=tmp_path), 2,
             "--jobs must be >= 0")
    one_line(run("parity", "--sample", "3", "--sample-seed", "-1", "--db", str(tmp_path / "x.db"), cwd=tmp_path), 2,
             "--sample-seed must be >= 0")
    for peer in ("not a url", "host:99999", "http://", "http://a b:1", "http://h:1/path?q"):
        r = run("p2p", "--peer", peer, "--data-dir", str(tmp_path / "d"), "--no-discovery", "--port", "0",
                cwd=tmp_path, timeout=60)
        one_line(r, 2, "is not a node URL like http://host:8770")
    for flag in ("--heartbeat", "--down-after"):  # NaN was taken: a node that never settles
        r = run("p2p", flag, "nan", "--data-dir", str(tmp_path / "d"), "--no-discovery", "--port", "0", cwd=tmp_path,
                timeout=60)
        one_line(r, 2, "--heartbeat must be 0..3600 s and --down-after longer than it")
    (tmp_path / "x.db").touch()
    one_line(run("export", "--db", str(tmp_path / "x.db"), "--threads", "-1", cwd=tmp_path), 2,
             "--threads must be 0..1024")
    # usage and unusable input are status 2 in the pipeline too (these were 1, one after a request)
    state = str(tmp_path / "s.json")
    one_line(run("pipeline", "--state", state, "--backend", "p2p", "--p2p-leader", "http://127.0.0.1:99999", "run",
                 "canonical_selfplay", "--num-games", "2", cwd=tmp_path), 2, "the port is not a port number")
    one_line(run("pipeline", "--state", state, "--backend", "p2p", "--p2p-leader", "http://127.0.0.1:9", "cluster",
                 "sync", cwd=tmp_path), 2, "cluster sync is not available with --backend p2p")
    one_line(run("pipeline", "--state", state, "run", "canonical_selfplay", "--num-games", "2", "--policy",
                 f"onnx:{tmp_path / 'none.onnx'}", "--output-db", str(tmp_path / "g.db"), cwd=tmp_path), 2,
             "none.onnx: no such file")


def test_ctrl_c_stops_parity_in_one_line_and_keeps_the_tags_so_far(tmp_path):
    from conftest import ctrl_c_reaches_child

    db = tmp_path / "g.db"
    r = run("pipeline", "--state", str(tmp_path / "s.json"), "run", "canonical_selfplay", "--board", "square19",
            "--num-games", "1500", "--output-db", str(db), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with GameDB(db) as g:  # the first games fail (a flipped hash byte), so a line says the check has begun
        g.conn.execute("UPDATE games SET hashes = zeroblob(length(hashes)) WHERE id <= 3")
    proc = subprocess.Popen([PY, "-m", "ringrift.parity", "--db", str(db), "--sample", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            preexec_fn=ctrl_c_reaches_child)
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "game 1 (square19 2p" in first, first + err
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err.strip().splitlines()[-1] == "ringrift-parity: interrupted; the games checked so far are tagged"
    assert "Traceback" not in err
    with GameDB(db, readonly=True) as g:  # the game already reported failed at least, and not every game
        counts = g.summary()["parity_status"]
    assert counts.get("failed", 0) >= 1 and counts.get("unchecked", 0) > 0, counts


def test_npz_output_defaults_to_data_training_everywhere(tmp_path):
    db = selfplay_db(tmp_path, 3)
    state = str(tmp_path / "s.json")
    r = run("pipeline", "--state", state, "--dry-run", "run", "npz_export", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 0 and "--output-dir data/training" in r.stdout, r.stdout + r.stderr
    r = run("pipeline", "--state", state, "--dry-run", "run", "all", "--num-games", "3", "--output-db", str(db),
            cwd=tmp_path)
    assert r.returncode == 0 and "--output-dir data/training" in r.stdout, r.stdout + r.stderr
    r = run("export", "--db", str(db), "--include-unchecked", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data/training/canonical_square8.npz").is_file()


# ---- export working folders --------------------------------------------------------------

KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
from ringrift.export.tmpdirs import ExportTmpDir
work = ExportTmpDir(Path(sys.argv[1]))
(work.path / "train.00000.features.part").write_bytes(b"x" * 100000)
print(work.path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as a killed export: no clean-up runs
"""


def test_the_next_export_removes_folders_of_killed_exports_only(tmp_path):
    db = selfplay_db(tmp_path, 4)
    out = tmp_path / "npz"
    out.mkdir()
    r = subprocess.run([PY, "-c", KILLED_EXPORT, str(out / "canonical_square8")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == -9
    killed = Path(r.stdout.strip())
    assert killed.is_dir() and killed.name.startswith(".canonical_square8.export-")
    # a live export's folder (held by this process), and folders without an owner lock: one
    # fresh (an export between creating it and locking it), one a day old (an older version's)
    from ringrift.export.tmpdirs import ExportTmpDir

    live = ExportTmpDir(out / "other")
    fresh = out / ".x.export-fresh"
    fresh.mkdir()
    old = out / ".y.export-old"
    old.mkdir()
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    unrelated = out / ".keep"
    unrelated.mkdir()
    try:
        r = run("export", "--db", str(db), "--output-dir", str(out), "--include-unchecked", "--quiet", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert not killed.exists() and not old.exists()
        assert live.path.is_dir() and fresh.is_dir() and unrelated.is_dir()
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
            "canonical_square8.npz", "canonical_square8_val.npz"]
    finally:
        live.cleanup()
    assert not live.path.exists()


@pytest.mark.parametrize("tool,args", [("db", ["info"]), ("db", ["convert", "--bogus", "a", "b"]),
                                       ("export", ["--bogus"]), ("parity", ["--bogus"]),
                                       ("pipeline", ["run", "canonical_selfplay", "--bogus"]), ("p2p", ["--bogus"])])
def test_a_bad_flag_is_one_line_and_status_2_in_every_tool(tmp_path, tool, args):
    r = run(tool, *args, cwd=tmp_path, timeout=60)
    one_line(r, 2, "error:")
    assert "(see --help)" in r.stderr
