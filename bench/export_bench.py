"""NPZ export throughput: samples/s of the C++ encoder (replay + planes + action index), and of
the whole `export_db` path (SQLite read, encode, split, archive write). The "(symmetries)" row
also maps every sample's policy index through each board symmetry (--symmetries). The
"upstream encoder" row is `ringrift._core.upstream.encode_games` (upstream's training encoding:
four history frames, 20 globals, upstream's policy index; docs/upstream_npz.md) and the
"export_upstream" rows its whole export (checksums included).

    python bench/export_bench.py                     # square8 2p, encoder on one core
    python bench/export_bench.py --end-to-end        # plus DB -> .npz, compressed and not
    python bench/export_bench.py --board hex8 --players 3 --games 1000 --json out.json

The encoder rows call `ringrift._core.export.encode_games` on chunks of games already in memory
(as the exporter does), with one thread, after a warm-up pass; the figure is the median over
--repeats passes. Target: >= 200,000 samples/s on one core for square8, for both encoders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ringrift import BOARDS, _core

TARGET = 200_000


def machine() -> dict:
    from selfplay_bench import machine_info  # same folder: one definition of the machine record

    return machine_info()


def encoder_pass(board, batch, chunk, threads, drop_forced=False, symmetries=False) -> tuple[int, float]:
    off = batch["move_offsets"]
    G = len(off) - 1
    nps = np.full(G, batch["num_players"], np.uint8)
    samples = 0
    t0 = time.perf_counter()
    for s in range(0, G, chunk):
        o = off[s:min(G, s + chunk) + 1]
        out = _core.export.encode_games(board, batch["moves"][o[0]:o[-1]], o - o[0], nps[s:s + len(o) - 1],
                                        hashes=batch["hashes"][o[0]:o[-1]], drop_forced=drop_forced,
                                        threads=threads, symmetries=symmetries)
        samples += len(out["values"])
        del out
    return samples, time.perf_counter() - t0


def upstream_encoder_pass(board, batch, chunk, threads) -> tuple[int, float]:
    off = batch["move_offsets"]
    G = len(off) - 1
    nps = np.full(G, batch["num_players"], np.uint8)
    samples = 0
    # one features buffer for every chunk, as export_upstream keeps one
    lay = _core.upstream.layout(board)
    most = max(int(off[min(G, s + chunk)] - off[s]) for s in range(0, G, chunk))
    buf = np.empty(most * lay["in_channels"] * lay["spatial_size"] ** 2, dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, G, chunk):
        o = off[s:min(G, s + chunk) + 1]
        out = _core.upstream.encode_games(board, batch["moves"][o[0]:o[-1]], o - o[0], nps[s:s + len(o) - 1],
                                          hashes=batch["hashes"][o[0]:o[-1]], threads=threads,
                                          features_buffer=buf)
        samples += len(out["values"])
        del out
    return samples, time.perf_counter() - t0


def end_to_end(board, players, batch, compression, threads, encoding="native") -> dict:
    from ringrift.db import GameDB
    from ringrift.export import export_db
    from ringrift.export.upstream import export_upstream

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "games.db"
        with GameDB(db) as gdb:
            gdb.insert_batch(batch, board=board, num_players=players, seed=1, policy="random",
                             engine_version="bench", host="bench", max_moves=100000)
            gdb.set_parity_status([r[0] for r in gdb.conn.execute("SELECT id FROM games")], "ok")
        t0 = time.perf_counter()
        if encoding == "upstream":  # one file, as upstream writes (games without a winner left out)
            res = export_upstream(db, Path(tmp) / "out.npz", compression=compression, threads=threads,
                                  split_ratio=1)
        else:
            res = export_db(db, Path(tmp) / "out.npz", compression=compression, threads=threads,
                            include_capped=True)
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for ps in res.files.values() for p in ps)
    n = sum(res.samples.values())
    name = "export_upstream" if encoding == "upstream" else "export_db"
    return {"mode": f"{name} ({'deflate' if compression else 'stored'})", "threads": threads, "samples": n,
            "seconds": round(dt, 3), "samples_per_sec": round(n / dt), "bytes_per_sample": round(size / n, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="square8", choices=BOARDS)
    ap.add_argument("--players", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--games", type=int, default=2000)
    ap.add_argument("--chunk-games", type=int, default=128, help="games per encode_games call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="encoder threads (the target is for 1)")
    ap.add_argument("--end-to-end", action="store_true", help="also time export_db from a game DB")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)

    batch = _core.selfplay_batch(args.board, args.players, 1, list(range(args.games)), "random",
                                 threads=0, max_moves=100000)
    batch["num_players"] = args.players
    rows = []
    encoder_pass(args.board, batch, args.chunk_games, args.threads)  # warm-up: page in the buffers
    for drop, sym in ((False, False), (True, False), (False, True)):
        rates, n = [], 0
        for _ in range(args.repeats):
            n, dt = encoder_pass(args.board, batch, args.chunk_games, args.threads, drop_forced=drop, symmetries=sym)
            rates.append(n / dt)
        mode = "encoder" + (" (drop_forced)" if drop else "") + (" (symmetries)" if sym else "")
        rows.append({"mode": mode, "threads": args.threads,
                     "samples": n, "samples_per_sec": round(statistics.median(rates)),
                     "best_samples_per_sec": round(max(rates))})
    upstream_encoder_pass(args.board, batch, args.chunk_games, args.threads)  # warm-up
    rates = []
    for _ in range(args.repeats):
        n, dt = upstream_encoder_pass(args.board, batch, args.chunk_games, args.threads)
        rates.append(n / dt)
    rows.append({"mode": "upstream encoder", "threads": args.threads, "samples": n,
                 "samples_per_sec": round(statistics.median(rates)), "best_samples_per_sec": round(max(rates))})
    if args.end_to_end:
        for encoding in ("native", "upstream"):
            for compression in (False, True):
                rows.append(end_to_end(args.board, args.players, batch, compression, args.threads, encoding))

    print(f"{args.board} {args.players}p, {args.games} random games, chunks of {args.chunk_games} games")
    for r in rows:
        extra = f", {r['bytes_per_sample']} bytes/sample on disk" if "bytes_per_sample" in r else ""
        print(f"  {r['mode']:<26} threads={r['threads']}  {r['samples']:>9} samples  "
              f"{r['samples_per_sec']:>12,} samples/s{extra}")
    if args.board == "square8" and args.threads == 1:
        for r in rows:
            if r["mode"] in ("encoder", "upstream encoder"):
                verdict = "meets" if r["samples_per_sec"] >= TARGET else "MISSES"
                print(f"  {r['mode']} {verdict} the target of {TARGET:,} samples/s on one core "
                      f"({r['samples_per_sec']:,} samples/s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "board": args.board, "players": args.players,
                                               "games": args.games, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
