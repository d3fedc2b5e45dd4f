"""The bench scripts run end to end (tiny sizes, real subprocesses) and the prepared GPU run's
control flow holds together without a GPU: a device call is too scarce to find a typo with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def run(*args, check=True):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def selfplay_bench():
    """bench/selfplay_bench.py as a module (bench/ is no package), for its table and goal lines."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("selfplay_bench", BENCH / "selfplay_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def bench_row(mode, threads, gps, gpc, **extra):
    """A square8 2p random row of the self-play bench: games per second (wall) and per CPU-second."""
    return {"board": "square8", "players": 2, "policy": "random", "threads": threads, "mode": mode,
            "games_per_sec": gps, "games_per_cpu_sec": gpc, **extra}


def test_env_bench_measures_every_board_on_the_cpu(tmp_path):
    out = tmp_path / "env.json"
    proc = run(BENCH / "env_bench.py", "--envs", "4", "--steps", "3", "--threads", "1", "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["board"], r["features"]) for r in rows] == [(b, f) for b in ("square8", "hex8", "square19", "hexagonal")
                                                           for f in (True, False)]
    assert all(r["env_steps"] == 12 and r["env_steps_per_sec"] > 0 for r in rows)
    assert "env steps/s" in proc.stdout
    again = run(BENCH / "env_bench.py", "--envs", "4", "--steps", "3", "--threads", "1", "--boards", "hex8",
                "--compare", out)
    assert again.stdout.count("compare hex8") == 2 and "of 2 rows >10% slower" in again.stdout


def test_env_bench_cuda_without_a_gpu_says_why():
    from ringrift.gpu import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is present here")
    proc = run(BENCH / "env_bench.py", "--device", "cuda", check=False)
    assert proc.returncode == 2 and "needs a CUDA GPU and cupy" in proc.stderr


def test_selfplay_bench_merges_gpu_rows_into_its_table(tmp_path):
    cpu = tmp_path / "cpu.json"
    run(BENCH / "selfplay_bench.py", "--quick", "--boards", "square8", "--players", "2", "--policies", "random",
        "--modes", "engine", "--json", cpu)
    gpu = tmp_path / "gpu.json"
    gpu_row = {"board": "square8", "players": 2, "policy": "random", "threads": 0, "mode": "gpu", "batch": 65536,
               "block": 64, "max_registers": None, "games": 65536, "moves": 9000000, "seconds": 1.0,
               "games_per_sec": 65536.0, "moves_per_sec": 9000000.0}
    env_row = {"board": "square8", "mode": "env", "env_steps_per_sec": 1.0}
    gpu.write_text(json.dumps({"rows": [gpu_row, env_row]}))
    proc = run(BENCH / "selfplay_bench.py", "--from-json", cpu, gpu)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("square8")]
    gpu_lines = [ln for ln in lines if " gpu " in ln]
    assert len(gpu_lines) == 1 and "b65536" in gpu_lines[0]  # the env row (no games/s) is left out
    assert len(lines) - 1 == len(json.loads(cpu.read_text())["rows"]) >= 1


def test_gpu_bench_without_a_gpu_exits_2_with_the_reason():
    from ringrift.gpu import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is present here")
    proc = run(BENCH / "gpu_bench.py", check=False)
    assert proc.returncode == 2 and proc.stdout.startswith("gpu: ")


