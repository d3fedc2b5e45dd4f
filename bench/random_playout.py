"""Single-thread random-playout throughput of the C++ rules core, per board and player count.

Prints games/s and moves/s with the TypeScript reference engine's figures beside them (measured
on this machine class, single process, 2 players) and the ratio. A benchmark, not a test:

    python bench/random_playout.py            # full table (about a minute)
    python bench/random_playout.py --quick    # a few seconds, smoke-sized
    python bench/random_playout.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from ringrift import _core

# Reference engine (synaptent/RingRift TypeScript, single process), games/s, 2 players.
REFERENCE_GAMES_PER_SEC = {"square8": 9.2, "hex8": 5.6, "square19": 0.44, "hexagonal": 0.17}

# Games per row sized so each row takes roughly one to three seconds.
FULL_GAMES = {"square8": 8000, "hex8": 6000, "square19": 600, "hexagonal": 300}
QUICK_GAMES = {"square8": 400, "hex8": 300, "square19": 20, "hexagonal": 10}


def run(boards, players, games_for, seed):
    rows = []
    for board in boards:
        for n in players:
            games = games_for[board]
            r = _core.selfplay_batch(board, n, seed, range(games), "random", threads=1, max_moves=100000,
                                     record=False)
            r = {"games": games, "moves": int(r["total_moves"]), "seconds": r["wall_seconds"],
                 "capped": int(r["capped"].sum())}
            gps = r["games"] / r["seconds"]
            mps = r["moves"] / r["seconds"]
            ref = REFERENCE_GAMES_PER_SEC.get(board) if n == 2 else None
            rows.append({
                "board": board, "players": n, "games": r["games"], "moves": r["moves"],
                "seconds": round(r["seconds"], 4), "games_per_sec": round(gps, 2),
                "moves_per_sec": round(mps, 1), "capped": r["capped"],
                "reference_games_per_sec": ref, "ratio_vs_reference": round(gps / ref, 1) if ref else None,
            })
            print_row(rows[-1])
    return rows


def print_header():
    print(f"{'board':<10} {'p':>2} {'games':>6} {'games/s':>10} {'moves/s':>11} {'moves/game':>10}"
          f" {'ref games/s':>11} {'ratio':>8}")


def print_row(r):
    ref = f"{r['reference_games_per_sec']:.2f}" if r["reference_games_per_sec"] else "-"
    ratio = f"{r['ratio_vs_reference']:.0f}x" if r["ratio_vs_reference"] else "-"
    print(f"{r['board']:<10} {r['players']:>2} {r['games']:>6} {r['games_per_sec']:>10.1f} "
          f"{r['moves_per_sec']:>11.0f} {r['moves'] / max(r['games'], 1):>10.1f} {ref:>11} {ratio:>8}",
          flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-sized run (a few seconds)")
    ap.add_argument("--boards", nargs="+", default=list(FULL_GAMES), choices=list(FULL_GAMES))
    ap.add_argument("--players", nargs="+", type=int, default=[2, 3, 4], choices=[2, 3, 4])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH", help="write the rows and machine info as JSON")
    args = ap.parse_args(argv)
    print("random playouts, one thread, engine only (no DB), reference = TypeScript engine")
    print_header()
    t0 = time.time()
    rows = run(args.boards, args.players, QUICK_GAMES if args.quick else FULL_GAMES, args.seed)
    print(f"total {time.time() - t0:.1f}s")
    if args.json:
        info = {"python": sys.version.split()[0], "machine": platform.machine(),
                "processor": platform.processor(), "platform": platform.platform()}
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
