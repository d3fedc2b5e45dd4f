"""NPZ export throughput: samples/s of the C++ encoder (replay + planes + action index), and of
the whole `export_db` path (SQLite read, encode, split, deflate, write). The "(symmetries)" row
also maps every sample's policy index through each board symmetry (--symmetries). The
"upstream encoder" row is `ringrift._core.upstream.encode_games` (upstream's training encoding:
four history frames, 20 globals, upstream's policy index; docs/upstream_npz.md) and the
"export_upstream" rows its whole export (checksums included).

    python bench/export_bench.py                     # square8 2p, encoder on one core
    python bench/export_bench.py --end-to-end        # plus DB -> .npz at 1 and 2 threads
    python bench/export_bench.py --codecs            # plus each deflate library and level alone
    python bench/export_bench.py --end-to-end --encoder-repeats 0 --games 20000   # a bigger DB
    python bench/export_bench.py --board hex8 --players 3 --games 1000 --json out.json

The encoder rows call `ringrift._core.export.encode_games` on chunks of games already in memory
(as the exporter does), with one thread, after a warm-up pass; the figure is the median over
--repeats passes. Target: >= 200,000 samples/s on one core for square8, for both encoders.

The end-to-end rows export one game DB (written once, before the clock starts) with
`export_db` in several ways, in the same run so that their ratios hold even on a busy machine:
the compressed default (the deflate library `ringrift.export.deflate` picks: ISA-L when
installed) at each of --e2e-threads, stored, and the earlier ways, chosen with
RINGRIFT_DEFLATE: `zlib:1` (the default before ISA-L) and `zlib:6` (np.savez_compressed's level,
"old" below; one thread, as np.savez_compressed). Each row gives samples per wall second, per
CPU second of the process (all its threads: the figure to trust on a loaded machine), the
output's size, and its speed and size relative to the old path. Target: >= 300,000 samples/s
for the compressed default on two cores (square8).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ringrift import BOARDS, _core

TARGET = 200_000
E2E_TARGET = 300_000  # samples/s, compressed default, two threads, square8


def machine() -> dict:
    from selfplay_bench import machine_info  # same folder: one definition of the machine record

    return machine_info()


def encoder_pass(board, batch, chunk, threads, drop_forced=False, symmetries=False) -> tuple[int, float]:
    off = batch["move_offsets"]
    G = len(off) - 1
    nps = np.full(G, batch["num_players"], np.uint8)
    samples = 0
    # one features buffer for every chunk, as export_db reuses its buffers
    most = max(int(off[min(G, s + chunk)] - off[s]) for s in range(0, G, chunk))
    buf = np.empty(most * np.prod(_core.export.encode_games(board, batch["moves"][:0], np.zeros(1, np.int64),
                                                           nps[:0])["features"].shape[1:]), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, G, chunk):
        o = off[s:min(G, s + chunk) + 1]
        out = _core.export.encode_games(board, batch["moves"][o[0]:o[-1]], o - o[0], nps[s:s + len(o) - 1],
                                        hashes=batch["hashes"][o[0]:o[-1]], drop_forced=drop_forced,
                                        threads=threads, symmetries=symmetries, features_buffer=buf)
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


CODECS = ("isal:0", "isal:1", "isal:2", "zlib-ng:1", "zlib-ng:6", "zlib:1", "zlib:6")


def codec_rows(board, batch, games=600) -> list[dict]:
    """Each installed deflate library and level on the columns of the first ``games`` games (one
    thread, pieces of 4 MiB as the writer cuts them): samples/s of one core and bytes a sample."""
    from ringrift.export import deflate

    G = min(games, len(batch["move_offsets"]) - 1)
    o = batch["move_offsets"][:G + 1]
    out = _core.export.encode_games(board, batch["moves"][:o[-1]], o, np.full(G, batch["num_players"], np.uint8),
                                    hashes=batch["hashes"][:o[-1]])
    n = len(out["values"])
    cols = [memoryview(np.ascontiguousarray(out[k])).cast("B") for k in
            ("features", "globals", "values", "values_mp", "policy", "movers", "phases", "ply", "records")]
    pieces = [c[i:i + (4 << 20)] for c in cols for i in range(0, len(c), 4 << 20)]
    rows = []
    for spec in CODECS:
        try:
            lib = deflate.choose(spec)
        except ImportError:
            continue
        t0 = time.perf_counter()
        size = sum(len(lib.piece(p)) for p in pieces)
        dt = time.perf_counter() - t0
        rows.append({"mode": f"deflate only: {spec}", "deflate": lib.describe(), "threads": 1, "samples": n,
                     "samples_per_sec": round(n / dt), "bytes_per_sample": round(size / n, 1)})
    return rows


def make_db(board, players, batch, folder: Path) -> Path:
    from ringrift.db import GameDB

    db = folder / "games.db"
    with GameDB(db) as gdb:
        gdb.insert_batch(batch, board=board, num_players=players, seed=1, policy="random",
                         engine_version="bench", host="bench", max_moves=100000)
        gdb.set_parity_status([r[0] for r in gdb.conn.execute("SELECT id FROM games")], "ok")
    return db


def runqueue_wait() -> float | None:
    """Seconds the calling thread has waited for a CPU while runnable (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def end_to_end(db, compression, threads, encoding="native", deflate=None, label=None) -> dict:
    """One export of ``db``; ``deflate`` is a RINGRIFT_DEFLATE spec (None: the default choice)."""
    from ringrift.export import export_db
    from ringrift.export.deflate import ENV, choose
    from ringrift.export.upstream import export_upstream

    saved = os.environ.get(ENV)
    if deflate:
        os.environ[ENV] = deflate
    else:
        os.environ.pop(ENV, None)
    try:
        lib = choose().describe() if compression else "stored"
        with tempfile.TemporaryDirectory(dir=Path(db).parent) as tmp:
            w0, c0, t0 = runqueue_wait(), time.process_time(), time.perf_counter()
            if encoding == "upstream":  # one file, as upstream writes (games without a winner left out)
                res = export_upstream(db, Path(tmp) / "out.npz", compression=compression, threads=threads,
                                      split_ratio=1)
            else:
                res = export_db(db, Path(tmp) / "out.npz", compression=compression, threads=threads,
                                include_capped=True)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            w1 = runqueue_wait()
            size = sum(p.stat().st_size for ps in res.files.values() for p in ps)
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved
    n = sum(res.samples.values())
    name = "export_upstream" if encoding == "upstream" else "export_db"
    return {"mode": label or f"{name} ({'deflate' if compression else 'stored'})", "encoding": encoding,
            "deflate": lib, "threads": threads, "samples": n, "seconds": round(dt, 3),
            "cpu_seconds": round(cpu, 3), "samples_per_sec": round(n / dt),
            "samples_per_cpu_sec": round(n / cpu) if cpu > 0 else None,
            "mb": round(size / 1e6, 1), "bytes_per_sample": round(size / n, 1),
            # one thread: every wait for a CPU is the main thread's, so wall minus that wait is
            # the time on a core of its own (it never blocks on I/O: the files go to the page cache)
            **({"waiting_for_cpu_s": round(w1 - w0, 3), "samples_per_sec_unloaded": round(n / (dt - (w1 - w0)))}
               if threads == 1 and w0 is not None and dt > w1 - w0 else {})}


def end_to_end_rows(board, players, batch, thread_counts, upstream=True, stored=True) -> list[dict]:
    """The end-to-end rows, the old path (zlib level 6, one thread) first; ratios against it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db = make_db(board, players, batch, Path(tmp))
        end_to_end(db, True, max(thread_counts))  # warm-up: page cache, imports
        old = end_to_end(db, True, 1, deflate="zlib:6", label="export_db old: zlib level 6")
        rows.append(old)
        for t in thread_counts:
            rows.append(end_to_end(db, True, t, label="export_db (deflate, default)"))
        rows.append(end_to_end(db, True, max(thread_counts), deflate="zlib:1",
                               label="export_db before: zlib level 1"))
        if stored:
            rows.append(end_to_end(db, False, max(thread_counts)))
        if upstream:
            for compression in (False, True):
                rows.append(end_to_end(db, compression, max(thread_counts), encoding="upstream"))
    for r in rows:
        if r["encoding"] == "native":
            r["speed_vs_old"] = round(r["samples_per_sec"] / old["samples_per_sec"], 2)
            r["cpu_speed_vs_old"] = round(r["samples_per_cpu_sec"] / old["samples_per_cpu_sec"], 2)
            r["size_vs_old"] = round(r["bytes_per_sample"] / old["bytes_per_sample"], 2)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="square8", choices=BOARDS)
    ap.add_argument("--players", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--games", type=int, default=2000)
    ap.add_argument("--chunk-games", type=int, default=128, help="games per encode_games call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="encoder threads (the target is for 1)")
    ap.add_argument("--end-to-end", action="store_true", help="also time export_db from a game DB")
    ap.add_argument("--e2e-threads", default="1,2", help="export threads of the end-to-end rows (default 1,2)")
    ap.add_argument("--no-upstream", action="store_true", help="leave out the export_upstream rows")
    ap.add_argument("--no-stored", action="store_true",
                    help="leave out the stored row (6.9 KB a square8 sample on disk: 18 GB for 20,000 games)")
    ap.add_argument("--encoder-repeats", type=int, default=None,
                    help="passes of the encoder rows (default --repeats; 0 leaves them out)")
    ap.add_argument("--codecs", action="store_true",
                    help="also time each installed deflate library and level on the encoded columns")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)

    batch = _core.selfplay_batch(args.board, args.players, 1, list(range(args.games)), "random",
                                 threads=0, max_moves=100000)
    batch["num_players"] = args.players
    rows = []
    repeats = args.repeats if args.encoder_repeats is None else args.encoder_repeats
    if repeats > 0:
        rows += encoder_rows(args, batch, repeats)
    if args.codecs:
        rows += codec_rows(args.board, batch)
    if args.end_to_end:
        threads = [int(t) for t in args.e2e_threads.split(",")]
        rows += end_to_end_rows(args.board, args.players, batch, threads, upstream=not args.no_upstream,
                                stored=not args.no_stored)
    print(f"{args.board} {args.players}p, {args.games} random games, chunks of {args.chunk_games} games")
    for r in rows:
        print_row(r)
    if args.board == "square8" and args.threads == 1:
        for r in rows:
            if r["mode"] in ("encoder", "upstream encoder"):
                verdict = "meets" if r["samples_per_sec"] >= TARGET else "MISSES"
                print(f"  {r['mode']} {verdict} the target of {TARGET:,} samples/s on one core "
                      f"({r['samples_per_sec']:,} samples/s)")
    if args.board == "square8":
        for r in rows:
            if r["mode"] == "export_db (deflate, default)" and r["threads"] == 2:
                verdict = "meets" if r["samples_per_sec"] >= E2E_TARGET else "MISSES"
                print(f"  the compressed export {verdict} the target of {E2E_TARGET:,} samples/s on two threads "
                      f"({r['samples_per_sec']:,} per wall second, {r['samples_per_cpu_sec']:,} per CPU second, "
                      f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
            if r["mode"] == "export_db (deflate, default)" and r["threads"] == 1 and "samples_per_sec_unloaded" in r:
                print(f"  one thread, less the time it waited for a CPU: {r['samples_per_sec_unloaded']:,} samples/s "
                      f"on one core ({'meets' if r['samples_per_sec_unloaded'] >= E2E_TARGET else 'misses'} the "
                      f"two-core target on one)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "board": args.board, "players": args.players,
                                               "games": args.games, "load_average": os.getloadavg(),
                                               "rows": rows}, indent=1) + "\n")
    return 0


def print_row(r: dict) -> None:
    line = f"  {r['mode']:<30} threads={r['threads']}  {r['samples']:>9} samples  {r['samples_per_sec']:>9,} samples/s"
    if r["mode"].startswith("deflate only"):
        line += f"  {r['bytes_per_sample']:>7} B/sample  [{r['deflate']}]"
    if "cpu_seconds" in r:
        line += (f"  {r['samples_per_cpu_sec']:>9,} /CPU-s  {r['mb']:>8.1f} MB ({r['bytes_per_sample']} B/sample)"
                 f"  [{r['deflate']}]")
        if "samples_per_sec_unloaded" in r:
            line += f"  (waited {r['waiting_for_cpu_s']} s for a CPU; without: {r['samples_per_sec_unloaded']:,}/s)"
        if "speed_vs_old" in r:
            line += f"  vs old: {r['speed_vs_old']}x speed, {r['cpu_speed_vs_old']}x per CPU-s, {r['size_vs_old']}x size"
    print(line)


def encoder_rows(args, batch, repeats) -> list[dict]:
    rows = []
    encoder_pass(args.board, batch, args.chunk_games, args.threads)  # warm-up: page in the buffers
    for drop, sym in ((False, False), (True, False), (False, True)):
        rates, n = [], 0
        for _ in range(repeats):
            n, dt = encoder_pass(args.board, batch, args.chunk_games, args.threads, drop_forced=drop, symmetries=sym)
            rates.append(n / dt)
        mode = "encoder" + (" (drop_forced)" if drop else "") + (" (symmetries)" if sym else "")
        rows.append({"mode": mode, "threads": args.threads,
                     "samples": n, "samples_per_sec": round(statistics.median(rates)),
                     "best_samples_per_sec": round(max(rates))})
    upstream_encoder_pass(args.board, batch, args.chunk_games, args.threads)  # warm-up
    rates = []
    for _ in range(repeats):
        n, dt = upstream_encoder_pass(args.board, batch, args.chunk_games, args.threads)
        rates.append(n / dt)
    rows.append({"mode": "upstream encoder", "threads": args.threads, "samples": n,
                 "samples_per_sec": round(statistics.median(rates)), "best_samples_per_sec": round(max(rates))})
    return rows


if __name__ == "__main__":
    sys.exit(main())
