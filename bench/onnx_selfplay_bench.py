"""Throughput of self-play with a net (the onnx:PATH policy) on the CPU: games/s, moves/s, net
positions/s, and how the time splits between ONNX Runtime and the environment.

    python bench/onnx_selfplay_bench.py [--model PATH] [--games 256] [--batch 64 256] [--threads 0]

Without --model it exports an untrained net of the default square8 size (width 48, depth 4) to
a temporary folder (needs torch); an untrained net plays longer games than a trained one, so
compare moves/s and positions/s rather than games/s. Needs the train extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def untrained_model(folder: Path, width: int, depth: int) -> Path:
    import torch

    from ringrift.export import NUM_GLOBALS, NUM_PLANES, action_space_size
    from ringrift.train.model import NetConfig, build_model
    from ringrift.train.onnx_export import export_onnx

    torch.manual_seed(0)
    cfg = NetConfig("square8", width, depth)
    meta = {"board": "square8", "encoding": "native", "format_version": 2, "action_space_size":
            action_space_size("square8"), "feature_shape": [NUM_PLANES, 8, 8], "num_globals": NUM_GLOBALS,
            "net": cfg.to_dict()}
    return export_onnx(build_model(cfg).eval(), meta, folder / "bench.onnx")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an ONNX model written by ringrift-train (default: an untrained square8 net)")
    p.add_argument("--games", type=int, default=256)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--width", type=int, default=48)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from ringrift.train import players as players_mod
    from ringrift.train.games import play_games

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else untrained_model(Path(tmp), args.width, args.depth)
        rows = []
        for batch in args.batch:
            player = players_mod.make_player(f"onnx:{model}:temperature={args.temperature}", threads=args.threads)
            calls = {"n": 0, "positions": 0, "seconds": 0.0}
            inner = player.evaluate

            def timed(f, g, inner=inner, calls=calls):
                t = time.perf_counter()
                out = inner(f, g)
                calls["seconds"] += time.perf_counter() - t
                calls["n"] += 1
                calls["positions"] += len(f)
                return out

            player.evaluate = timed
            moves = {"n": 0}

            def on_game(i, winner, reason, capped, n, moves=moves):
                moves["n"] += n

            t0 = time.perf_counter()
            play_games("square8", 2, [player], iter(range(args.games)), lambda i: [0, 0], seed=0,
                       batch_size=min(batch, args.games), max_moves=2000, threads=args.threads, on_game=on_game)
            dt = time.perf_counter() - t0
            rows.append({"batch": batch, "games": args.games, "seconds": dt, "games_per_s": args.games / dt,
                         "moves_per_s": moves["n"] / dt, "net_calls": calls["n"],
                         "net_positions_per_s": calls["positions"] / dt,
                         "mean_positions_per_call": calls["positions"] / max(calls["n"], 1),
                         "onnx_share": calls["seconds"] / dt})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"batch {r['batch']:>4}: {r['games']} games in {r['seconds']:.1f}s, {r['games_per_s']:.1f} games/s, "
                  f"{r['moves_per_s']:,.0f} moves/s, {r['net_positions_per_s']:,.0f} net positions/s "
                  f"({r['mean_positions_per_call']:.0f} per call), ONNX Runtime {100 * r['onnx_share']:.0f}% of the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
