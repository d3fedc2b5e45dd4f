"""GPU self-play: differential check against the CPU, then throughput, in one run.

Prepared for a GPU worker (one call, well under ten minutes on an H200):

    pip install --no-build-isolation . && python bench/gpu_bench.py --json gpu.json

1. For every board and player count, plays games on the GPU and on the CPU thread pool from
   the same (seed, index) and requires identical moves and per-step hashes (exit status 1
   otherwise).
2. Times square8 2p random games at batch sizes from 1,024 doubling up to --max-batch, then
   block size x register cap at the best batch, every other board at one large batch with the
   best configuration, square8 end to end into a SQLite DB (mode "gpu+db"), and the CPU thread
   pool on all cores beside them; prints a summary line against the issue's targets.
   --budget-s bounds the timed part.
Rows use the bench suite's JSON layout (mode "gpu" / "gpu+db" / "records"), so they can be merged into
bench/results and plotted with bench/selfplay_bench.py --from-json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ringrift import BOARDS, POLICIES, _core
from ringrift.gpu import gpu_status, selfplay_batch_gpu, selfplay_gpu

DIFF_GAMES = {"square8": 2048, "hex8": 2048, "square19": 128, "hexagonal": 64}
LARGE_BATCH = {"hex8": 65536, "square19": 8192, "hexagonal": 4096}
MAX_MOVES = {"square8": 2000, "hex8": 2000, "square19": 10000, "hexagonal": 10000}
E2E_GAMES = 4 * 65536  # square8 games for the end-to-end row: four GPU batches, so writes overlap play


def differential(board, players, policy, n, seed=12345) -> bool:
    games = list(range(n))
    gpu = selfplay_batch_gpu(board, players, seed, games, policy, MAX_MOVES[board])
    cpu = _core.selfplay_batch(board, players, seed, games, policy, threads=0, max_moves=MAX_MOVES[board])
    same = all(np.array_equal(gpu[k], cpu[k]) for k in ("move_offsets", "moves", "hashes", "winner", "reason"))
    print(f"diff {board:<10} {players}p {policy:<9} {n:>6} games: {'identical' if same else 'DIFFERENT'}",
          flush=True)
    return same


def timed_gpu(board, players, batch, seed=7, block=64, max_registers=None) -> dict:
    games = list(range(batch))
    kw = {"block": block, "max_registers": max_registers}
    selfplay_gpu(board, players, seed, games[:min(batch, 256)], "random", MAX_MOVES[board], **kw)  # compile, warm up
    t0 = time.perf_counter()
    out = selfplay_gpu(board, players, seed, games, "random", MAX_MOVES[board], as_cupy=True, **kw)
    moves = int(out["move_count"].sum())
    sec = time.perf_counter() - t0
    return {"board": board, "players": players, "policy": "random", "threads": 0, "mode": "gpu", "batch": batch,
            "block": block, "max_registers": max_registers, "games": batch, "moves": moves,
            "seconds": round(sec, 4), "games_per_sec": round(batch / sec, 1), "moves_per_sec": round(moves / sec, 1)}


def timed_gpu_db(board, players, games, seed=11) -> dict:
    """End to end: GPU self-play into a fresh SQLite game DB (play, compact, copy, insert), the
    rate a user of `ringrift-pipeline run canonical_selfplay --device cuda` gets."""
    import tempfile
    from pathlib import Path

    from ringrift.db import GameDB
    from ringrift.selfplay import run_selfplay

    with tempfile.TemporaryDirectory() as tmp, GameDB(Path(tmp) / "g.db") as db:
        t0 = time.perf_counter()
        res = run_selfplay(db, board=board, num_games=games, num_players=players, seed=seed, device="cuda",
                           max_moves=MAX_MOVES[board])
        sec = time.perf_counter() - t0
    return {"board": board, "players": players, "policy": "random", "threads": 0, "mode": "gpu+db",
            "games": res.games, "moves": res.moves, "seconds": round(sec, 4),
            "games_per_sec": round(res.games / sec, 1), "moves_per_sec": round(res.moves / sec, 1)}


def summary(rows) -> str:
    """The issue's yardsticks: best square8 2p GPU rate against the CPU path on all cores."""
    gpu = [r for r in rows if r["mode"] == "gpu" and r["board"] == "square8"]
    cpu = [r for r in rows if r["mode"] == "records" and r["board"] == "square8"]
    if not gpu or not cpu:
        return "summary: not enough rows"
    best, base = max(gpu, key=lambda r: r["games_per_sec"]), cpu[0]
    return (f"summary: square8 2p random, best GPU {best['games_per_sec']:,.0f} games/s, "
            f"{best['moves_per_sec']:,.0f} moves/s (batch {best['batch']}, block {best['block']}, "
            f"max_registers {best['max_registers']}); CPU {base['threads']} threads {base['games_per_sec']:,.0f} "
            f"games/s; ratio {best['games_per_sec'] / base['games_per_sec']:.1f}x "
            f"(targets: 250,000 games/s, 30M moves/s, 20x)")


