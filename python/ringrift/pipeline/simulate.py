"""A simulated executor and sink for the scheduler: thousands of workers without a cluster.

`SimulatedExecutor` plays no game: a range "runs" on one of `workers` simulated workers for a
random time (some workers are `slow_factor` times slower), and is lost with probability
`fail_rate` (part-way through). `MemorySink` stores the finished ranges' game indices in memory
and records every index stored twice, so a test can check that nothing is lost or duplicated,
and bench/scheduler_bench.py can time the scheduler's own work per range (delays of 0).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from .ranges import IndexSet
from .scheduler import Executor, RangeLost, RangeResult, RangeTask, Sink


def sim_spec(num_games: int, games_per_worker: int, *, timeout: float | None = None):
    """A SelfplaySpec for simulations (its output DB is never opened)."""
    from .orchestrator import SelfplaySpec

    return SelfplaySpec(board="square8", players=2, policy="random", seed=0, num_games=num_games, max_moves=1,
                        output_db=Path("(simulated)"), games_per_worker=games_per_worker, timeout=timeout or 0.0)


class SimulatedExecutor(Executor):
    name = "simulated"

    def __init__(self, workers: int = 1000, *, fail_rate: float = 0.0, slow_fraction: float = 0.0,
                 slow_factor: float = 20.0, mean_delay: float = 0.0, seed: int = 0):
        self.workers = workers
        self.fail_rate = fail_rate
        self.mean_delay = mean_delay
        self.slow_factor = slow_factor
        self.rng = random.Random(seed)
        self.slow = set(self.rng.sample(range(workers), int(workers * slow_fraction)))
        self.idle = list(range(workers))
        self.rng.shuffle(self.idle)
        self.attempts = 0
        self.failures = 0
        self.cancelled = 0

    def capacity(self) -> int:
        return self.workers

    async def run_range(self, task: RangeTask, report) -> RangeResult:
        w = self.idle.pop()  # the scheduler never has more than capacity() ranges in flight
        name = f"sim{w}"
        self.attempts += 1
        try:
            delay = self.rng.expovariate(1.0 / self.mean_delay) if self.mean_delay > 0 else 0.0
            if w in self.slow:
                delay *= self.slow_factor
            fails = self.rng.random() < self.fail_rate
            if delay:
                await asyncio.sleep(delay * (self.rng.random() if fails else 1.0))
            else:
                await asyncio.sleep(0)
            if fails:
                self.failures += 1
                raise RangeLost(name, "simulated node loss")
            report(name, task.todo.count, task.todo.count)
            return RangeResult(worker=name, games=task.todo)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.idle.append(w)


class MemorySink(Sink):
    """The game indices of finished ranges, in memory (as index runs); an index stored twice
    is counted in `duplicated`."""

    def __init__(self, present: IndexSet | None = None):
        self.initial = present or IndexSet()
        self.have = IndexSet()
        self.duplicated = 0
        self.merges = 0

    def present(self) -> IndexSet:
        return self.initial

    def merge(self, r, result: RangeResult) -> int:
        self.merges += 1
        games = result.games
        if games.count and (games.min < r.start or games.max >= r.end):
            raise RangeLost(result.worker, f"games outside range {r}")
        fresh = games - self.initial
        self.duplicated += (fresh & self.have).count
        self.have = self.have | fresh
        return fresh.count
