"""The TypeScript parity bridge (``ringrift.parity.ts_client`` / ``ts_check`` / ``ts_bridge``).

The first group runs everywhere: the Python side against a stub process that speaks the bridge
protocol (malformed answers, a crash mid-game, a hang, a bridge that never starts), and the
``ringrift-parity --db`` modes, verdict, threshold, tagging and bundles through that stub.  The
second group needs a real RingRift checkout with ``npm ci`` done, named by ``RINGRIFT_TS_ROOT``;
it is skipped, with the reason, when that is not set.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.parity.bundle import read_bundle
from ringrift.parity.ts_check import BridgeRunner, build_request, verify_db_ts
from ringrift.parity.ts_client import (BRIDGE_JS, BridgeCrashed, BridgeError, BridgeProtocolError, BridgeTimeout,
                                       TSBridge)

STUB = r'''
import json, os, sys, time
mode = os.environ.get("STUB_MODE", "ok")
marker = os.environ.get("STUB_MARKER", "")
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n"); sys.stdout.flush()
if mode == "noready":
    time.sleep(60); sys.exit(0)
if mode == "fatal":
    send({"type": "fatal", "error": "cannot load the engine"}); sys.exit(1)
if mode == "oldprotocol":
    send({"type": "ready", "protocol": 0}); time.sleep(60); sys.exit(0)
send({"type": "ready", "protocol": 1, "tsRoot": "stub", "bundle": "cached", "ms": 0, "node": "stub"})
games = 0
for line in sys.stdin:
    req = json.loads(line)
    if req.get("type") == "quit":
        break
    if req.get("type") != "game":
        send({"type": "error", "id": req.get("id"), "error": "unknown request"}); continue
    games += 1
    n = len(req["moves"])
    ok = {"type": "result", "id": req["id"], "ok": True, "steps": n, "ms": 0,
          "final": {"status": req["result"]["status"], "winner": req["result"]["winner"]}}
    if mode == "garbage" and games == 2:
        sys.stdout.write("this is not json\n"); sys.stdout.flush(); continue
    if mode == "wrongid" and games == 2:
        ok["id"] = 999
    if mode == "nosteps" and games == 2:
        del ok["steps"]
    if mode == "hang" and games == 2:
        time.sleep(60)
    if mode == "crash" and games == 2:
        sys.stderr.write("stub: boom in game 2\n"); sys.stderr.flush(); os._exit(3)
    if mode == "crash-once" and games == 2:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))   # exactly one process crashes
        except FileExistsError:
            pass
        else:
            sys.stderr.write("stub: crashed once\n"); sys.stderr.flush(); os._exit(3)
    if mode == "fail-odd" and req["id"] % 2 == 1:
        step = min(3, n - 1)
        ok.update(ok=False, steps=step, step=step, where="after", detail="",
                  diffs=[["hash", req["expect"][step]["h"], "0000000000000000"]],
                  debug={"before": {"state": None, "fingerprint": "fp-before", "hash": "b"},
                         "after": {"state": None, "fingerprint": "fp-after", "hash": "0000000000000000"},
                         "legal": []})
    if mode == "legal" and req["id"] == 1:
        ok.update(ok=False, steps=2, step=2, where="legal", detail="",
                  diffs=[["legal move count", req["expect"][2]["n"], 1]],
                  debug={"before": {"state": None}, "after": {"state": None},
                         "legal": [{"type": "skip_placement", "player": 1, "to": {"x": 0, "y": 0}}]})
    if mode == "echo":
        ok["echo"] = req
    send(ok)
'''


@pytest.fixture
def stub(tmp_path) -> Path:
    path = tmp_path / "stub_bridge.py"
    path.write_text(f"#!{sys.executable}\n" + STUB, encoding="utf-8")
    path.chmod(0o755)
    return path


def _bridge(stub: Path, mode: str, tmp_path: Path, **kw) -> TSBridge:
    env = dict(os.environ, STUB_MODE=mode, STUB_MARKER=str(tmp_path / "crashed"))
    kw.setdefault("start_timeout", 10)
    kw.setdefault("game_timeout", 10)
    return TSBridge(command=[sys.executable, str(stub)], env=env, **kw)


def _game(moves=5) -> dict:
    return {"board": "square8", "numPlayers": 2, "moves": [{"type": "skip_placement", "player": 1}] * moves,
            "expect": [{"h": "0" * 16, "st": "active"}] * moves,
            "result": {"status": "completed", "winner": 1, "reason": None}}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> Path:
    """Six stored square8 games (a fresh copy per test via ``db``)."""
    path = tmp_path_factory.mktemp("db") / "games.db"
    batch = _core.selfplay_batch("square8", 2, 3, list(range(6)), policy="random", max_moves=2000)
    with GameDB(path) as db:
        db.insert_batch(batch, board="square8", num_players=2, seed=3, policy="random", engine_version="t",
                        host="t", max_moves=2000)
    return path


@pytest.fixture
def db(small_db, tmp_path) -> Path:
    path = tmp_path / "games.db"
    path.write_bytes(small_db.read_bytes())
    return path


# --------------------------------------------------------------------------------------
# Protocol errors: clear messages, bounded waits
# --------------------------------------------------------------------------------------

def test_stub_round_trip(stub, tmp_path):
    with _bridge(stub, "echo", tmp_path) as b:
        assert b.ready["protocol"] == 1
        r = b.replay(_game(4))
        assert r["ok"] and r["steps"] == 4 and r["echo"]["type"] == "game" and r["echo"]["id"] == r["id"]
        ids = [b.submit(_game(i + 1)) for i in range(3)]      # pipelined
        assert [b.receive()["id"] for _ in ids] == ids
    assert b.proc is None


@pytest.mark.parametrize("mode, error, text", [
    ("garbage", BridgeProtocolError, "malformed line from the TS bridge"),
    ("wrongid", BridgeProtocolError, "unexpected answer"),
    ("nosteps", BridgeProtocolError, "malformed answer"),
    ("crash", BridgeCrashed, "died while replaying request 2"),
])
def test_bad_answers_raise_clear_errors(stub, tmp_path, mode, error, text):
    b = _bridge(stub, mode, tmp_path)
    b.start()
    try:
        assert b.replay(_game())["ok"]
        t0 = time.monotonic()
        with pytest.raises(error) as exc:
            b.replay(_game())
        assert text in str(exc.value)
        assert time.monotonic() - t0 < 8
        if mode == "crash":
            assert "exit status 3" in str(exc.value) and "stub: boom in game 2" in str(exc.value)
        assert not b.alive
    finally:
        b.kill()


def test_hang_times_out_and_kills_the_bridge(stub, tmp_path):
    b = _bridge(stub, "hang", tmp_path, game_timeout=0.5, step_timeout=0.0)
    b.start()
    assert b.replay(_game())["ok"]
    proc = b.proc
    t0 = time.monotonic()
    with pytest.raises(BridgeTimeout, match=r"no answer within 0.5 s while replaying request 2"):
        b.replay(_game())
    assert time.monotonic() - t0 < 5
    assert proc.poll() is not None and not b.alive


@pytest.mark.parametrize("mode, error, text", [
    ("noready", BridgeTimeout, "no answer within 0.5 s while starting"),
    ("fatal", BridgeError, "could not start: cannot load the engine"),
    ("oldprotocol", BridgeProtocolError, "protocol 0, expected 1"),
])
def test_start_failures(stub, tmp_path, mode, error, text):
    b = _bridge(stub, mode, tmp_path, start_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(error, match=text):
        b.start()
    assert time.monotonic() - t0 < 5 and not b.alive


def test_missing_executable_and_idle_receive(tmp_path):
    with pytest.raises(BridgeError, match="cannot start the TS bridge"):
        TSBridge(command=[str(tmp_path / "no-such-node")]).start()
    with pytest.raises(BridgeError, match="no TS checkout given"):
        TSBridge(None)


def test_bridge_script_ships_with_the_package():
    assert BRIDGE_JS.is_file() and BRIDGE_JS.name == "bridge.mjs"
    assert "createInitialGameState" in BRIDGE_JS.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------
# Requests built from the DB, runner, tags and bundles (stub bridge)
# --------------------------------------------------------------------------------------

def test_build_request_matches_the_stored_game(db):
    with GameDB(db, create=False) as gdb:
        row = next(gdb.iter_games())
    req, why = build_request(row)
    assert why is None and len(req["moves"]) == len(req["expect"]) == row.move_count
    assert req["expect"][0]["h"] == f"{int(row.reference_hashes()[0]):016x}" and req["expect"][0]["n"] > 0
    assert req["moves"][0]["type"] == "place_ring" and "placementCount" in req["moves"][0]
    assert req["expect"][-1]["st"] == "completed" and req["expect"][-1]["ph"] == "game_over"
    assert req["result"] == {"status": "completed", "winner": row.winner, "reason": row.reason}


def test_runner_keeps_input_order_over_several_bridges(stub, tmp_path, db):
    runner = BridgeRunner(lambda: _bridge(stub, "echo", tmp_path), jobs=2, depth=2)
    runner.start()
    try:
        with GameDB(db, create=False) as gdb:
            rows = list(gdb.iter_games())
        items = [(row.id, build_request(row)[0], None) for row in rows]
        items.insert(2, ("ours", None, "step 0: our engine refuses the stored move"))
        got = list(runner.run(items))
    finally:
        runner.close()
    assert [k for k, *_ in got] == [k for k, *_ in items]
    assert [kind for *_, kind in got] == ["ts", "ts", "ours", "ts", "ts", "ts", "ts"]
    for (key, req, _), (_, reply, _, kind) in zip(items, got):
        if kind == "ts":
            assert reply["echo"]["moves"] == req["moves"]


def test_runner_restarts_after_a_crash(stub, tmp_path, db):
    # One game in flight at a time, so the crash is seen while waiting for game 2's answer.
    runner = BridgeRunner(lambda: _bridge(stub, "crash-once", tmp_path), jobs=1, depth=1)
    runner.start()
    try:
        res = verify_db_ts(db, runner, quiet=True)
    finally:
        runner.close()
    assert (res.matched, res.checked) == (5, 6)
    [failure] = res.failures
    assert failure.status == "error" and "TS bridge error" in failure.message and "crashed once" in failure.message
    with GameDB(db, create=False) as gdb:
        assert gdb.summary()["parity_status"] == {"ok": 5, "error": 1}


def test_legal_surface_divergence_names_the_moves(stub, tmp_path, db):
    runner = BridgeRunner(lambda: _bridge(stub, "legal", tmp_path))
    runner.start()
    bundles = tmp_path / "bundles"
    try:
        res = verify_db_ts(db, runner, quiet=True, bundle_dir=bundles, sample=2)
    finally:
        runner.close()
    assert (res.matched, res.checked) == (1, 2)
    msg = res.failures[0].message
    assert msg.startswith("TS engine, step 2: legal move count ours ") and ", TS 1;" in msg
    assert "legal moves missing 1 [" in msg and '"type":"skip_placement"' in msg and ", extra " in msg
    [path] = bundles.glob("*.json")
    b = read_bundle(path)
    assert b["compared"] == "before" and b["legalDiff"]["countExpected"] == 1
    assert b["legalDiff"]["countGot"] == len(b["legalDiff"]["extra"]) > 0


def _fake_checkout(tmp_path: Path) -> Path:
    root = tmp_path / "RingRift"
    (root / "src/shared/engine/orchestration").mkdir(parents=True)
    (root / "node_modules").mkdir()
    (root / "package.json").write_text("{}")
    (root / "src/shared/engine/orchestration/turnOrchestrator.ts").write_text("")
    return root


def _run_cli(argv, stub=None, mode="ok", tmp_path=None, ts_root_env=None):
    env = dict(os.environ)
    env.pop("RINGRIFT_TS_ROOT", None)
    if ts_root_env:
        env["RINGRIFT_TS_ROOT"] = str(ts_root_env)
    if stub is not None:
        env.update(RINGRIFT_NODE=str(stub), STUB_MODE=mode, STUB_MARKER=str(tmp_path / "crashed"))
    return subprocess.run([sys.executable, "-m", "ringrift.parity", *argv], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)


def test_cli_without_checkout_falls_back_to_self_verification(tmp_path, db):
    r = _run_cli(["--db", str(db)], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no TypeScript checkout given" in r.stderr and "falling back to self-verification" in r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("parity: 6/6 games match (self-verification, ")


def test_cli_with_a_broken_checkout_is_an_error(tmp_path, db):
    r = _run_cli(["--db", str(db), "--ts-root", str(tmp_path / "nowhere")], tmp_path=tmp_path)
    assert r.returncode == 2 and "no such directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = _run_cli(["--db", str(db)], tmp_path=tmp_path, ts_root_env=tmp_path / "empty")
    assert r.returncode == 2 and "not a RingRift checkout" in r.stderr


def test_cli_ts_mode_through_the_stub(stub, tmp_path, db):
    root = _fake_checkout(tmp_path)
    r = _run_cli(["--db", str(db), "--sample", "0"], stub, "ok", tmp_path, ts_root_env=root)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("parity: 6/6 games match (ts-engine, ") and last.endswith(" steps)")
    with GameDB(db, create=False) as gdb:
        assert gdb.summary()["parity_status"] == {"ok": 6}


def test_cli_failures_threshold_tags_and_bundles(stub, tmp_path, db):
    root = _fake_checkout(tmp_path)
    bundles = tmp_path / "bundles"
    r = _run_cli(["--db", str(db), "--ts-root", str(root), "--bundle-dir", str(bundles)], stub, "fail-odd", tmp_path)
    assert r.returncode == 1
    assert r.stdout.strip().splitlines()[-1].startswith("parity: 3/6 games match (ts-engine, ")
    assert "Error: 3 games failed parity check" in r.stderr
    assert r.stdout.count("TS engine, step 3: hash ours ") == 3
    with GameDB(db, create=False) as gdb:
        assert gdb.summary()["parity_status"] == {"ok": 3, "failed": 3}
        failed = {row.id: row for row in gdb.iter_games(parity_status="failed")}
    files = sorted(bundles.glob("*.json"))
    assert len(files) == 3
    b = read_bundle(files[0])
    assert b["mode"] == "ts-engine" and b["step"] == 3 and b["compared"] == "after"
    row = failed[int(b["gameId"].removeprefix("game"))]
    assert b["hash"] == {"ours": f"{int(row.reference_hashes()[3]):016x}", "theirs": "0000000000000000"}
    assert b["stateBefore"]["currentPlayer"] in (1, 2) and b["move"]["type"]

    # The same failures within a looser fail_threshold pass, with a warning.
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("parity:\n  sample_size: 4\n  fail_threshold: 0.5\n")
    r = _run_cli(["--db", str(db), "--ts-root", str(root), "--config", str(cfg)], stub, "fail-odd", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("parity: 2/4 games match (ts-engine, ")
    assert "warning: 2 games failed parity check" in r.stderr


# --------------------------------------------------------------------------------------
# The real TypeScript engine (RINGRIFT_TS_ROOT)
# --------------------------------------------------------------------------------------

TS_ROOT = os.environ.get("RINGRIFT_TS_ROOT")
needs_ts = pytest.mark.skipif(not TS_ROOT, reason="RINGRIFT_TS_ROOT is not set: no RingRift TypeScript checkout "
                                                  "(synaptent/RingRift at 2aa9f89b5 with npm ci done) to replay through")
REPLAYS = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "ts-replays"
REAL_GAMES = {"square8": 8, "hex8": 6, "square19": 1, "hexagonal": 1}


@needs_ts
@pytest.mark.parametrize("board", list(REAL_GAMES))
@pytest.mark.parametrize("players", [2, 3, 4])
def test_fresh_selfplay_matches_the_ts_engine(tmp_path, board, players):
    db_path = tmp_path / f"canonical_{board}.db"
    n = REAL_GAMES[board]
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "run", "canonical_selfplay", "--board", board,
                        "--num-games", str(n), "--players", str(players), "--seed", "17",
                        "--output-db", str(db_path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    v = subprocess.run([sys.executable, "-m", "ringrift.parity", "--db", str(db_path), "--sample", "0",
                        "--ts-root", TS_ROOT, "--bundle-dir", str(tmp_path / "bundles")],
                       capture_output=True, text=True, timeout=600)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.strip().splitlines()[-1].startswith(f"parity: {n}/{n} games match (ts-engine, ")
    with GameDB(db_path, create=False) as gdb:
        assert gdb.count_games(parity_status="ok") == n


@needs_ts
@pytest.mark.parametrize("name", ["square8_2p_seed1000.jsonl.gz", "square8_2p_seed700_swap.jsonl.gz",
                                  "debug_hex8_3p_seed410.jsonl.gz"])
def test_bridge_reproduces_recorded_reference_games(name):
    """The bridge's host layer must produce every recorded hash, count and result."""
    path = REPLAYS / name
    if not path.exists():
        pytest.skip(f"recorded reference games not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    with TSBridge(TS_ROOT) as bridge:
        for rec in records:
            req = {"board": rec["boardType"], "numPlayers": rec["numPlayers"], "rulesOptions": rec.get("rulesOptions"),
                   "initialHash": rec["initialHash"], "moves": rec["moves"],
                   "expect": [{k: s[k] for k in ("h", "st", "ph", "p", "n")} for s in rec["steps"]],
                   "result": {"status": rec["result"]["gameStatus"], "winner": rec["result"]["winner"],
                              "reason": rec["result"]["reason"]}}
            reply = bridge.replay(req)
            assert reply["ok"], (rec["gameId"], {k: v for k, v in reply.items() if k != "debug"})
            assert reply["steps"] == len(rec["moves"])
            assert reply["final"]["hash"] == rec["result"]["finalHash"]
            assert reply["final"]["endedBy"] == rec["result"]["terminatedBy"]


@needs_ts
def test_real_bridge_fails_a_corrupted_stored_step_hash(tmp_path, small_db):
    """A corrupted stored step hash fails the game at that step: the fast step hash of a schema-2
    row is checked against our replay before the TS engine is asked (its reference hash is
    recomputed by the replay, so a TS divergence would show as one of that)."""
    import sqlite3

    import numpy as np

    db_path = tmp_path / "g.db"
    db_path.write_bytes(small_db.read_bytes())
    with GameDB(db_path, create=False, readonly=True) as gdb:
        row = next(gdb.iter_games())
    assert row.hash_kind == "cells32"
    con = sqlite3.connect(db_path)
    (blob,) = con.execute("SELECT hashes FROM games WHERE id = ?", (row.id,)).fetchone()
    h = np.frombuffer(blob, dtype="<u4").copy()
    h[4] ^= 1
    con.execute("UPDATE games SET hashes = ? WHERE id = ?", (h.tobytes(), row.id))
    con.commit()
    con.close()
    v = subprocess.run([sys.executable, "-m", "ringrift.parity", "--db", str(db_path), "--ts-root", TS_ROOT],
                       capture_output=True, text=True, timeout=300)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"game {row.id} " in v.stdout and "step 4: the stored cells32 hash differs from our replay" in v.stdout
    assert "1 games failed parity check" in v.stderr


@needs_ts
def test_stack_strike_on_the_extraction_stack_matches_the_reference(tmp_path):
    """square8 2p, run seed 11, game 40, step 135: a recovery stack_strike whose struck stack is
    also the extraction stack (found by this bridge; the engine now extracts the exposed ring)."""
    db_path = tmp_path / "g.db"
    batch = _core.selfplay_batch("square8", 2, 11, [40], policy="random", max_moves=2000)
    with GameDB(db_path) as gdb:
        gdb.insert_batch(batch, board="square8", num_players=2, seed=11, policy="random", engine_version="t",
                         host="t", max_moves=2000)
    v = subprocess.run([sys.executable, "-m", "ringrift.parity", "--db", str(db_path), "--ts-root", TS_ROOT],
                       capture_output=True, text=True, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
