"""Self-play throughput benchmark: games/s and moves/s per board, players, policy, threads and mode.

Modes:
  engine    play only (the rules core and the policy; no per-step records)
  records   play and keep each game's move records and per-step state hashes (what a DB stores)
  db        the full canonical_selfplay path: the self-play runner (ringrift.selfplay.runner) into a
            fresh SQLite game database; on the CPU one native call where each thread plays a chunk,
            then commits it (csrc/selfplay/db_runner.h); also reports the file's bytes per game and
            per move (after VACUUM, off the clock)
  cli       the README's main command itself, `ringrift-pipeline run canonical_selfplay ...` into a
            fresh DB, run as a subprocess beside a copy of the repo's config/ (as from the checkout):
            interpreter start-up, imports, config, state file and logs included; CPU time is the
            child's (user + system, all threads)

    python bench/selfplay_bench.py --quick                      # a few seconds, smoke-sized
    python bench/selfplay_bench.py --json bench/results/new.json  # full table
    python bench/selfplay_bench.py --compare bench/results/baseline.json --json new.json
    python bench/selfplay_bench.py --plot throughput.png          # needs matplotlib (bench extra)
    python bench/selfplay_bench.py --from-json bench/results/baseline.json --plot out.png  # replot

`--compare OLD` prints each row's ratio to the same row of OLD and flags rows more than 10%
slower.

The "vs TS" column compares games per CPU-second with the TypeScript reference engine playing the
same kind of games (random legal moves, same board and player count). With `--ts-root PATH` (or
RINGRIFT_TS_ROOT) the bench plays those games itself, in the same run, through the shipped parity
bridge (ringrift/parity/ts_bridge/bridge.mjs: the recorder's host layer, a seeded PRNG, one Node
process whose own CPU time is measured); ours is this process's CPU time (time.process_time, all
threads). Without a checkout the column comes from the stored run named in STORED_REFERENCE, and
the bench says so, with that run's machine and date.

    python bench/selfplay_bench.py --ts-root ~/RingRift --json bench/results/side_by_side.json
    python bench/selfplay_bench.py --from-json bench/results/side_by_side.json --markdown  # README table
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ringrift import BOARDS, POLICIES, _core

# The run whose TS rows stand in for the reference when no TS checkout is given.
STORED_REFERENCE = Path(__file__).resolve().parent / "results" / "side_by_side.json"
REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"  # read by the main command run from the checkout
# Games per row, sized for roughly one second per row on one core (quick: a tenth or less): shorter
# rows gave ratios (records/engine, db/engine) that moved by 0.1 from run to run.
FULL_GAMES = {"square8": 20000, "hex8": 15000, "square19": 1500, "hexagonal": 600}
QUICK_GAMES = {"square8": 300, "hex8": 200, "square19": 12, "hexagonal": 6}
# cli rows pay the interpreter's start-up once (~0.5 CPU-s), so they play a run of the size a user
# asks for (the measure: 20,000 square8 games), a few seconds per row.
CLI_GAMES = {"square8": 20000, "hex8": 12000, "square19": 1200, "hexagonal": 400}
# TS games per (board, players): a few CPU-seconds each (the TS engine is ~1000x slower), and warm-up
# games off the clock, enough for V8 to reach its steady speed: measured on the 2-core box, three
# timed runs of 200 square8 games in a row after 40 warm-up games gave 21.9, 26.2 and 26.4 games per
# CPU-second (hex8, 100 games after 20: 12.5, 14.3, 14.8; the JIT's compiler and GC threads still
# add 12% CPU during the first run), so the first 240 square8 / 120 hex8 games are warm-up.
TS_FULL_GAMES = {"square8": 200, "hex8": 100, "square19": 6, "hexagonal": 3}
TS_QUICK_GAMES = {"square8": 4, "hex8": 3, "square19": 1, "hexagonal": 1}
TS_WARMUP = {"square8": 240, "hex8": 120, "square19": 6, "hexagonal": 2}
SLOW_FLAG = 0.90  # a row below 90% of the baseline is flagged


def machine_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "hardware_threads": _core.hardware_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def per_cpu(games, cpu_seconds):
    return round(games / cpu_seconds, 3) if cpu_seconds > 0 else None


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _main_command(tmp: Path, board, players, policy, threads, games, seed, *, cold=False) -> tuple[float, float]:
    """Runs the README's main command in `tmp` (a fresh DB, beside a copy of the repo's config/);
    returns its wall seconds and the child's CPU seconds. It finds the config files validated in
    the cache of validated configs (ringrift/pipeline/config_cache.py) as a user's second run does
    (run_cli_row warms it first, once a bench); `cold` turns that cache off, as on a first run."""
    path = tmp / "canonical.db"
    if REPO_CONFIG.is_dir() and not (tmp / "config").exists():  # the user runs it in the checkout
        shutil.copytree(REPO_CONFIG, tmp / "config")
    cmd = [sys.executable, "-m", "ringrift.pipeline", "--state", str(tmp / "state.json"), "run",
           "canonical_selfplay", "--board", board, "--players", str(players), "--policy", policy,
           "--seed", str(seed), "--num-games", str(games), "--output-db", str(path), "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, RINGRIFT_LOG_DIR=str(tmp / "logs"))
    if cold:
        env["RINGRIFT_CONFIG_CACHE"] = "off"
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds, cpu = time.perf_counter() - t0, children_cpu() - c0
    if r.returncode != 0:
        raise SystemExit(f"Error: {' '.join(cmd[2:])} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return seconds, cpu


@functools.cache
def _warm_config_cache() -> None:
    """Off the clock, once a bench: one run leaves the repo's config validated in the cache (its
    entries are keyed by the files' text, so every later copy of config/ finds them)."""
    with tempfile.TemporaryDirectory() as tmp:
        _main_command(Path(tmp), "square8", 2, "random", 1, 1, 1)


