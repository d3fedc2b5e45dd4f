"""Seat-balanced matches between two net-free search settings (docs/search.md, "Numbers").

    python bench/search_match.py --games 40
    python bench/search_match.py --board hex8 --games 100 --a heuristic:128 --b heuristic:16

A side is EVALUATOR:SIMULATIONS[:TOP_K] (`zero:0` plays uniformly at random: with no simulations
the search picks by Gumbel noise over uniform priors). Player A takes seat 1 in the even games and
seat 2 in the odd ones; every move is one batched search over the games where that side is to
move. Prints A's wins, losses and unfinished games (move cap), and the time.
"""

from __future__ import annotations

import argparse
import sys
import time

from ringrift.engine import Game
from ringrift.search import GumbelSearch


def side(spec: str) -> dict:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise SystemExit(f"search_match: bad side {spec!r} (expected EVALUATOR:SIMULATIONS[:TOP_K])")
    out = {"evaluator": parts[0], "simulations": int(parts[1]), "rollout_moves": 32}
    if len(parts) == 3:
        out["top_k"] = int(parts[2])
    return out


def match(board: str, a: dict, b: dict, games: int, max_moves: int, seed: int) -> tuple:
    gs = [Game(board, 2) for _ in range(games)]
    seat_a = [1 if i % 2 == 0 else 2 for i in range(games)]
    step = 0
    while any(g.status == "active" and g.move_count < max_moves for g in gs):
        for is_a, cfg in ((True, a), (False, b)):
            idx = [i for i, g in enumerate(gs) if g.status == "active" and g.move_count < max_moves
                   and (g.current_player == seat_a[i]) == is_a]
            if not idx:
                continue
            results = GumbelSearch([gs[i] for i in idx], seed=seed + step, streams=idx, **cfg).run()
            for i, r in zip(idx, results):
                gs[i].apply(r.move)
        step += 1
    wins = sum(1 for i, g in enumerate(gs) if g.winner == seat_a[i])
    losses = sum(1 for i, g in enumerate(gs) if g.winner and g.winner != seat_a[i])
    return wins, losses, games - wins - losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="square8")
    ap.add_argument("--games", type=int, default=40)
    ap.add_argument("--max-moves", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--a", default="heuristic:32", help="side A (default heuristic:32)")
    ap.add_argument("--b", default="zero:0", help="side B (default zero:0, uniformly random)")
    args = ap.parse_args(argv)
    t0 = time.process_time()
    w, l, u = match(args.board, side(args.a), side(args.b), args.games, args.max_moves, args.seed)
    print(f"{args.board} {args.a} vs {args.b}: {w} wins, {l} losses, {u} unfinished of {args.games} "
          f"({time.process_time() - t0:.1f} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
