"""Gumbel search with a net, ours against upstream's, simulations per CPU-second side by side in one run.

    python bench/search_vs_upstream.py --json bench/results/search_vs_upstream.json \
        --upstream-root /work/upstream --upstream-python /work/venvs/upstream/bin/python \
        --upstream-driver /work/search_data/upstream_gumbel_driver.py

Ours: ``GumbelSearch`` (one native thread) over square8 2p positions, its leaves evaluated by a freshly
initialised ``ringrift-train`` net (``PolicyValueNet``, width x depth, exported to ONNX, ONNX Runtime
with one intra-op thread). Upstream's: ``BatchedGumbelMCTS.select_moves_batch``
(``ai-service/app/ai/batched_gumbel_mcts.py``) with a freshly initialised ``RingRiftCNN_v2`` of about
the same parameter count (torch, one thread). Upstream's code is never part of this repository: it
runs in its own interpreter through a driver script kept outside the project (``--upstream-driver``,
which prints one JSON line: simulations done, CPU seconds of its process, parameters). Without the
three ``--upstream-*`` paths only our side is measured and the reason is printed.

A "simulation" is one value added to the root's statistics: for us a walk down the tree to a leaf
that the net evaluates (or a terminal one); for upstream a walk of up to 10 random moves below a root
candidate followed by a net evaluation (``_collect_leaf_state``), which is what its budget counts.
CPU time is each process's own (``time.process_time``), so sims per CPU-second is per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_bench import positions  # noqa: E402


def ours(games: int, sims: int, top_k: int, plies: int, width: int, depth: int, seed: int,
         selfplay_games: int = 8) -> dict:
    import torch

    from ringrift.search import GumbelSearch
    from ringrift.search.selfplay import net_evaluator
    from ringrift.train.model import NetConfig, build_model, count_params
    from ringrift.train.onnx_export import export_onnx
    from ringrift.export.actions import action_space_size

    torch.manual_seed(seed)
    model = build_model(NetConfig("square8", width, depth))
    params = count_params(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, {"board": "square8", "encoding": "native",
                                   "action_space_size": action_space_size("square8")}, Path(tmp) / "m.onnx")
        evaluate = net_evaluator(str(path), "square8", threads=1)
        pos = positions("square8", games, plies, seed=seed)
        GumbelSearch(pos[:1], simulations=8, top_k=top_k, seed=0, threads=1).run(evaluate)  # warm-up
        search = GumbelSearch(pos, simulations=sims, top_k=top_k, seed=1, threads=1)
        c0, w0 = time.process_time(), time.perf_counter()
        results = search.run(evaluate)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        play = selfplay_rate(path, selfplay_games, sims, top_k, evaluate) if selfplay_games else {}
    done = sum(r.simulations for r in results)
    return {"impl": "ringrift GumbelSearch + ONNX Runtime", "board": "square8", "players": 2, "params": params,
            "net": f"PolicyValueNet(width={width}, depth={depth})", "games": len(pos),
            "searched": sum(r.simulations > 0 for r in results), "simulation_budget": sims, "top_k": top_k,
            "simulations": done, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "sims_per_cpu_s": round(done / cpu, 2) if cpu > 0 else None, **play}


def selfplay_rate(model: Path, games: int, sims: int, top_k: int, evaluate) -> dict:
    """Whole games of search self-play with the same net and search (``gumbel:onnx:...``, one thread):
    games per CPU-hour, and how many positions per game the search ran on (the others have one
    playable move and are played without a search)."""
    from ringrift.search.selfplay import parse_policy, selfplay_search_batch

    spec = parse_policy(f"gumbel:onnx:{model}:sims={sims},top_k={top_k}")
    c0 = time.process_time()
    b = selfplay_search_batch("square8", 2, 11, range(games), spec, threads=1, evaluate=evaluate)
    cpu = time.process_time() - c0
    offs = b["search"]["policy_offsets"]
    searched = int(((offs[1:] - offs[:-1]) > 1).sum())
    return {"selfplay_games": games, "selfplay_moves": int(b["total_moves"]), "selfplay_cpu_s": round(cpu, 3),
            "searched_positions_per_game": round(searched / games, 1),
            "games_per_cpu_hour": round(games / cpu * 3600, 1) if cpu > 0 else None}


def upstream(a, net: str) -> dict | None:
    missing = [name for name in ("upstream_root", "upstream_python", "upstream_driver") if not getattr(a, name)]
    if missing:
        print(f"upstream: skipped, not given: {', '.join('--' + m.replace('_', '-') for m in missing)}")
        return None
    for name in ("upstream_root", "upstream_python", "upstream_driver"):
        if not Path(getattr(a, name)).exists():
            print(f"upstream: skipped, --{name.replace('_', '-')} {getattr(a, name)}: no such path")
            return None
    rb, f, pi, vi = (int(x) for x in net.split(","))
    cmd = [a.upstream_python, a.upstream_driver, "--upstream-root", a.upstream_root, "--games", str(a.upstream_games),
           "--sims", str(a.simulations), "--top-k", str(a.top_k), "--plies", str(a.plies), "--seed", str(a.seed),
           "--res-blocks", str(rb), "--filters", str(f), "--policy-intermediate", str(pi),
           "--value-intermediate", str(vi)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.upstream_timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"upstream: failed (exit {p.returncode}): {tail}")
        return {"error": tail, "returncode": p.returncode, "command": cmd}
    row = json.loads(lines[-1])
    row["command"] = cmd
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=64, help="our positions (half at the start, half mid-game)")
    ap.add_argument("--upstream-games", type=int, default=8, help="upstream's positions (its search is slow)")
    ap.add_argument("--simulations", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=16)
    ap.add_argument("--plies", type=int, default=60)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--selfplay-games", type=int, default=8,
                    help="whole square8 games of our search self-play for games per CPU-hour (0: skip)")
    ap.add_argument("--upstream-root", help="upstream checkout (with ai-service/)")
    ap.add_argument("--upstream-python", help="an interpreter with upstream's dependencies")
    ap.add_argument("--upstream-driver", help="the driver script (kept outside this repository)")
    ap.add_argument("--upstream-timeout", type=float, default=1800)
    ap.add_argument("--upstream-nets", default="3,32,16,32;4,48,16,64",
                    help="upstream RingRiftCNN_v2 sizes, 'res_blocks,filters,policy_hidden,value_hidden;...': the "
                         "default is one with our net's parameter count and one with our net's trunk "
                         "(4 residual blocks of 48 channels, the same convolution work per evaluation)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    rows = [ours(a.games, a.simulations, a.top_k, a.plies, a.width, a.depth, a.seed, a.selfplay_games)]
    ups = []
    for net in a.upstream_nets.split(";"):
        up = upstream(a, net)
        if up is None:
            break
        ups.append(up)
    rows += ups
    print(f"{'impl':40} {'params':>8} {'games':>5} {'sims':>7} {'cpu s':>8} {'sims/cpu-s':>11}")
    for r in rows:
        if "error" in r:
            print(f"{'upstream':40} error: {r['error']}")
            continue
        print(f"{r['impl']:40} {r['params']:>8} {r['games']:>5} {r['simulations']:>7} {r['cpu_s']:>8} "
              f"{r['sims_per_cpu_s']:>11}")
    ratio = []
    mine = rows[0]
    if mine.get("games_per_cpu_hour"):
        print(f"ours, whole games of search self-play: {mine['games_per_cpu_hour']} games per CPU-hour "
              f"({mine['selfplay_games']} games, {mine['searched_positions_per_game']} searched positions a game)")
    for up in ups:
        if "error" not in up and up["sims_per_cpu_s"]:
            ratio.append(round(mine["sims_per_cpu_s"] / up["sims_per_cpu_s"], 1))
            up["ours_over_this"] = ratio[-1]
            print(f"ours / upstream with {up['net']} ({up['params']} parameters), simulations per CPU-second: "
                  f"{ratio[-1]}x")
            if mine.get("searched_positions_per_game"):
                # Derived, not played: a whole upstream game at this rate would take hours on this box.
                up["games_per_cpu_hour_derived"] = round(
                    up["sims_per_cpu_s"] * 3600 / (a.simulations * mine["searched_positions_per_game"]), 2)
                print(f"  upstream games per CPU-hour at that rate (derived: its simulations per CPU-second over "
                      f"{a.simulations} simulations x our {mine['searched_positions_per_game']} searched positions a "
                      f"game): {up['games_per_cpu_hour_derived']}")
    if a.json:
        info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
                "load_avg_at_end": os.getloadavg(), "simulations": a.simulations, "top_k": a.top_k,
                "plies": a.plies, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows, "ratio": ratio}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
