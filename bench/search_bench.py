"""Gumbel search throughput: simulations per CPU-second (one thread = one core) of the net-free
search (docs/search.md), per board and leaf evaluator, and of the batched network path with a
numpy stand-in network (zero logits and values: what it measures is the search plus the
Python round trip per step, not a network).

    python bench/search_bench.py --quick
    python bench/search_bench.py --json bench/results/search.json

Positions: for each board, B games at the start and B games after `--plies` random playable moves
(a mid-game mix of phases). Every row runs one thread, so sims per CPU-second is per core; CPU
time is this process's (time.process_time), which a loaded machine inflates less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from ringrift import _core
from ringrift.engine import Game, IllegalMoveError
from ringrift.search import GumbelSearch, uniform_evaluator

BOARDS = ("square8", "hex8", "square19", "hexagonal")


def positions(board: str, games: int, plies: int, seed: int) -> list:
    rng = random.Random(seed)
    out = [Game(board, 2) for _ in range(games)]
    for g in out[games // 2:]:
        while g.status == "active" and g.move_count < plies:
            moves = g.legal_moves()
            rng.shuffle(moves)
            for m in moves:
                try:
                    g.apply(m)
                    break
                except IllegalMoveError:
                    continue
    return [g for g in out if g.status == "active"]


def measure(games: list, evaluator: str, sims: int, top_k: int, rollout_moves: int) -> dict:
    search = GumbelSearch(games, simulations=sims, top_k=top_k, seed=1, evaluator=evaluator if evaluator != "net" else "zero",
                          rollout_moves=rollout_moves, threads=1)
    evaluate = uniform_evaluator(_core.export.action_space(games[0].board)["size"]) if evaluator == "net" else None
    c0, w0 = time.process_time(), time.perf_counter()
    results = search.run(evaluate)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    done = sum(r.simulations for r in results)
    return {"evaluator": evaluator, "trees": len(games), "simulations": done, "cpu_s": round(cpu, 4),
            "wall_s": round(wall, 4), "sims_per_cpu_s": round(done / cpu, 1) if cpu > 0 else None,
            "pool_full": sum(r.pool_full for r in results)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small batches (a few seconds in all)")
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--evaluators", default="zero,heuristic,rollout,net")
    ap.add_argument("--simulations", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=16)
    ap.add_argument("--rollout-moves", type=int, default=32)
    ap.add_argument("--plies", type=int, default=60, help="random moves before the mid-game half of the positions")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    per_board = {"square8": 16, "hex8": 16, "square19": 4, "hexagonal": 4} if a.quick else \
        {"square8": 256, "hex8": 256, "square19": 64, "hexagonal": 48}
    rows = []
    print(f"{'board':10} {'evaluator':10} {'trees':>5} {'sims':>7} {'cpu s':>8} {'wall s':>8} {'sims/cpu-s':>11}")
    for board in a.boards.split(","):
        games = positions(board, per_board[board], a.plies, seed=3)
        for ev in a.evaluators.split(","):
            r = measure(games, ev, a.simulations, a.top_k, a.rollout_moves)
            r["board"] = board
            rows.append(r)
            print(f"{board:10} {ev:10} {r['trees']:>5} {r['simulations']:>7} {r['cpu_s']:>8} {r['wall_s']:>8} "
                  f"{r['sims_per_cpu_s']:>11}")
    if a.json:
        info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
                "load_avg": os.getloadavg(), "simulations": a.simulations, "top_k": a.top_k,
                "rollout_moves": a.rollout_moves, "plies": a.plies,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
