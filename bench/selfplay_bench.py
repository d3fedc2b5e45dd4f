"""Self-play throughput benchmark: games/s and moves/s per board, players, policy, threads and mode.

Modes:
  engine    play only (the rules core and the policy; no per-step records)
  records   play and keep each game's move records and per-step state hashes (what a DB stores)
  db        records, written to a fresh SQLite game database (the full canonical_selfplay path)

    python bench/selfplay_bench.py --quick                      # a few seconds, smoke-sized
    python bench/selfplay_bench.py --json bench/results/new.json  # full table
    python bench/selfplay_bench.py --compare bench/results/baseline.json --json new.json
    python bench/selfplay_bench.py --plot throughput.png          # needs matplotlib (bench extra)
    python bench/selfplay_bench.py --from-json bench/results/baseline.json --plot out.png  # replot

`--compare OLD` prints each row's ratio to the same row of OLD and flags rows more than 10%
slower. The reference column is the TypeScript engine (single process, 2 players).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from ringrift import BOARDS, POLICIES, _core

REFERENCE_GAMES_PER_SEC = {"square8": 9.2, "hex8": 5.6, "square19": 0.44, "hexagonal": 0.17}
# Games per row, sized for roughly one second per row on one core (quick: a tenth or less).
FULL_GAMES = {"square8": 6000, "hex8": 4000, "square19": 400, "hexagonal": 160}
QUICK_GAMES = {"square8": 300, "hex8": 200, "square19": 12, "hexagonal": 6}
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


def run_row(board, players, policy, threads, mode, games, seed=1) -> dict:
    record = mode != "engine"
    t0 = time.perf_counter()
    batch = _core.selfplay_batch(board, players, seed, range(games), policy, threads=threads,
                                 max_moves=100000, record=record)
    if mode == "db":
        from ringrift.db import GameDB

        with tempfile.TemporaryDirectory() as tmp:
            with GameDB(Path(tmp) / "bench.db") as db:
                db.insert_batch(batch, board=board, num_players=players, seed=seed, policy=policy,
                                engine_version="bench", host="bench", max_moves=100000)
    seconds = time.perf_counter() - t0
    moves = int(batch["total_moves"])
    return {"board": board, "players": players, "policy": policy, "threads": batch["threads"], "mode": mode,
            "games": games, "moves": moves, "seconds": round(seconds, 4),
            "games_per_sec": round(games / seconds, 2), "moves_per_sec": round(moves / seconds, 1)}


def row_key(r) -> tuple:
    return (r["board"], r["players"], r["policy"], r["threads"], r["mode"])


def row_label(r) -> str:
    """Who ran the row: t<threads> on the CPU, b<batch> on a GPU (bench/gpu_bench.py rows)."""
    return f"b{r['batch']}" if r["mode"] == "gpu" else f"t{r['threads']}"


def fmt_row(r, base=None) -> str:
    ref = REFERENCE_GAMES_PER_SEC.get(r["board"]) if r["players"] == 2 else None
    ref_s = f"{r['games_per_sec'] / ref:8.0f}x" if ref else f"{'-':>9}"
    line = (f"{r['board']:<10} {r['players']:>2} {r['policy']:<9} {row_label(r):>8} {r['mode']:<7} "
            f"{r['games_per_sec']:>10.1f} {r['moves_per_sec']:>11.0f} {ref_s}")
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-sized run")
    ap.add_argument("--boards", nargs="+", default=list(BOARDS), choices=BOARDS)
    ap.add_argument("--players", nargs="+", type=int, default=[2, 3, 4], choices=[2, 3, 4])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--modes", nargs="+", default=["engine", "records", "db"], choices=["engine", "records", "db"])
    ap.add_argument("--json", metavar="PATH", help="write results and machine info as JSON")
    ap.add_argument("--compare", metavar="OLD_JSON", help="print ratios against a previous result file")
    ap.add_argument("--plot", metavar="PNG", help="plot games/s per board (needs matplotlib)")
    ap.add_argument("--from-json", metavar="JSON", nargs="+",
                    help="do not run: print and plot the rows of result files (e.g. the baseline and a "
                         "bench/gpu_bench.py result together)")
    args = ap.parse_args(argv)
    if args.from_json:
        rows = []
        for path in args.from_json:
            with open(path) as f:
                # rows without games/s (bench/env_bench.py's env steps) have no place in this table
                rows += [r for r in json.load(f)["rows"] if "games_per_sec" in r]
        for r in rows:
            print(fmt_row(r))
        if args.plot:
            plot(rows, args.plot)
        return 0

    base = {}
    if args.compare:
        with open(args.compare) as f:
            base = {row_key(r): r for r in json.load(f)["rows"]}
    games_for = QUICK_GAMES if args.quick else FULL_GAMES
    print(f"{'board':<10} {'p':>2} {'policy':<9} {'run':>8} {'mode':<7} {'games/s':>10} {'moves/s':>11} "
          f"{'vs ref':>9}" + (f" {'ratio':>6}" if base else ""))
    rows, slower = [], 0
    t0 = time.time()
    for board, players, policy, threads, mode in plan(args):
        r = run_row(board, players, policy, threads, mode, games_for[board])
        rows.append(r)
        b = base.get(row_key(r))
        if b and r["games_per_sec"] < SLOW_FLAG * b["games_per_sec"]:
            slower += 1
        print(fmt_row(r, b) if base else fmt_row(r), flush=True)
    print(f"{len(rows)} rows in {time.time() - t0:.1f}s" + (f"; {slower} rows >10% slower than {args.compare}"
                                                             if base else ""))
    result = {"machine": machine_info(), "reference_games_per_sec": REFERENCE_GAMES_PER_SEC,
              "quick": args.quick, "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(rows, args.plot)
    return 0


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
        if board in REFERENCE_GAMES_PER_SEC:
            ax.axvline(REFERENCE_GAMES_PER_SEC[board] * 1000, color="tab:red", ls="--", lw=1, label="1000x ref")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
