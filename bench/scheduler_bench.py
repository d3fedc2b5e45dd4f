"""The self-play scheduler's own cost, and the merge rate into one SQLite output DB.

    python bench/scheduler_bench.py                      # 1,000 simulated workers, 10,000 ranges
    python bench/scheduler_bench.py --ranges 5000 --fail-rate 0.05 --json out.json
    python bench/scheduler_bench.py --merge-ranges 50 --merge-games 1000   # + SQLite merge rate

Scheduler rows: `ringrift.pipeline.scheduler.RangeScheduler` drives `simulate.SimulatedExecutor`
(ranges finish at once, `--fail-rate` of attempts lost and dispatched again) into an in-memory
sink, with the state file written as in a real run (throttled to 2 writes/s): the time per
range is the scheduler's own work (plan, dispatch, bookkeeping, the hop to the merge thread,
state), what a real executor adds on top of playing the games.

Merge rows: `scheduler.merge_range_db` (checks + GameDB.merge_from) of `--merge-ranges` real
range DBs of `--merge-games` random square8 games each into one output DB: games/s and
ranges/s a single SQLite file takes in, the ceiling of any executor that merges into one file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


def scheduler_row(ranges: int, per_range: int, workers: int, fail_rate: float, state_dir: Path) -> dict:
    from ringrift.pipeline.ranges import IndexSet
    from ringrift.pipeline.scheduler import RangeScheduler, run_scheduler
    from ringrift.pipeline.simulate import MemorySink, SimulatedExecutor, sim_spec
    from ringrift.pipeline.state import PipelineState

    spec = sim_spec(ranges * per_range, per_range)
    ex = SimulatedExecutor(workers, fail_rate=fail_rate, seed=1)
    sink = MemorySink()
    state = PipelineState.begin(state_dir / f"state_{ranges}_{fail_rate}.json", phase="canonical_selfplay",
                                run={"bench": ranges}, target=spec.num_games, phases=("canonical_selfplay",))
    log = logging.getLogger("scheduler_bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    t0 = time.perf_counter()
    summary = run_scheduler(RangeScheduler(spec, ex, sink, state, log, max_attempts=50))
    secs = time.perf_counter() - t0
    assert sink.have == IndexSet.interval(0, spec.num_games) and sink.duplicated == 0
    return {"kind": "scheduler", "workers": workers, "ranges": ranges, "games_per_range": per_range,
            "fail_rate": fail_rate, "attempts": ex.attempts, "redispatched": summary["redispatched"],
            "seconds": secs, "ranges_per_sec": ranges / secs, "us_per_range": 1e6 * secs / ranges}


def merge_row(n_ranges: int, per_range: int, tmp: Path) -> dict:
    from ringrift import _core
    from ringrift.db import GameDB
    from ringrift.pipeline.ranges import Range
    from ringrift.pipeline.scheduler import merge_range_db
    from ringrift.pipeline.simulate import sim_spec
    from ringrift.selfplay.runner import ENGINE_VERSION

    spec = sim_spec(n_ranges * per_range, per_range)._replace(max_moves=2000, output_db=tmp / "merged.db")
    parts = []
    for k in range(n_ranges):  # play every range first: only the merges are timed
        r = Range(k * per_range, (k + 1) * per_range)
        part = tmp / f"part_{k}.db"
        batch = _core.selfplay_batch("square8", 2, 0, list(range(r.start, r.end)), "random", threads=0,
                                     max_moves=2000, record=True)
        with GameDB(part) as db:
            db.insert_batch(batch, board="square8", num_players=2, seed=0, policy="random",
                            engine_version=ENGINE_VERSION, host="bench", max_moves=2000)
        parts.append((r, part))
    size = sum(p.stat().st_size for _, p in parts)
    t0 = time.perf_counter()
    for r, part in parts:
        merge_range_db(spec, part, r, "bench")
    secs = time.perf_counter() - t0
    games = n_ranges * per_range
    return {"kind": "merge", "ranges": n_ranges, "games_per_range": per_range, "games": games,
            "bytes_per_game": size / games, "seconds": secs, "games_per_sec": games / secs,
            "ranges_per_sec": n_ranges / secs, "mb_per_sec": size / secs / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=1000, help="simulated workers (ranges in flight)")
    ap.add_argument("--ranges", type=int, nargs="+", default=[10_000], help="ranges per scheduler run (at most ranges.MAX_RANGES)")
    ap.add_argument("--games-per-range", type=int, default=10)
    ap.add_argument("--fail-rate", type=float, nargs="+", default=[0.0, 0.05])
    ap.add_argument("--merge-ranges", type=int, default=20, help="real range DBs merged (0: no merge rows)")
    ap.add_argument("--merge-games", type=int, default=1000, help="games per merged range DB")
    ap.add_argument("--json", metavar="PATH", help="write the rows here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="scheduler-bench-") as tmp:
        tmp = Path(tmp)
        for n in args.ranges:
            for f in args.fail_rate:
                row = scheduler_row(n, args.games_per_range, args.workers, f, tmp)
                rows.append(row)
                print(f"scheduler  {row['workers']} workers  {n} ranges  fail {f:.2f}  ({row['attempts']} attempts): "
                      f"{row['ranges_per_sec']:,.0f} ranges/s, {row['us_per_range']:.1f} us/range")
        if args.merge_ranges:
            row = merge_row(args.merge_ranges, args.merge_games, tmp)
            rows.append(row)
            print(f"merge      {row['ranges']} ranges x {row['games_per_range']} square8 random games into one "
                  f"SQLite DB: {row['games_per_sec']:,.0f} games/s, {row['ranges_per_sec']:.1f} ranges/s, "
                  f"{row['mb_per_sec']:.1f} MB/s ({row['bytes_per_game']:.0f} bytes/game)")
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
