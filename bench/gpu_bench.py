"""GPU self-play: differential check against the CPU, then throughput, in one run.

Prepared for a GPU worker (one call, well under ten minutes on an H200):

    pip install --no-build-isolation . && python bench/gpu_bench.py --json gpu.json

1. For every board and player count, plays games on the GPU and on the CPU thread pool from
   the same (seed, index) and requires identical moves and per-step hashes (exit status 1
   otherwise).
2. Times square8 2p random games at batch sizes from 1,024 doubling up to --max-batch, every
   other board at one large batch, and the CPU thread pool on all cores beside them.
Rows use the bench suite's JSON layout (mode "gpu" / "records"), so they can be merged into
bench/results and plotted with bench/selfplay_bench.py --from-json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ringrift import _core
from ringrift.gpu import gpu_status, selfplay_gpu, slots_to_batch

BOARDS = ("square8", "hex8", "square19", "hexagonal")
DIFF_GAMES = {"square8": 2048, "hex8": 2048, "square19": 128, "hexagonal": 64}
LARGE_BATCH = {"hex8": 65536, "square19": 8192, "hexagonal": 4096}
MAX_MOVES = {"square8": 2000, "hex8": 2000, "square19": 10000, "hexagonal": 10000}


def differential(board, players, policy, n, seed=12345) -> bool:
    games = list(range(n))
    gpu = slots_to_batch(selfplay_gpu(board, players, seed, games, policy, MAX_MOVES[board]), games)
    cpu = _core.selfplay_batch(board, players, seed, games, policy, threads=0, max_moves=MAX_MOVES[board])
    same = all(np.array_equal(gpu[k], cpu[k]) for k in ("move_offsets", "moves", "hashes", "winner", "reason"))
    print(f"diff {board:<10} {players}p {policy:<9} {n:>6} games: {'identical' if same else 'DIFFERENT'}",
          flush=True)
    return same


def timed_gpu(board, players, batch, seed=7) -> dict:
    games = list(range(batch))
    selfplay_gpu(board, players, seed, games[:min(batch, 256)], "random", MAX_MOVES[board])  # compile, warm up
    t0 = time.perf_counter()
    out = selfplay_gpu(board, players, seed, games, "random", MAX_MOVES[board], as_cupy=True)
    moves = int(out["move_count"].sum())
    sec = time.perf_counter() - t0
    return {"board": board, "players": players, "policy": "random", "threads": 0, "mode": "gpu", "batch": batch,
            "games": batch, "moves": moves, "seconds": round(sec, 4), "games_per_sec": round(batch / sec, 1),
            "moves_per_sec": round(moves / sec, 1)}


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
                    help="seconds for the timed part: the sweep stops before its next doubling would pass "
                         "60%% of them, the other boards are skipped past 80%% (0 = no budget)")
    args = ap.parse_args(argv)
    ok, why = gpu_status()
    print(f"gpu: {why}", flush=True)
    if not ok:
        return 2
    same = all(differential(b, p, pol, DIFF_GAMES[b] // (2 if pol == "heuristic" else 1))
               for b in BOARDS for p in (2, 3, 4) for pol in ("random", "heuristic"))
    rows = []
    batch = 1024
    t_start = time.perf_counter()

    def over_budget() -> bool:
        if not args.budget_s:
            return False
        spent = time.perf_counter() - t_start
        # the next doubling takes about twice the last batch: stop before it would overrun
        return spent + 2 * (rows[-1]["seconds"] if rows else 0) > args.budget_s * 0.6

    while batch <= args.max_batch and not over_budget():
        try:
            rows.append(timed_gpu("square8", 2, batch))
        except Exception as exc:  # out of device memory ends the sweep
            print(f"batch {batch}: {type(exc).__name__}: {exc}", flush=True)
            break
        print(json.dumps(rows[-1]), flush=True)
        batch *= 2
    for board, b in LARGE_BATCH.items():
        if args.budget_s and time.perf_counter() - t_start > args.budget_s * 0.8:
            print(f"budget: skipping {board} (spent {time.perf_counter() - t_start:.0f}s)", flush=True)
            continue
        rows.append(timed_gpu(board, 2, b))
        print(json.dumps(rows[-1]), flush=True)
    for board in BOARDS:
        rows.append(timed_cpu(board, 2, {"square8": 50000, "hex8": 40000, "square19": 4000, "hexagonal": 2000}[board]))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": why, "differential_identical": same, "rows": rows}, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
