"""``ringrift-eval``: player A against player B, seat-balanced (docs/training.md).

    ringrift-eval --board square8 --games 1000 onnx:runs/sq8/model.onnx:temperature=0.1 heuristic

Game i puts A in seat (i mod n) + 1 and B in the other seats, so with an even number of games
(2 players) each side has each seat equally often. Players: ``random``, ``heuristic`` or
``onnx:PATH[:temperature=T][:lookahead=K][:horizon=H]``. The result counts A's wins, draws
(games with no winner: the move cap) and losses; the score (W + D/2) / N gets a 95% interval from the normal
approximation of the per-game scores, and the Elo difference is -400 log10(1/score - 1) (its
interval from the score's). ``--json`` prints the result as JSON. ``--db`` stores the games.
"""

from __future__ import annotations

import json
import math
import sys
import time

from ..exitcodes import OneLineParser

PROG = "ringrift-eval"


def elo(score: float) -> float | None:
    """Elo difference of a score; None at 0 or 1 (unbounded)."""
    if not 0 < score < 1:
        return None
    return -400.0 * math.log10(1.0 / score - 1.0)


def summarize(wins: int, draws: int, losses: int) -> dict:
    n = wins + draws + losses
    s = (wins + 0.5 * draws) / n if n else 0.0
    var = ((wins * (1 - s) ** 2 + draws * (0.5 - s) ** 2 + losses * s ** 2) / n) if n else 0.0
    half = 1.96 * math.sqrt(var / n) if n else 0.0
    lo, hi = max(0.0, s - half), min(1.0, s + half)
    return {"games": n, "wins": wins, "draws": draws, "losses": losses, "score": s, "score_ci95": [lo, hi],
            "win_rate": wins / n if n else 0.0, "elo": elo(s), "elo_ci95": [elo(lo), elo(hi)]}


def run_match(a: str, b: str, *, board: str, players: int = 2, games: int, seed: int = 0, batch_size: int = 256,
              max_moves: int = 2000, threads: int = 0, temperature: float | None = None, db=None, progress=None) -> dict:
    from .games import play_games
    from .players import make_player

    pa = make_player(a, temperature=temperature, threads=threads)
    pb = make_player(b, temperature=temperature, threads=threads)
    w = d = l = 0
    by_seat = {}
    t0 = time.perf_counter()

    def seats(i):
        a_seat = i % players
        return [0 if s == a_seat else 1 for s in range(players)]

    def on_game(i, winner, reason, capped, moves):
        nonlocal w, d, l
        a_seat = i % players + 1
        key = f"A_seat{a_seat}"
        r = by_seat.setdefault(key, {"wins": 0, "draws": 0, "losses": 0})
        if winner == 0:
            d += 1
            r["draws"] += 1
        elif winner == a_seat:
            w += 1
            r["wins"] += 1
        else:
            l += 1
            r["losses"] += 1
        if progress:
            done = w + d + l
            progress(done, games, done / max(time.perf_counter() - t0, 1e-9))

    play_games(board, players, [pa, pb], iter(range(games)), seats, seed=seed, batch_size=max(1, min(batch_size, games)),
               max_moves=max_moves, threads=threads, db=db, policy_name=f"eval:{pa.name}|{pb.name}", on_game=on_game)
    out = {"a": pa.name, "b": pb.name, "board": board, "players": players, "seed": seed, **summarize(w, d, l),
           "by_seat": by_seat, "seconds": time.perf_counter() - t0}
    return out


def build_parser():
    p = OneLineParser(prog=PROG, description="Play A against B, seat-balanced, and report W/D/L, score and Elo.")
    p.add_argument("a", metavar="A", help="random, heuristic, "
                   "onnx:PATH[:temperature=T][:lookahead=K][:horizon=move|turn] or "
                   "gumbel:EVALUATOR[:key=value,...] / gumbel:onnx:PATH[:sims=N,...] (search, docs/search.md)")
    p.add_argument("b", metavar="B", help="the opponent, same forms")
    p.add_argument("--board", default="square8", choices=("square8", "hex8", "square19", "hexagonal"))
    p.add_argument("--players", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--games", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, help="for onnx players without their own :temperature= (default 1)")
    p.add_argument("--batch-size", type=int, default=256, help="games played at once")
    p.add_argument("--max-moves", type=int, default=2000, help="move cap: a capped game is a draw")
    p.add_argument("--threads", type=int, default=0, help="env and onnxruntime threads (0 = all cores)")
    p.add_argument("--db", metavar="PATH", help="also store the games in this game DB (policy eval:A|B)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not 1 <= args.games <= 10_000_000:  # 10^23 once started, with an ETA of 10^17 hours
        p.error("--games must be 1..10000000")
    if args.batch_size < 1 or args.max_moves < 1:
        p.error("--batch-size and --max-moves must be >= 1")
    if args.temperature is not None and not args.temperature >= 0:
        p.error("--temperature must be >= 0")
    if not 0 <= args.seed <= 2**63 - 1:
        p.error("--seed must be 0..9223372036854775807")
    if not 0 <= args.threads <= 1024:
        p.error("--threads must be 0..1024 (0: every core)")
    if args.max_moves > 1_000_000 or args.batch_size > 100_000:
        p.error("--max-moves must be 1..1000000 and --batch-size 1..100000")
    from ..engine.errors import RingRiftError
    from ..pipeline.progress import Progress
    from .players import PlayerSpecError

    bar = None if args.quiet else Progress("eval", unit="games", interval=15.0)
    db = None
    try:
        if args.db:
            from ..db import GameDB

            db = GameDB(args.db)
        r = run_match(args.a, args.b, board=args.board, players=args.players, games=args.games, seed=args.seed,
                      batch_size=args.batch_size, max_moves=args.max_moves, threads=args.threads,
                      temperature=args.temperature, db=db, progress=bar)
    except (PlayerSpecError, FileNotFoundError, ValueError, RuntimeError, RingRiftError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if db is not None:
            db.close()
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        lo, hi = r["score_ci95"]
        print(f"{r['a']} vs {r['b']} on {r['board']} {r['players']}p, {r['games']} games (seed {r['seed']}): "
              f"W {r['wins']} D {r['draws']} L {r['losses']}")
        e = [("unbounded" if x is None else f"{x:+.0f}") for x in (r["elo"], *r["elo_ci95"])]
        print(f"  A's win rate {r['win_rate']:.3f}, score {r['score']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
              f"Elo difference {e[0]} (95% CI {e[1]} to {e[2]})")
        print("  " + ", ".join(f"{k}: {v['wins']}/{v['draws']}/{v['losses']}" for k, v in sorted(r["by_seat"].items()))
              + f"; {r['seconds']:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