STARTUP_RUNS = 3  # one-game runs per board whose median is the main command's start-up and exit (each of warm, cold)


def run_cli_row(board, players, policy, threads, games, seed=1) -> dict:
    """The README's main command as a user runs it: a fresh interpreter, a fresh DB, start-up
    included. A one-thread row also times runs of one game (the median of STARTUP_RUNS): the
    start-up and exit that no number of threads shares out."""
    from ringrift.db import GameDB

    _warm_config_cache()
    with tempfile.TemporaryDirectory() as tmp:
        seconds, cpu = _main_command(Path(tmp), board, players, policy, threads, games, seed)
        path = Path(tmp) / "canonical.db"
        with GameDB(path, create=False, readonly=True) as db:
            moves = db.summary()["moves"]
        size = path.stat().st_size
    used = min(threads or _core.hardware_threads(), games)
    row = {"board": board, "players": players, "policy": policy, "threads": used, "mode": "cli",
           "games": games, "moves": moves, "seconds": round(seconds, 4),
           "games_per_sec": round(games / seconds, 2), "moves_per_sec": round(moves / seconds, 1),
           "cpu_seconds": round(cpu, 4), "games_per_cpu_sec": per_cpu(games, cpu),
           "db_bytes": size, "bytes_per_game": round(size / games, 1), "bytes_per_move": round(size / max(moves, 1), 2)}
    if used == 1:
        one, cold = [], []
        for _ in range(STARTUP_RUNS):  # interleaved, so that a slow spell of the machine hits both
            for runs, off in ((one, False), (cold, True)):
                with tempfile.TemporaryDirectory() as tmp:
                    runs.append(_main_command(Path(tmp), board, players, policy, 1, 1, seed, cold=off))
        row["startup_seconds"] = round(statistics.median(w for w, _ in one), 4)
        row["startup_cpu_seconds"] = round(statistics.median(c for _, c in one), 4)
        row["startup_cold_cpu_seconds"] = round(statistics.median(c for _, c in cold), 4)
    return row