def timed_cpu(board, players, games) -> dict:
    t0 = time.perf_counter()
    out = _core.selfplay_batch(board, players, 7, range(games), "random", threads=0, max_moves=MAX_MOVES[board])
    sec = time.perf_counter() - t0
    return {"board": board, "players": players, "policy": "random", "threads": out["threads"], "mode": "records",
            "games": games, "moves": int(out["total_moves"]), "seconds": round(sec, 4),
            "games_per_sec": round(games / sec, 1), "moves_per_sec": round(out["total_moves"] / sec, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-batch", type=int, default=1 << 20)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="seconds for the timed part: the batch sweep stops before it would pass 45%% of "
                         "them, the occupancy runs 70%%, the other boards 85%% (0 = no budget)")
    args = ap.parse_args(argv)
    ok, why = gpu_status()
    print(f"gpu: {why}", flush=True)
    if not ok:
        return 2
    same = all(differential(b, p, pol, DIFF_GAMES[b] // (2 if pol == "heuristic" else 1))
               for b in BOARDS for p in (2, 3, 4) for pol in POLICIES)
    rows = []
    t_start = time.perf_counter()

    def spent() -> float:
        return time.perf_counter() - t_start

    def room(share: float, next_cost: float = 0.0) -> bool:
        return not args.budget_s or spent() + next_cost <= args.budget_s * share

    def run(*a, **kw):
        try:
            rows.append(timed_gpu(*a, **kw))
        except Exception as exc:  # out of device memory (or a launch failure) ends that line
            print(f"{a} {kw}: {type(exc).__name__}: {exc}", flush=True)
            return None
        print(json.dumps(rows[-1]), flush=True)
        return rows[-1]

    # 1. Batch sweep, square8 2p, compiler-chosen registers; a doubling costs about twice the last.
    batch = 1024
    while batch <= args.max_batch and room(0.45, 2 * (rows[-1]["seconds"] if rows else 0)):
        if run("square8", 2, batch) is None:
            break
        batch *= 2
    best = max(rows, key=lambda r: r["games_per_sec"]) if rows else None
    # 2. Occupancy: block size x register cap at the best batch (the cap trades spills for games).
    if best:
        for block, regs in ((128, None), (64, 128), (128, 128), (64, 96), (128, 96)):
            if room(0.7, best["seconds"] * 2):
                run("square8", 2, best["batch"], block=block, max_registers=regs)
        best = max(rows, key=lambda r: r["games_per_sec"])
    cfg = {"block": best["block"], "max_registers": best["max_registers"]} if best else {}
    # 3. The other boards at one large batch, with the best square8 configuration.
    for board, b in LARGE_BATCH.items():
        if not room(0.85):
            print(f"budget: skipping {board} (spent {spent():.0f}s of {args.budget_s:.0f})", flush=True)
            continue
        run(board, 2, b, **cfg)
    # 4. End to end into SQLite, square8 (the DB write runs on one core while the next batch plays).
    if room(0.95):
        rows.append(timed_gpu_db("square8", 2, E2E_GAMES))
        print(json.dumps(rows[-1]), flush=True)
    # 5. The CPU path on every core of this machine, beside them.
    for board in BOARDS:
        rows.append(timed_cpu(board, 2, {"square8": 50000, "hex8": 40000, "square19": 4000, "hexagonal": 2000}[board]))
        print(json.dumps(rows[-1]), flush=True)
    print(summary(rows), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": why, "differential_identical": same, "rows": rows}, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
