"""The bench's TS anchor: the bridge's seeded random-play request and `selfplay_bench.py --ts-root`.

The first group runs everywhere: the bench without a checkout names its stored figure, a bad
checkout is one clear error, old result files still print, and the client's `play()` against
stub bridges (an old bridge without the request, a malformed answer).  The second group plays
real games on the TypeScript engine of the checkout named by ``RINGRIFT_TS_ROOT`` and is skipped,
with the reason, when that is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringrift.engine import Game
from ringrift.parity.ts_client import BridgeError, BridgeProtocolError, TSBridge

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "selfplay_bench.py"
STORED = ROOT / "bench" / "results" / "side_by_side.json"
TINY = ["--quick", "--boards", "square8", "--players", "2", "--policies", "random", "--modes", "engine"]


def bench(*args, env_root=None):
    env = {k: v for k, v in os.environ.items() if k != "RINGRIFT_TS_ROOT"}
    if env_root:
        env["RINGRIFT_TS_ROOT"] = env_root
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def test_bench_without_a_checkout_says_the_ratio_is_the_stored_figure(tmp_path):
    out = tmp_path / "r.json"
    proc = bench(*TINY, "--json", out)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(STORED.read_text())
    first = proc.stdout.splitlines()[0]
    assert first.startswith("vs TS column: from the stored figure, not measured in this run: TS games per "
                            "CPU-second of side_by_side.json (TS engine random play through the bridge, measured ")
    assert f"measured {stored['date']} on {stored['machine']['cpu']}, {stored['machine']['cpu_count']} cores" in first
    assert "--ts-root PATH" in first
    row = [ln for ln in proc.stdout.splitlines() if ln.startswith("square8 ")][0]   # t1, then t<all cores>
    ts = next(r for r in stored["ts_rows"] if (r["board"], r["players"]) == ("square8", 2))
    ours = json.loads(out.read_text())
    assert ours["ts_rows"] == [] and ours["ts_stored_rows"] == [r for r in stored["ts_rows"] if r["games_per_cpu_sec"]]
    ratio = ours["rows"][0]["games_per_cpu_sec"] / ts["games_per_cpu_sec"]
    assert row.endswith(f"{ratio:7.0f}x")
    # the file written without a checkout keeps saying where its column came from
    again = bench("--from-json", out)
    assert "from the stored figure" in again.stdout.splitlines()[0] and again.stdout.rstrip().endswith("x")


def test_bench_with_a_bad_checkout_is_one_clear_error(tmp_path):
    proc = bench(*TINY, "--ts-root", tmp_path / "nowhere")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"Error: --ts-root: TS checkout {tmp_path / 'nowhere'}: no such directory"


def test_from_json_still_reads_the_old_baseline_and_prints_the_readme_table():
    proc = bench("--from-json", ROOT / "bench" / "results" / "baseline.json")
    assert proc.returncode == 0, proc.stderr
    assert "no TS rows; vs TS = wall games/s over the fixed figures" in proc.stdout.splitlines()[0]
    assert sum(ln.startswith(("square8 ", "hex8 ", "square19 ", "hexagonal ")) for ln in proc.stdout.splitlines()) == 144
    md = bench("--from-json", STORED, "--markdown")
    assert md.returncode == 0, md.stderr
    table = [ln for ln in md.stdout.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| board | TS engine | engine t1 |")
    assert [ln.split(" | ")[0] for ln in table[2:]] == ["| square8", "| hex8", "| square19", "| hexagonal"]
    assert all(ln.count("x |") == 4 for ln in table[2:])  # engine, db t1, cli t1, cli t2 over TS


STUB = r'''
import json, os, sys
mode = os.environ["STUB_MODE"]
print(json.dumps({"type": "ready", "protocol": 1}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "quit":
        break
    if mode == "old":
        print(json.dumps({"type": "error", "id": req["id"], "error": "unknown request type \"play\""}), flush=True)
    elif mode == "short":
        print(json.dumps({"type": "played", "id": req["id"], "games": req["games"], "moves": 10, "completed": 1,
                          "capped": 0, "cpuUser": 5, "cpuSystem": 1, "wallMs": 1, "results": []}), flush=True)
'''


@pytest.mark.parametrize("mode,error,message", [
    ("old", BridgeError, 'the TS bridge could not play: unknown request type "play"'),
    ("short", BridgeProtocolError, "malformed answer from the TS bridge to play request 1"),
])
def test_client_play_rejects_an_old_or_malformed_bridge(tmp_path, mode, error, message):
    stub = tmp_path / "stub.py"
    stub.write_text(STUB)
    with TSBridge(command=[sys.executable, str(stub)], env=dict(os.environ, STUB_MODE=mode)) as bridge:
        with pytest.raises(error, match=message.replace("(", r"\(")):
            bridge.play("square8", 2, 1, 7, timeout=30)


# --------------------------------------------------------------------------------------
# The real TypeScript engine (RINGRIFT_TS_ROOT)
# --------------------------------------------------------------------------------------

TS_ROOT = os.environ.get("RINGRIFT_TS_ROOT")
needs_ts = pytest.mark.skipif(not TS_ROOT, reason="RINGRIFT_TS_ROOT is not set: no RingRift TypeScript checkout "
                                                  "(synaptent/RingRift at 2aa9f89b5 with npm ci done) to play on")


@needs_ts
def test_seeded_random_play_on_the_ts_engine_replays_on_ours():
    """Same seed, same games; another seed, other games; every TS game, replayed move by move on our
    engine, ends in the TS final hash, status and winner; and replays still work on the same bridge."""
    with TSBridge(TS_ROOT) as bridge:
        a = bridge.play("square8", 2, 3, 5, warmup=1, moves=True)
        b = bridge.play("square8", 2, 3, 5)
        c = bridge.play("square8", 2, 3, 6)
        with pytest.raises(BridgeError, match="field 'seed' must be an integer in 0..4294967295"):
            bridge.play("square8", 2, 1, -1)
        assert a["completed"] == 3 and a["capped"] == 0 and a["cpuUser"] > 0
        assert a["moves"] == sum(g["moves"] for g in a["results"]) == sum(len(g["moveList"]) for g in a["results"])
        strip = [{k: v for k, v in g.items() if k != "moveList"} for g in a["results"]]
        assert strip == b["results"] and "moveList" not in b["results"][0]
        assert [g["hash"] for g in c["results"]] != [g["hash"] for g in b["results"]]
        for g in a["results"]:
            ours = Game("square8", 2)
            for m in g["moveList"]:
                ours.play(m)
            assert (ours.hash(), ours.status, ours.winner) == (g["hash"], g["status"], g["winner"])
        # the parity request on the same bridge: replaying the first TS game matches itself
        g0 = a["results"][0]
        reply = bridge.replay({"board": "square8", "numPlayers": 2, "moves": g0["moveList"],
                               "result": {"status": g0["status"], "winner": g0["winner"], "reason": g0["reason"]}})
        assert reply["ok"] and reply["steps"] == g0["moves"] and reply["final"]["hash"] == g0["hash"]


@needs_ts
def test_bench_with_a_checkout_measures_the_ts_side_in_the_same_run(tmp_path):
    out = tmp_path / "r.json"
    proc = bench(*TINY, "--ts-games", "2", "--json", out, env_root=TS_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("vs TS column: measured in this run: TS engine of ")
    result = json.loads(out.read_text())
    [ts] = result["ts_rows"]
    assert (ts["board"], ts["players"], ts["mode"], ts["games"]) == ("square8", 2, "ts", 2)
    assert ts["cpu_seconds"] > 0 and ts["completed"] == 2 and "ts_stored_rows" not in result
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("square8 ") and " node ts " in ln for ln in lines)
    ratio = result["rows"][0]["games_per_cpu_sec"] / ts["games_per_cpu_sec"]
    assert [ln for ln in lines if " t1 engine " in ln][0].endswith(f"{ratio:7.0f}x")