def run_row(board, players, policy, threads, mode, games, seed=1) -> dict:
    if mode == "cli":
        return run_cli_row(board, players, policy, threads, games, seed)
    record = mode != "engine"
    c0 = time.process_time()
    t0 = time.perf_counter()
    size = None
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "db":
            # The user's path (ringrift-pipeline's canonical_selfplay): the runner's native threads
            # play and commit chunks into a fresh database.
            from ringrift.db import GameDB
            from ringrift.selfplay.runner import run_selfplay

            path = Path(tmp) / "bench.db"
            with GameDB(path) as db:
                res = run_selfplay(db, board=board, num_games=games, num_players=players, seed=seed, policy=policy,
                                   threads=threads, max_moves=100000)
            moves, used = res.moves, min(threads or _core.hardware_threads(), games)
        else:
            batch = _core.selfplay_batch(board, players, seed, range(games), policy, threads=threads,
                                         max_moves=100000, record=record)
            moves, used = int(batch["total_moves"]), batch["threads"]
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if mode == "db":  # off the clock: the file as it rests (VACUUMed, WAL folded in)
            with GameDB(path) as db:
                db.conn.execute("VACUUM")
            size = path.stat().st_size
    row = {"board": board, "players": players, "policy": policy, "threads": used, "mode": mode,
           "games": games, "moves": moves, "seconds": round(seconds, 4),
           "games_per_sec": round(games / seconds, 2), "moves_per_sec": round(moves / seconds, 1),
           "cpu_seconds": round(cpu, 4), "games_per_cpu_sec": per_cpu(games, cpu)}
    if size is not None:  # the whole file (fixed pages included) per game and per move
        row.update(db_bytes=size, bytes_per_game=round(size / games, 1), bytes_per_move=round(size / max(moves, 1), 2))
        from ringrift.db import store  # which insert path wrote the rows (GameDB.insert_batch)

        row["writer"] = "native" if store.native_writer_module() is not None else "python"
    return row


def run_ts_row(bridge, board, players, games, warmup, seed=1) -> dict:
    """The same kind of games on the TS engine: random legal moves through the bridge's host layer."""
    r = bridge.play(board, players, games, seed, warmup=warmup, max_moves=100000)
    cpu = (r["cpuUser"] + r["cpuSystem"]) / 1e6
    seconds = r["wallMs"] / 1e3
    return {"board": board, "players": players, "policy": "random", "threads": 1, "mode": "ts", "games": games,
            "moves": r["moves"], "completed": r["completed"], "capped": r["capped"], "warmup": warmup,
            "seconds": round(seconds, 3), "games_per_sec": round(games / seconds, 3) if seconds else None,
            "moves_per_sec": round(r["moves"] / seconds, 1) if seconds else None,
            "cpu_seconds": round(cpu, 4), "games_per_cpu_sec": per_cpu(games, cpu)}


class Reference:
    """TS games per CPU-second by (board, players), and where they come from.  ``legacy``: the fixed
    2-player games/s figures of result files written before the TS rows (wall-clock ratios)."""

    def __init__(self, rows, source: str, legacy: dict | None = None):
        self.by_key = {(r["board"], r["players"]): r for r in rows if r.get("games_per_cpu_sec")}
        self.source = source
        self.legacy = legacy

    def ratio(self, r):
        """Our row's games per CPU-second over the TS engine's, for random play only."""
        if self.legacy is not None:
            ref = self.legacy.get(r["board"]) if r["players"] == 2 and r["mode"] != "ts" else None
            return r["games_per_sec"] / ref if ref else None
        ts = self.by_key.get((r["board"], r["players"]))
        if ts is None or r["policy"] != "random" or r["mode"] == "ts" or not r.get("games_per_cpu_sec"):
            return None
        return r["games_per_cpu_sec"] / ts["games_per_cpu_sec"]


def stored_reference(path=STORED_REFERENCE) -> Reference:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        return Reference([], f"no TS figures: no --ts-root / RINGRIFT_TS_ROOT given, and the stored run "
                             f"{path} cannot be read ({exc.__class__.__name__}); the vs TS column stays empty")
    return Reference(data.get("ts_rows", []), "vs TS column: from the stored figure, not measured in this run: "
                     + describe_run(path, data)
                     + "; give --ts-root PATH (or RINGRIFT_TS_ROOT) to measure it side by side")


