"""Batch environment (ringrift.selfplay.BatchEnv) throughput: env steps per second, with and
without feature planes, on the CPU host twin or the GPU kernels.

    python bench/env_bench.py                          # CPU, all boards, 2 players
    python bench/env_bench.py --device cuda --json env.json

An env step is one game advanced by one move, counted over the whole batch: decode the action,
apply it, recompute that game's mask (and features). The random policy that picks the actions
(one pass over the mask) is timed apart and not counted. With --device cuda the script first
checks the kernels against the host twin on every board (same actions in, identical states,
masks and features out; exit status 1 otherwise), then times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ringrift import BOARDS
from ringrift.selfplay import BatchEnv

DEFAULT_ENVS = {"cpu": 256, "cuda": 16384}
DIFF_ENVS = {"square8": 512, "hex8": 512, "square19": 64, "hexagonal": 32}


def differential(board: str, players: int, n: int, steps: int) -> bool:
    import cupy as cp

    cpu, gpu = BatchEnv(board, players, n), BatchEnv(board, players, n, device="cuda")
    rng = np.random.default_rng(5)
    same = True
    for _ in range(steps):
        acts = cpu.random_actions(rng)
        cpu.step(acts)
        gpu.step(cp.asarray(acts))
        same = (np.array_equal(cpu.states, gpu.states.get()) and np.array_equal(cpu.mask, gpu.mask.get())
                and np.array_equal(cpu.planes, gpu.planes.get()))
        if not same:
            break
        done = cpu.info["done"]
        if done.any():
            cpu.reset(done)
            gpu.reset(cp.asarray(done))
    print(f"diff {board:<10} {players}p {n:>5} envs x {steps} steps: {'identical' if same else 'DIFFERENT'}",
          flush=True)
    return same


def timed(board: str, players: int, n: int, steps: int, device: str, features: bool, threads: int) -> dict:
    env = BatchEnv(board, players, n, device=device, features=features, threads=threads)
    rng = np.random.default_rng(1) if device == "cpu" else env.xp.random.default_rng(1)
    env.step(env.random_actions(rng))  # warm up (and compile on a GPU)
    step_sec = policy_sec = 0.0
    moves = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        acts = env.random_actions(rng)
        t1 = time.perf_counter()
        env.step(acts)  # synchronises: the step checks its decode errors on the host
        step_sec += time.perf_counter() - t1
        policy_sec += t1 - t0
        moves += int((acts >= 0).sum())
        done = env.info["done"]
        if done.any():
            env.reset(done)
    row = {"board": board, "players": players, "mode": "env", "device": device, "features": features,
           "envs": n, "threads": threads if device == "cpu" else 0, "env_steps": moves,
           "seconds": round(step_sec, 4), "env_steps_per_sec": round(moves / step_sec, 1),
           "policy_steps_per_sec": round(moves / policy_sec, 1) if policy_sec else None}
    print(f"{device} {board:<10} {players}p envs={n:<6} features={'on ' if features else 'off'} "
          f"{row['env_steps_per_sec']:>12,.0f} env steps/s  (random policy {row['policy_steps_per_sec']:,.0f}/s)",
          flush=True)
    return row


def row_key(r) -> tuple:
    return (r["board"], r["players"], r["device"], r["features"], r["envs"], r["threads"])


def compare(rows, path) -> int:
    """Print ratios against a previous result; returns how many rows are >10% slower."""
    with open(path) as fh:
        base = {row_key(r): r for r in json.load(fh)["rows"]}
    slower = 0
    for r in rows:
        b = base.get(row_key(r))
        if not b:
            print(f"compare: {row_key(r)} has no row in {path}")
            continue
        ratio = r["env_steps_per_sec"] / b["env_steps_per_sec"]
        slower += ratio < 0.9
        print(f"compare {r['board']:<10} features={'on ' if r['features'] else 'off'} {ratio:6.2f}x"
              + ("  SLOWER" if ratio < 0.9 else ""))
    print(f"compare: {slower} of {len(rows)} rows >10% slower than {path}")
    return slower


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--boards", nargs="+", default=list(BOARDS), choices=BOARDS)
    ap.add_argument("--players", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--envs", type=int, help="batch size (default 256 on cpu, 16384 on cuda)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per board")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    ap.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    ap.add_argument("--compare", metavar="OLD_JSON",
                    help="print each row's ratio to the same row of a previous result (e.g. "
                         "bench/results/env_baseline.json) and flag rows more than 10%% slower")
    args = ap.parse_args(argv)
    n = args.envs or DEFAULT_ENVS[args.device]
    if args.device == "cuda":
        from ringrift.gpu import gpu_status

        ok, why = gpu_status()
        if not ok:
            print(f"env_bench: --device cuda needs a CUDA GPU and cupy: {why}", file=sys.stderr)
            return 2
        if not all(differential(b, p, DIFF_ENVS[b], 60) for b in args.boards for p in (2, 3, 4)):
            print("env_bench: the GPU kernels differ from the host twin", file=sys.stderr)
            return 1
    rows = [timed(b, args.players, n, args.steps, args.device, f, args.threads)
            for b in args.boards for f in (True, False)]
    if args.compare:
        compare(rows, args.compare)
    if args.json:
        from selfplay_bench import machine_info  # same folder: one definition of the machine record

        with open(args.json, "w") as fh:
            json.dump({"machine": machine_info(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