def test_gpu_bench_control_flow_with_the_host_twin_standing_in(tmp_path, monkeypatch):
    """gpu_bench.main with its GPU calls replaced: the sweep, occupancy runs, other boards, CPU
    rows, budget and summary all run, so the one device call cannot die on a slip in them. The
    end-to-end row runs the real `run_selfplay(device="cuda")` on the stand-in cupy."""
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_bench
    finally:
        sys.path.remove(str(BENCH))
    from ringrift import _core

    calls = []

    def fake_gpu(board, players, batch, seed=7, block=64, max_registers=None):
        calls.append((board, batch, block, max_registers))
        n = min(batch // 1024, 2)  # a couple of real host-twin games stand in for the kernel
        out = _core.selfplay_slots_host(board, players, seed, list(range(n)), "random", 50)
        sec = 0.001 * batch / 1024
        moves = int(out["move_count"].sum())
        return {"board": board, "players": players, "policy": "random", "threads": 0, "mode": "gpu",
                "batch": batch, "block": block, "max_registers": max_registers, "games": batch, "moves": moves,
                "seconds": sec, "games_per_sec": batch / sec / (1 + (max_registers or 0) / 1000),
                "moves_per_sec": moves / sec}

    real_cpu = gpu_bench.timed_cpu

    def fake_cpu(board, players, games):
        return real_cpu(board, players, 2)  # the real CPU timing, two games

    monkeypatch.setattr(gpu_bench, "gpu_status", lambda: (True, "stand-in"))
    monkeypatch.setattr(gpu_bench, "differential", lambda *a, **k: True)
    monkeypatch.setattr(gpu_bench, "timed_gpu", fake_gpu)
    monkeypatch.setattr(gpu_bench, "timed_cpu", fake_cpu)
    import importlib.util

    import ringrift.gpu.device as device

    spec = importlib.util.spec_from_file_location("standin_cupy", ROOT / "tests" / "standin_gpu" / "cupy" / "__init__.py")
    standin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standin)
    monkeypatch.setitem(sys.modules, "cupy", standin)
    monkeypatch.setattr(device, "_kernels", {})
    monkeypatch.setattr(gpu_bench, "E2E_GAMES", 6)
    out = tmp_path / "gpu.json"
    assert gpu_bench.main(["--max-batch", "8192", "--json", str(out), "--budget-s", "60"]) == 0
    result = json.loads(out.read_text())
    sweep = [c[1] for c in calls if c[0] == "square8" and c[2] == 64 and c[3] is None]
    assert sweep[:4] == [1024, 2048, 4096, 8192]
    assert {(c[2], c[3]) for c in calls if c[0] == "square8"} >= {(128, None), (64, 128), (128, 96)}
    assert {c[0] for c in calls} == {"square8", "hex8", "square19", "hexagonal"}
    assert result["differential_identical"] is True and len([r for r in result["rows"] if r["mode"] == "records"]) == 4
    e2e = [r for r in result["rows"] if r["mode"] == "gpu+db"]
    assert len(e2e) == 1 and e2e[0]["games"] == 6 and e2e[0]["moves"] > 6 * 50


def test_device_run_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_device_run.sh")]).returncode == 0


def test_selfplay_bench_says_how_far_each_speed_goal_is():
    bench = selfplay_bench()

    rows = [bench_row("engine", 1, 100.0, 100.0), bench_row("db", 1, 80.0, 80.0),
            bench_row("cli", 1, 8000.0, 8000.0), bench_row("cli", 2, 15200.0, 12000.0),
            bench_row("db", 2, 190.0, 95.0), bench_row("engine", 2, 200.0, 100.0)]
    ref = bench.Reference([{"board": "square8", "players": 2, "games_per_cpu_sec": 10.0}], "test")
    lines = bench.goal_lines(rows, ref)
    assert "goal 1,000x TS per core, main command square8 2p random t1: 800x, 20% short" in lines
    assert "goal 1,000x TS per core, main command square8 2p random t2: 1,200x, met" in lines
    assert "goal t2/t1 >= 1.9, main command square8 2p random: 1.90, met" in lines
    assert "goal db/engine >= 0.90 per CPU-second, square8 2p random t1: 0.80, 11% short" in lines
    assert "goal db/engine >= 0.90 per CPU-second, square8 2p random t2: 0.95, met" in lines
    assert len(lines) == 5


def test_selfplay_bench_judges_each_goal_over_several_stored_runs(tmp_path):
    # three runs of the same plan whose square8 main command gave 800x, 1,100x and 900x the TS
    # engine per core, and db/engine 0.80, 0.95, 0.85: the goal is judged on the spread
    files = []
    for i, (cli, db) in enumerate([(8000.0, 80.0), (11000.0, 95.0), (9000.0, 85.0)]):
        rows = [bench_row("engine", 1, 100.0, 100.0, moves=1000, games=10, moves_per_sec=1.0),
                bench_row("db", 1, db, db, moves=1000, games=10, moves_per_sec=1.0),
                bench_row("cli", 1, cli, cli, moves=1000, games=10, moves_per_sec=1.0)]
        ts = [{**bench_row("ts", 1, 10.0, 10.0, moves=1000, games=10, moves_per_sec=1.0)}]
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps({"date": f"2026-12-07 0{i}:00 UTC", "quick": False, "ts_rows": ts,
                                         "rows": rows, "machine": {"cpu": "test"}}))
    out = run(BENCH / "selfplay_bench.py", "--from-json", *files).stdout.splitlines()
    assert "goal 1,000x TS per core, main command square8 2p random t1: 1,100x, met" in out  # each run's own line
    summary = out[out.index("the goals over the 3 full runs above:") + 1:]
    assert summary == [
        "goal db/engine >= 0.90 per CPU-second, square8 2p random t1, 3 runs: median 0.85 (0.80 to 0.95), met in 1 of 3",
        "goal 1,000x TS per core, main command square8 2p random t1, 3 runs: median 900x (800x to 1,100x), met in 1 of 3"]
    # one file has nothing to summarise
    assert "the goals over" not in run(BENCH / "selfplay_bench.py", "--from-json", files[0]).stdout