def describe_run(path, data) -> str:
    m = data.get("machine", {})
    where = f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores"
    if m.get("note"):
        where += f", {m['note']}"
    return (f"TS games per CPU-second of {Path(path).name} (TS engine random play through the bridge, "
            f"measured {data.get('date', 'at an unrecorded date')} on {where})")


def file_reference(path, data) -> Reference:
    """A result file's own anchor: its TS rows, or (files from before the TS rows) its fixed figures."""
    if data.get("ts_rows"):
        return Reference(data["ts_rows"], f"{path}: vs TS from its own " + describe_run(path, data))
    if data.get("ts_stored_rows"):
        return Reference(data["ts_stored_rows"], f"{path}: {data.get('ts_source', 'vs TS from stored TS rows')}")
    legacy = data.get("reference_games_per_sec") or {}
    return Reference([], f"{path}: no TS rows; vs TS = wall games/s over the fixed figures {legacy} "
                         f"(games/s, provenance unrecorded), not per CPU-second", legacy)


def row_key(r) -> tuple:
    return (r["board"], r["players"], r["policy"], r["threads"], r["mode"])


def row_label(r) -> str:
    """Who ran the row: t<threads> on the CPU, b<batch> on a GPU (bench/gpu_bench.py rows)."""
    return f"b{r['batch']}" if r["mode"] == "gpu" else f"t{r['threads']}"


HEADER = (f"{'board':<10} {'p':>2} {'policy':<9} {'run':>8} {'mode':<7} {'games/s':>10} {'moves/s':>11} "
          f"{'moves/g':>8} {'games/cpu-s':>12} {'vs TS':>8}")


def fmt_row(r, ratio=None, base=None) -> str:
    ratio_s = f"{ratio:7.0f}x" if ratio else f"{'-':>8}"
    gpc = r.get("games_per_cpu_sec")
    gpc_s = f"{gpc:>12.2f}" if gpc else f"{'-':>12}"
    label = "node" if r["mode"] == "ts" else row_label(r)
    line = (f"{r['board']:<10} {r['players']:>2} {r['policy']:<9} {label:>8} {r['mode']:<7} "
            f"{r['games_per_sec']:>10.2f} {r['moves_per_sec']:>11.0f} {r['moves'] / r['games']:>8.1f} {gpc_s} {ratio_s}")
    if r.get("bytes_per_move") is not None:
        line += f"  {r['bytes_per_game']:.0f} B/game {r['bytes_per_move']:.2f} B/move"
    if base is not None:
        ratio = r["games_per_sec"] / base["games_per_sec"] if base["games_per_sec"] else float("inf")
        line += f" {ratio:6.2f}" + ("  SLOWER" if ratio < SLOW_FLAG else "")
    return line


def plan(args):
    all_threads = _core.hardware_threads()
    thread_counts = sorted({1, all_threads})
    rows = []
    for board in args.boards:
        for players in args.players:
            for policy in args.policies:
                for threads in thread_counts:
                    for mode in args.modes:
                        rows.append((board, players, policy, threads, mode))
    return rows


