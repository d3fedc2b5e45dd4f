"""The scheduler (pipeline/scheduler.py) driven by a simulated executor of 1,000 workers with
random losses and slow workers: nothing lost, nothing stored twice, a resumed run plays only
what is missing, and a range that keeps failing stops the run with one line."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from ringrift.engine.errors import RingRiftError
from ringrift.pipeline.ranges import IndexSet
from ringrift.pipeline.scheduler import NoWorkersLeft, RangeLost, RangeScheduler, run_scheduler
from ringrift.pipeline.simulate import MemorySink, SimulatedExecutor, sim_spec
from ringrift.pipeline.state import PipelineState

LOG = logging.getLogger("test.scheduler")


def test_thousand_workers_with_failures_and_slow_workers_lose_and_duplicate_nothing(tmp_path):
    # 3,000 ranges; a normal attempt takes ~2 ms, a slow worker's ~0.8 s, often past the 0.5 s
    # timeout (wide enough that a loaded machine's event-loop lag does not time out normal attempts)
    spec = sim_spec(30_000, 10, timeout=0.5)
    ex = SimulatedExecutor(1000, fail_rate=0.1, slow_fraction=0.05, slow_factor=400, mean_delay=0.002, seed=7)
    sink = MemorySink()
    state = PipelineState.begin(tmp_path / "state.json", phase="canonical_selfplay", run={"sim": 1},
                                target=spec.num_games, phases=("canonical_selfplay",))
    err = io.StringIO()
    summary = run_scheduler(RangeScheduler(spec, ex, sink, state, LOG, err=err, max_attempts=50))
    assert sink.have == IndexSet.interval(0, spec.num_games)
    assert sink.duplicated == 0 and sink.merges == 3000
    assert summary["new"] == spec.num_games and summary["duplicates_dropped"] == 0
    # the simulation did lose ranges, and slow workers did time out
    assert ex.failures > 100 and ex.cancelled > 10, (ex.failures, ex.cancelled)
    assert summary["redispatched"] == ex.failures + ex.cancelled
    assert len(summary["by_host"]) > 900  # the work was spread over the workers
    assert all(r["status"] == "merged" for r in state.data["ranges"])
    assert state.data["games_completed"] == spec.num_games
    assert "re-dispatched" in err.getvalue()


def test_a_resumed_run_plays_exactly_what_is_missing():
    spec = sim_spec(10_000, 100)
    present = IndexSet([(0, 2500), (2550, 2600), (7000, 10_000)])
    sink = MemorySink(present)
    ex = SimulatedExecutor(1000, fail_rate=0.2, seed=3)
    summary = run_scheduler(RangeScheduler(spec, ex, sink, None, LOG, max_attempts=20))
    assert sink.have == IndexSet.interval(0, 10_000) - present
    assert sink.duplicated == 0
    assert summary["already"] == present.count and summary["new"] == 10_000 - present.count
    assert ex.attempts - ex.failures == len({r for r in range(2500, 7000, 100)})  # only unfinished ranges ran


def test_a_range_that_keeps_failing_stops_the_run_with_one_line():
    spec = sim_spec(100, 10)
    with pytest.raises(RingRiftError, match=r"failed 3 times, last on sim\d+: simulated node loss; rerun"):
        run_scheduler(RangeScheduler(spec, SimulatedExecutor(4, fail_rate=1.0), MemorySink(), None, LOG,
                                     max_attempts=3))


def test_a_result_refused_at_merge_is_played_again_and_merged_once():
    class FlakySink(MemorySink):
        refused = 0

        def merge(self, r, result):
            if r.start == 50 and not self.refused:
                self.refused += 1
                raise RangeLost(result.worker, "pulled DB is damaged")
            return super().merge(r, result)

    spec = sim_spec(200, 10)
    sink = FlakySink()
    summary = run_scheduler(RangeScheduler(spec, SimulatedExecutor(8, seed=1), sink, None, LOG))
    assert sink.refused == 1 and sink.duplicated == 0
    assert sink.have == IndexSet.interval(0, 200) and summary["redispatched"] == 1


def test_cancelling_the_run_cancels_every_range_in_flight():
    spec = sim_spec(10_000, 10)
    ex = SimulatedExecutor(50, mean_delay=10.0, seed=2)

    async def main():
        task = asyncio.create_task(RangeScheduler(spec, ex, MemorySink(), None, LOG).run())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ex.attempts == 50 and ex.cancelled == 50 and len(ex.idle) == 50


class _HookedExecutor(SimulatedExecutor):
    """Records the scheduler's calls of the executor hooks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.merged_starts: list = []
        self.finished_with = None

    async def merged(self, r, result):
        self.merged_starts.append(r.start)

    async def finished(self, present):
        self.finished_with = present


def test_the_merge_hook_runs_once_per_range_after_its_merge_and_finished_at_the_end():
    spec = sim_spec(2_000, 10)
    ex = _HookedExecutor(50, fail_rate=0.2, seed=3)
    sink = MemorySink()
    summary = run_scheduler(RangeScheduler(spec, ex, sink, None, LOG, max_attempts=50))
    assert summary["redispatched"] > 0
    assert sorted(ex.merged_starts) == list(range(0, 2_000, 10))  # once each, failures included
    assert ex.finished_with is not None and ex.finished_with.covers(0, 2_000)


class _DyingExecutor(SimulatedExecutor):
    """Plays `lives` ranges, then has no worker left (every host dropped)."""

    def __init__(self, lives: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lives = lives

    async def run_range(self, task, report):
        if self.lives <= 0:
            raise NoWorkersLeft("no healthy host left")
        self.lives -= 1
        return await super().run_range(task, report)


def test_no_worker_left_orphans_the_unfinished_ranges_and_stops_in_one_line(tmp_path):
    spec = sim_spec(1_000, 10)
    state = PipelineState.begin(tmp_path / "state.json", phase="canonical_selfplay", run={"sim": 2},
                                target=spec.num_games, phases=("canonical_selfplay",))
    dying = _DyingExecutor(20, 4)
    with pytest.raises(RingRiftError, match=r"^no healthy host left: \d+ games in \d+ ranges are unfinished; "
                                            r"rerun the same command when one is back to resume$"):
        run_scheduler(RangeScheduler(spec, dying, MemorySink(), state, LOG))
    statuses = [e["status"] for e in state.data["ranges"]]
    assert set(statuses) == {"merged", "orphaned"} and statuses.count("orphaned") >= 80