def test_selfplay_bench_says_where_the_main_commands_time_goes():
    bench = selfplay_bench()

    # per game: engine 40 µs, the db path 50, the main command 62.5 (20,000 games in 1.25 s, CPU
    # 1.25 s), of which its one-game runs put 0.2 s of CPU (10 µs a game) and 0.25 s of wall in
    # start-up and exit
    cli = bench_row("cli", 1, 16000.0, 16000.0, seconds=1.25, games=20000, startup_seconds=0.25,
                    startup_cpu_seconds=0.2, startup_cold_cpu_seconds=0.24)
    rows = [bench_row("engine", 1, 25000.0, 25000.0), bench_row("records", 1, 10000.0, 10000.0),
            bench_row("db", 1, 20000.0, 20000.0), cli, bench_row("cli", 2, 28000.0, 15000.0)]
    ref = bench.Reference([{"board": "square8", "players": 2, "games_per_cpu_sec": 20.0}], "test")
    assert bench.time_lines(rows, ref) == [
        "time per game, main command square8 2p random t1 (CPU µs): 62.5 = engine 40.0 + recording and storing "
        "10.0 + start-up and exit 10.0 + the rest +2.5; 1,000x TS allows 50.0 (12.5 over)",
        "serial part, main command square8 2p random: start-up and exit take 0.250 s (a one-game run) of the "
        "1.250 s one-thread run, which caps t2/t1 at 1.67",
        "start-up, main command square8 2p random: 0.200 CPU-s with the config files found validated in the cache "
        "(a second run; the rows above), 0.240 CPU-s without it (a first run, RINGRIFT_CONFIG_CACHE=off)"]
    # with an engine row on two threads: how far play alone scales here
    assert bench.time_lines(rows + [bench_row("engine", 2, 46000.0, 23000.0)], ref)[-1] == (
        "scaling of play alone, square8 2p random: engine t2/t1 1.84 by wall clock in this run (nothing "
        "serial in it: what two threads give play itself here, noise included)")
    # a stored run from before the one-game runs, or one without TS figures or other rows, says what it can
    old = {k: v for k, v in cli.items() if not k.startswith("startup")}
    assert bench.time_lines([old, rows[0]], bench.Reference([], "none")) == [
        "time per game, main command square8 2p random t1 (CPU µs): 62.5 = engine 40.0 + the rest +22.5"]
    assert bench.time_lines([old], bench.Reference([], "none")) == [
        "time per game, main command square8 2p random t1 (CPU µs): 62.5 (no engine or db row in this run to split it)"]


def test_selfplay_bench_times_the_main_command_and_its_start_up(tmp_path):
    out = tmp_path / "cli.json"
    run(BENCH / "selfplay_bench.py", "--quick", "--boards", "square8", "--players", "2", "--policies", "random",
        "--modes", "cli", "--json", out)
    rows = {r["threads"]: r for r in json.loads(out.read_text())["rows"] if r["mode"] == "cli"}
    one = rows[1]
    assert one["games"] == 300 and one["moves"] > 300 * 50 and one["bytes_per_game"] > 0
    # the one-game runs: start-up and exit, timed in wall and CPU seconds (a quick run plays for
    # only a few ms more than they take, so no order between the two is asserted)
    assert 0 < one["startup_seconds"] < 30 and 0 < one["startup_cpu_seconds"] < 30
    assert 0 < one["startup_cold_cpu_seconds"] < 30  # a first run's, with the config cache off
    assert set(rows) == {1, 2} and "startup_seconds" not in rows[2]