def markdown(rows, ref: Reference) -> str:
    """The README's table: 2 players, random policy, games per CPU-second, ours over the TS engine's;
    `cli` is the README's main command (start-up included)."""
    def cell(board, mode, threads):
        for r in rows:
            if (r["board"], r["players"], r["policy"], r["mode"], r.get("threads")) == (board, 2, "random", mode, threads):
                return r
        return None

    def num(x):
        return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:.2f}")

    out = ["| board | TS engine | engine t1 | db t1 | cli t1 | cli t2 | engine / TS | db t1 / TS | cli t1 / TS "
           "| cli t2 / TS | cli t2/t1 wall | bytes/game | moves/game ours / TS |", "| --- " * 13 + "|"]
    for board in BOARDS:
        ts = ref.by_key.get((board, 2))
        e1, d1, c1, c2 = cell(board, "engine", 1), cell(board, "db", 1), cell(board, "cli", 1), cell(board, "cli", 2)
        if ts is None and e1 is None:
            continue
        g = [x and x.get("games_per_cpu_sec") for x in (e1, d1, c1, c2)]
        ratios = [ref.ratio(x) if x else None for x in (e1, d1, c1, c2)]
        scale = f"{c2['games_per_sec'] / c1['games_per_sec']:.2f}" if c1 and c2 else "-"
        size = next((x["bytes_per_game"] for x in (c1, d1) if x and "bytes_per_game" in x), None)
        mpg = (f"{e1['moves'] / e1['games']:.0f} / {ts['moves'] / ts['games']:.0f}" if e1 and ts else "-")
        out.append(f"| {board} | {num(ts and ts['games_per_cpu_sec'])} | " + " | ".join(num(x) for x in g) + " | "
                   + " | ".join("-" if x is None else f"{x:,.0f}x" for x in ratios)
                   + f" | {scale} | {num(size)} | {mpg} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-sized run")
    ap.add_argument("--boards", nargs="+", default=list(BOARDS), choices=BOARDS)
    ap.add_argument("--players", nargs="+", type=int, default=[2, 3, 4], choices=[2, 3, 4])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--modes", nargs="+", default=["engine", "records", "db"], choices=["engine", "records", "db", "cli"],
                    help="cli: the README's main command as a subprocess, start-up included (not in the default set)")
    ap.add_argument("--json", metavar="PATH", help="write results and machine info as JSON")
    ap.add_argument("--compare", metavar="OLD_JSON", help="print ratios against a previous result file")
    ap.add_argument("--plot", metavar="PNG", help="plot games/s per board (needs matplotlib)")
    ap.add_argument("--from-json", metavar="JSON", nargs="+",
                    help="do not run: print and plot the rows of result files (e.g. the baseline and a "
                         "bench/gpu_bench.py result together)")
    ap.add_argument("--markdown", action="store_true", help="with --from-json: print the README's table")
    ap.add_argument("--ts-root", metavar="PATH", help="a RingRift checkout (npm install done) whose TS engine plays "
                    "the same games in this run (default: RINGRIFT_TS_ROOT)")
    ap.add_argument("--ts-games", type=int, metavar="N", help="TS games per board and player count "
                    f"(default {TS_FULL_GAMES}, quick {TS_QUICK_GAMES})")
    ap.add_argument("--machine-note", default="", help="recorded with the machine info (e.g. 'shared with 3 jobs')")
    args = ap.parse_args(argv)
    if args.from_json:
        rows, judged = [], []
        for path in args.from_json:
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as exc:
                ap.error(f"--from-json {path}: cannot read it ({exc})")
            if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
                ap.error(f"--from-json {path}: not a bench result (no 'rows' list)")
            ref = file_reference(path, data)
            print(ref.source)
            if args.markdown:
                print(markdown(data["rows"], ref))
                continue
            # rows without games/s (bench/env_bench.py's env steps) have no place in this table
            file_rows = [r for r in data.get("ts_rows", []) + data["rows"] if "games_per_sec" in r]
            print(HEADER)
            for r in file_rows:
                print(fmt_row(r, ref.ratio(r)))
            if not data.get("quick"):
                for line in goal_lines(file_rows, ref) + time_lines(file_rows, ref):
                    print(line)
                judged.append((file_rows, ref))
            rows += file_rows
        if len(judged) > 1:
            print(f"the goals over the {len(judged)} full runs above:")
            for line in goal_summary(judged):
                print(line)
        if args.plot:
            plot(rows, args.plot)
        return 0
    if args.ts_games is not None and args.ts_games < 1:
        ap.error("--ts-games must be at least 1")

    from ringrift.parity.ts_client import BridgeError, TSBridge, check_ts_root, ts_root_from

    ts_root = ts_root_from(args.ts_root)
    bridge = None
    if ts_root and "random" not in args.policies:
        ap.error("the TS engine plays random legal moves: --ts-root needs --policies random")
    if ts_root:
        try:
            check_ts_root(ts_root)
            bridge = TSBridge(ts_root, game_timeout=600.0)
            ready = bridge.start()
        except BridgeError as exc:
            print(f"Error: --ts-root: {exc}", file=sys.stderr)
            return 2
        ref = Reference([], f"vs TS column: measured in this run: TS engine of {ready.get('tsRoot')} "
                                 f"(node {ready.get('node')}, one process, random legal moves through the bridge's "
                                 f"host layer), games per CPU-second on each side")
    else:
        ref = stored_reference()
    try:
        return run_bench(args, ref, bridge)
    except BridgeError as exc:
        print(f"Error: the TS side of the bench failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if bridge is not None:
            bridge.close()


def run_bench(args, ref: Reference, bridge) -> int:

    base = {}
    if args.compare:
        with open(args.compare) as f:
            base = {row_key(r): r for r in json.load(f)["rows"]}
    games_for = QUICK_GAMES if args.quick else FULL_GAMES
    ts_games_for = TS_QUICK_GAMES if args.quick else TS_FULL_GAMES
    print(ref.source)
    print(HEADER + (f" {'ratio':>6}" if base else ""))
    rows, ts_rows, slower = [], [], 0
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.time()
    warmed = set()
    for board, players, policy, threads, mode in plan(args):
        if board not in warmed:
            # off the clock, like the TS warm-up games: the first call builds the board's tables (~0.1 s)
            _core.selfplay_batch(board, players, 0, range(2), policy, threads=1, max_moves=100000, record=True)
            warmed.add(board)
        if bridge is not None and policy == "random" and (board, players) not in ref.by_key:
            # the TS games of this board and player count, just before ours (same window of a shared machine)
            warmup = 1 if args.quick else TS_WARMUP[board]  # a smoke run checks the path, not the speed
            tr = run_ts_row(bridge, board, players, args.ts_games or ts_games_for[board], warmup)
            ts_rows.append(tr)
            ref.by_key[(board, players)] = tr
            print(fmt_row(tr), flush=True)
        n = CLI_GAMES[board] if mode == "cli" and not args.quick else games_for[board]
        r = run_row(board, players, policy, threads, mode, n)
        rows.append(r)
        b = base.get(row_key(r))
        if b and r["games_per_sec"] < SLOW_FLAG * b["games_per_sec"]:
            slower += 1
        print(fmt_row(r, ref.ratio(r), b), flush=True)
    print(f"{len(rows)} rows in {time.time() - t0:.1f}s" + (f"; {slower} rows >10% slower than {args.compare}"
                                                             if base else ""))
    for line in db_engine_ratios(rows):
        print(line)
    if args.quick:
        print("goals: not judged on a --quick run (rows too short to time)")
    else:
        for line in goal_lines(rows, ref) + time_lines(rows, ref):
            print(line)
    machine = machine_info()
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]   # other jobs on the machine show up here
    machine["loadavg_start"] = load_start
    if args.machine_note:
        machine["note"] = args.machine_note
    result = {"machine": machine, "date": utc_now(), "quick": args.quick, "ts_source": ref.source,
              "ts_rows": ts_rows, "rows": rows}
    if bridge is None:
        result["ts_stored_rows"] = list(ref.by_key.values())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(ts_rows + rows, args.plot)
    return 0


def db_engine_ratios(rows) -> list[str]:
    """One line per run that has both an engine and a db row: db over engine (the goal: >= 0.90,
    the DB path at engine speed), by wall clock and per CPU-second, and where the difference goes
    per CPU-second: records/engine is the cost of recording each step (move records and the step
    hash), db/records the cost of writing the DB (packing and SQLite)."""
    by = {row_key(r): r for r in rows}
    out = []

    def per_cpu(a, b):
        return a["games_per_cpu_sec"] / b["games_per_cpu_sec"] if a.get("games_per_cpu_sec") and \
            b.get("games_per_cpu_sec") else float("nan")

    for key, r in by.items():
        if key[-1] != "db":
            continue
        e = by.get(key[:-1] + ("engine",))
        if e and e["games_per_sec"]:
            line = (f"db/engine {r['board']} {r['players']}p {r['policy']} t{r['threads']}: "
                    f"{r['games_per_sec'] / e['games_per_sec']:.2f} wall, {per_cpu(r, e):.2f} per CPU-second")
            rec = by.get(key[:-1] + ("records",))
            if rec:
                line += f" (records/engine {per_cpu(rec, e):.2f}, db/records {per_cpu(r, rec):.2f})"
            out.append(line)
    # the goal for the user's command: two threads >= 1.9x one (wall clock)
    for key, r in by.items():
        if key[-1] != "cli" or r["threads"] == 1:
            continue
        one = by.get(key[:3] + (1, "cli"))
        if one and one["games_per_sec"]:
            out.append(f"cli t{r['threads']}/t1 {r['board']} {r['players']}p {r['policy']}: "
                       f"{r['games_per_sec'] / one['games_per_sec']:.2f}")
    return out


GOAL_VS_TS = 1000.0   # the main command, per core, over the TS engine (issue 16)
GOAL_DB_ENGINE = 0.90  # the DB path per CPU-second over engine-only play
GOAL_T2_T1 = 1.9       # the main command on two threads over one, by wall clock


def goal_text(value: float, goal: float) -> str:
    return "met" if value >= goal else f"{(1 - value / goal) * 100:.0f}% short"


def goals(rows, ref) -> list[tuple[str, float, float, str]]:
    """The speed goals a run's rows can judge: (what, measured value, goal, format of the value)
    for the main command (cli rows) per core over the TS engine, db over engine per CPU-second,
    and the main command's two-thread speed-up (wall clock)."""
    out = []
    by = {row_key(r): r for r in rows if r.get("mode") in ("engine", "db", "cli")}
    for key, r in by.items():
        name = f"{r['board']} {r['players']}p {r['policy']} t{r['threads']}"
        if r["mode"] == "cli":
            ratio = ref.ratio(r)
            if ratio:
                out.append((f"{GOAL_VS_TS:,.0f}x TS per core, main command {name}", ratio, GOAL_VS_TS, "{:,.0f}x"))
            one = by.get(key[:3] + (1, "cli"))
            if r["threads"] == 2 and one and one["games_per_sec"]:
                out.append((f"t2/t1 >= {GOAL_T2_T1}, main command {r['board']} {r['players']}p {r['policy']}",
                            r["games_per_sec"] / one["games_per_sec"], GOAL_T2_T1, "{:.2f}"))
        e = by.get(key[:-1] + ("engine",))
        if r["mode"] == "db" and e and e.get("games_per_cpu_sec") and r.get("games_per_cpu_sec"):
            out.append((f"db/engine >= {GOAL_DB_ENGINE:.2f} per CPU-second, {name}",
                        r["games_per_cpu_sec"] / e["games_per_cpu_sec"], GOAL_DB_ENGINE, "{:.2f}"))
    return out


def goal_lines(rows, ref) -> list[str]:
    """One line per speed goal: the measured value and `met` or how far it is from the goal."""
    return [f"goal {what}: {fmt.format(v)}, {goal_text(v, goal)}" for what, v, goal, fmt in goals(rows, ref)]


def goal_summary(runs) -> list[str]:
    """Each goal over several runs ((rows, ref) pairs, e.g. result files of the same plan): the
    median and the range of its values, and in how many runs it was met. One run on a shared
    machine moves by 10% or more, so a goal is judged on the spread, not on one lucky run."""
    values: dict[str, list] = {}
    for rows, ref in runs:
        for what, v, goal, fmt in goals(rows, ref):
            values.setdefault(what, []).append((v, goal, fmt))
    out = []
    for what, vs in values.items():
        if len(vs) < 2:
            continue
        xs, (_, goal, fmt) = sorted(v for v, _, _ in vs), vs[0]
        met = sum(v >= goal for v in xs)
        out.append(f"goal {what}, {len(xs)} runs: median {fmt.format(statistics.median(xs))} "
                   f"({fmt.format(xs[0])} to {fmt.format(xs[-1])}), met in {met} of {len(xs)}")
    return out


def time_lines(rows, ref) -> list[str]:
    """Where the main command's time goes, one line per board with a one-thread cli row: its CPU
    per game split by the rows of the same run (engine play; recording and storing each game, the
    db row's native path over engine play; start-up and exit, from the row's one-game runs; and
    what is left, noise included), beside what the 1,000x goal allows per game (records rows hand
    their games to Python, so they are no step of the main command and stay out of it). Then the
    one-thread run's serial part, its start-up and exit, and the two-thread speed-up it leaves
    possible even if the play itself scaled perfectly; and how far engine-only play scales from one
    thread to two on this machine."""
    by = {row_key(r): r for r in rows if r.get("mode") in ("engine", "db", "cli")}
    out = []

    def us(r, field="games_per_cpu_sec"):
        return 1e6 / r[field] if r and r.get(field) else None

    for key, c in by.items():
        if c["mode"] != "cli" or c["threads"] != 1 or not us(c):
            continue
        name = f"main command {c['board']} {c['players']}p {c['policy']}"
        e, d = (by.get(key[:-1] + (m,)) for m in ("engine", "db"))
        total = us(c)
        parts, accounted = [], 0.0
        for label, r in (("engine", e), ("recording and storing", d)):
            if us(r) is not None:
                parts.append(f"{label} {us(r) - accounted:.1f}")
                accounted = us(r)
        startup = c.get("startup_cpu_seconds")
        if startup and c.get("games"):
            parts.append(f"start-up and exit {startup * 1e6 / c['games']:.1f}")
            accounted += startup * 1e6 / c["games"]
        line = f"time per game, {name} t1 (CPU µs): {total:.1f}"
        if parts:
            line += " = " + " + ".join(parts) + f" + the rest {total - accounted:+.1f}"
        else:
            line += " (no engine or db row in this run to split it)"
        ratio = ref.ratio(c)
        if ratio:
            allowed = total * ratio / GOAL_VS_TS
            line += f"; {GOAL_VS_TS:,.0f}x TS allows {allowed:.1f}" + (
                f" ({total - allowed:.1f} over)" if total > allowed else "")
        out.append(line)
        serial, whole = c.get("startup_seconds"), c.get("seconds")
        if serial and whole and serial < whole:
            cap = whole / (serial + (whole - serial) / 2)
            out.append(f"serial part, {name}: start-up and exit take {serial:.3f} s (a one-game run) of the "
                       f"{whole:.3f} s one-thread run, which caps t2/t1 at {cap:.2f}")
        if c.get("startup_cold_cpu_seconds") and startup:
            out.append(f"start-up, {name}: {startup:.3f} CPU-s with the config files found validated in the "
                       f"cache (a second run; the rows above), {c['startup_cold_cpu_seconds']:.3f} CPU-s "
                       f"without it (a first run, RINGRIFT_CONFIG_CACHE=off)")
        e2 = by.get(key[:3] + (2, "engine"))
        if e and e2 and e["games_per_sec"] and e2["games_per_sec"]:
            # Play alone, nothing serial in it: how far two threads go on this machine at all.
            out.append(f"scaling of play alone, {c['board']} {c['players']}p {c['policy']}: engine t2/t1 "
                       f"{e2['games_per_sec'] / e['games_per_sec']:.2f} by wall clock in this run (nothing "
                       f"serial in it: what two threads give play itself here, noise included)")
    return out


def plot(rows, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'ringrift[bench]')", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(BOARDS), figsize=(4 * len(BOARDS), 3.6))
    for ax, board in zip(axes, BOARDS):
        sel = [r for r in rows if r["board"] == board]
        labels = [f"{r['players']}p {r['policy'][:4]} {row_label(r)} {r['mode']}" for r in sel]
        colors = ["tab:green" if r["mode"].startswith("gpu") else "tab:blue" for r in sel]
        ax.barh(range(len(sel)), [r["games_per_sec"] for r in sel], color=colors)
        ax.set_yticks(range(len(sel)), labels, fontsize=6)
        ax.set_xscale("log")
        ax.set_title(board)
        ax.set_xlabel("games/s")
        ts = [r for r in sel if r["mode"] == "ts" and r["players"] == 2]
        if ts:
            ax.axvline(ts[0]["games_per_sec"] * 1000, color="tab:red", ls="--", lw=1, label="1000x TS (2p)")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
