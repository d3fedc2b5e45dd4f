"""The self-play scheduler: one owner for the seed-range plan, dispatch, re-dispatch of lost
ranges, the merge and the state file; an executor only runs one range somewhere and hands back
its DB.

    sink = GameDBSink(spec)                        # the output DB: what is present, merge + checks
    summary = run_scheduler(RangeScheduler(spec, executor, sink, state, logger))

The target [0, N) is cut into seed ranges of `games_per_worker` games (`ranges.split`). Ranges
the output DB already covers are skipped, so a rerun after any crash (the driver killed
included) resumes to exactly the target: what is finished is what the output DB holds. At most
`executor.capacity()` ranges are in flight. A range whose attempt fails (`RangeLost`: a node or
host died, a worker crashed, a timeout) goes back to the end of the queue and is dispatched
again, up to `max_attempts` times; then the run stops with one line (a rerun resumes). Games
are deterministic in (board, players, policy, seed, index), so a repeated attempt plays exactly
the games that were lost.

Finished ranges are merged one at a time, as they arrive, while the other ranges run. A range
is merged exactly once: a second result for a range already merged (a speculative copy, an
executor that retried on its own) is dropped and counted. `GameDBSink.merge` refuses a DB that
holds games of another run, another engine version or indices outside its range, and merges
through `GameDB.merge_from`, which skips identities the output DB already has.

The state file records every range (queued / running / merged, the worker that played it,
its attempts) and every worker (node or host): ranges and games merged, the range it plays now
and that range's games so far, so `ringrift-pipeline status` shows per-node progress.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.errors import RingRiftError
from .ranges import IndexSet, Range, split

MAX_ATTEMPTS = 4  # dispatches of one range before the run gives up on it


class RangeLost(Exception):
    """One attempt at a range failed where it ran (node or host lost, worker crashed, timed
    out); the range can be played again elsewhere. `slot` names the job slot in the state file
    ("h1/2") where an executor has several per worker."""

    def __init__(self, worker: str, reason: str, *, slot: str | None = None):
        super().__init__(f"{worker}: {reason}")
        self.worker = worker
        self.reason = reason
        self.slot = slot


class NoWorkersLeft(RingRiftError):
    """The executor has no worker left that could play a range (every host dropped); the
    scheduler marks the unfinished ranges orphaned and stops (a rerun resumes)."""


@dataclass
class RangeTask:
    range: Range
    todo: IndexSet  # the range's indices the output DB lacks
    attempt: int = 1


@dataclass
class RangeResult:
    worker: str  # the node or host that played it
    slot: str | None = None  # its job slot in the state file ("h1/2"); None: the worker itself
    db: Path | None = None  # a local game DB holding the range's games (deleted once merged)
    games: IndexSet | None = None  # the simulated executor's games instead of a DB
    info: dict = field(default_factory=dict)


class Executor(ABC):
    """Runs one range somewhere and hands back its DB. Nothing else: no plan, no merge, no
    state file; what it has to say goes through the scheduler it is bound to (`self.sched`)."""

    name = "?"
    own_timeout = False  # True: run_range applies the range timeout itself (waiting for a slot is not playing)
    sched: "RangeScheduler | None" = None

    def bind(self, sched: "RangeScheduler") -> None:
        """Called by the scheduler before open(): where to log and report worker state."""
        self.sched = sched

    async def open(self) -> None:
        """Connect (to the cluster, the hosts); raises RingRiftError when unusable."""

    @abstractmethod
    def capacity(self) -> int:
        """How many ranges may be in flight at once."""

    @abstractmethod
    async def run_range(self, task: RangeTask, report) -> RangeResult:
        """Play `task.todo` and return where its games are. `report(worker, done, total, slot=None)`
        may be called with the range's progress. Raises RangeLost when this attempt failed (the
        range is dispatched again), NoWorkersLeft or RingRiftError when the run cannot go on.
        Cancellation must stop the remote work."""

    async def merged(self, r: Range, result: RangeResult) -> None:
        """Called once the range's merge has committed (e.g. to delete the worker's DB where it
        ran). Must not raise for a failed clean-up: the games are safe."""

    async def finished(self, present: IndexSet) -> None:
        """Called once every range of the run is merged (`present`: the run's stored indices)."""

    async def close(self) -> None:
        return None


class Sink(ABC):
    """Where finished ranges go."""

    @abstractmethod
    def present(self) -> IndexSet:
        """The run's indices already stored."""

    @abstractmethod
    def merge(self, r: Range, result: RangeResult) -> int:
        """Store the range's games (exactly once); returns the number added. Raises RangeLost
        when the result is unusable but the range can be played again, RingRiftError when the
        run must stop."""


class GameDBSink(Sink):
    """The output game DB of a self-play run (SQLite, through GameDB's public API)."""

    def __init__(self, spec):
        self.spec = spec

    def present(self) -> IndexSet:
        from .orchestrator import present_indices

        return present_indices(self.spec.output_db, self.spec, create=True)

    def merge(self, r: Range, result: RangeResult) -> int:
        try:
            return merge_range_db(self.spec, result.db, r, result.worker)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{result.db}{suffix}").unlink(missing_ok=True)


def merge_range_db(spec, part: Path, r: Range, worker: str) -> int:
    """Check the DB `part` played for range `r` by `worker` and merge it into the output DB:
    only games of this run (board, players, policy, seed), of this engine version, inside the
    range, and every game of the range present afterwards. Identities the output DB holds
    are skipped (GameDB.merge_from). Returns the games added. RangeLost for a DB that is
    unusable or incomplete, RingRiftError for another engine version (never mixed)."""
    from ..db import GameDB
    from ..db.errors import DBError
    from ..selfplay.runner import ENGINE_VERSION

    ident = dict(board=spec.board, num_players=spec.players, policy=spec.policy, seed=spec.seed)
    try:
        with GameDB(part, create=False) as p:  # a read-write open folds a -wal in
            total = p.count_games()
            ours = p.count_games(**ident)
            ours_here = p.count_games(**ident, engine_version=ENGINE_VERSION)
            indices = p.existing_indices(**ident) if ours else set()
    except DBError as exc:
        raise RangeLost(worker, f"the DB of range {r} is unusable: {exc}") from None
    if ours != total:
        raise RangeLost(worker, f"the DB of range {r} holds {total - ours} games of another run")
    if ours_here != ours:
        raise RingRiftError(f"{worker}: range {r} was played by another engine version than this machine's "
                            f"{ENGINE_VERSION}: refusing to merge mixed engine versions "
                            f"(install this build there: ringrift-pipeline cluster update, or pip)")
    if indices and (min(indices) < r.start or max(indices) >= r.end):
        raise RangeLost(worker, f"the DB of range {r} holds indices {min(indices)}..{max(indices)} "
                                f"outside the range")
    with GameDB(spec.output_db) as db:
        added = db.merge_from(part)
        have = IndexSet.from_indices(i for i in db.existing_indices(**ident) if r.start <= i < r.end)
    missing = r.count - have.count
    if missing:
        raise RangeLost(worker, f"its DB for range {r} lacks {missing} games")
    return added


class RangeScheduler:
    """Plays every missing range of `spec` through `executor` into `sink`; see the module notes."""

    def __init__(self, spec, executor: Executor, sink: Sink, state, logger: logging.Logger, *, progress=None,
                 err=None, max_attempts: int = MAX_ATTEMPTS, timeout: float | None = None):
        self.spec = spec
        self.executor = executor
        self.sink = sink
        self.state = state  # a PipelineState, or None (simulations, benchmarks)
        self.logger = logger
        self.progress = progress
        self.err = err
        self.max_attempts = max_attempts
        self.timeout = timeout if timeout is not None else getattr(spec, "timeout", None)
        self.present = IndexSet()
        self.already = 0
        self.new = 0
        self.merged: set = set()  # range starts merged in this run
        self.duplicates = 0  # results dropped because their range was merged already
        self.redispatched = 0
        self.attempts: dict = {}
        self.by_worker: dict = {}  # worker -> ranges merged
        self.in_flight_games: dict = {}  # range start -> games played so far
        self.t0 = time.perf_counter()
        self._shown = -1
        self._entries: dict = {}

    # -- reporting ----------------------------------------------------------------------------
    def say(self, msg: str, level=logging.INFO) -> None:
        self.logger.log(level, msg)
        if self.err is not None and level >= logging.WARNING:
            self.err.write(f"ringrift-pipeline: {msg}\n")
            self.err.flush()

    def _save(self, throttle: float = 0.0) -> None:
        if self.state is not None:
            self.state.save(throttle=throttle)

    def _worker(self, name: str) -> dict:
        if self.state is None:
            return {}
        return self.state.data["workers"].setdefault(
            name, {"status": "idle", "games": 0, "range": None, "ranges_done": 0, "games_merged": 0})

    def worker_entry(self, name: str) -> dict:
        """The state file's record of one worker or job slot (a scratch dict without a state
        file); executors may add fields (pid, error)."""
        return self._worker(name)

    def waiting(self, r: Range, worker: str | None = None) -> None:
        """An executor holds range `r` in a queue of its own (behind `worker`'s busy slots, or
        the P2P leader's): it is not playing yet."""
        entry = self._entries[r.start]
        entry["status"] = "queued"
        if worker is not None:
            entry["host"] = worker
        self._save(throttle=0.5)

    def record(self, key: str, value) -> None:
        """An executor's note in the state file (the P2P leader's URL and run id)."""
        if self.state is not None:
            self.state.data[key] = value
            self._save(throttle=0.5)

    def _report(self, r: Range):
        def report(worker: str, done: int, total: int, slot: str | None = None) -> None:
            self.in_flight_games[r.start] = done
            if self.state is not None:
                self._worker(slot or worker).update(status="running", range=[r.start, r.end], games=done,
                                                    todo=total)
                self._entries[r.start].update(host=worker, status="running")
            self._update_progress()
        return report

    def _update_progress(self) -> None:
        flight = sum(self.in_flight_games.values())
        if self.state is not None:
            self.state.data["games_completed"] = self.present.count
            self.state.data["games_in_flight"] = flight
            self._save(throttle=0.5)
        done = min(self.present.count + flight, self.spec.num_games)
        if self.progress and done != self._shown:
            self._shown = done
            elapsed = time.perf_counter() - self.t0
            self.progress(done, self.spec.num_games, (done - self.already) / elapsed if elapsed > 0 else 0.0)

    # -- the run ------------------------------------------------------------------------------
    async def run(self) -> dict:
        spec = self.spec
        self.present = await asyncio.to_thread(self.sink.present)
        self.already = self.present.within(0, spec.num_games).count
        ranges = split(spec.num_games, spec.games_per_worker)
        queue = deque()
        entries = []
        for r in ranges:
            todo = IndexSet.interval(r.start, r.end) - self.present
            entry = {"start": r.start, "end": r.end, "host": None, "status": "queued" if todo else "merged"}
            entries.append(entry)
            self._entries[r.start] = entry
            if todo:
                queue.append(r)
        if self.state is not None:
            self.state.data["ranges"] = entries
            self.state.data["executor"] = self.executor.name
            self.state.data["games_completed"] = self.present.count
            self._save()
        self.say(f"canonical_selfplay {spec.run_id}: {self.already}/{spec.num_games} games present, "
                 f"{len(queue)} of {len(ranges)} ranges to play through the {self.executor.name} executor")
        if not queue:
            return self.summary()
        self.executor.bind(self)
        try:
            await self.executor.open()
            try:
                await self._dispatch(queue)
            except NoWorkersLeft as exc:  # marked once the dispatch loop and the merger have stopped
                raise self._orphaned(exc) from None
            if self.present.covers(0, spec.num_games):
                await self.executor.finished(self.present)
        finally:
            await self.executor.close()
        if not self.present.covers(0, spec.num_games):  # a lost range that was never played again
            raise RingRiftError(f"{spec.num_games - self.present.within(0, spec.num_games).count} games are "
                                f"missing after every range finished; rerun to resume")
        return self.summary()

    async def _dispatch(self, queue: deque) -> None:
        """Keep up to capacity() ranges in flight; hand finished ones to the merger; requeue lost
        ones. Every wake-up is one event (an attempt or a merge ended), so the cost per range
        does not grow with the number of ranges in flight."""
        capacity = max(1, self.executor.capacity())
        running: dict = {}  # asyncio task -> range
        events: asyncio.Queue = asyncio.Queue()  # finished attempts; "merged" after each merge
        merges: asyncio.Queue = asyncio.Queue()
        merger = asyncio.create_task(self._merger(merges, queue, events))
        merging = 0
        stop = None  # NoWorkersLeft: dispatch nothing more, but let finished ranges merge first
        try:
            while True:
                while stop is None and queue and len(running) < capacity:
                    r = queue.popleft()
                    todo = IndexSet.interval(r.start, r.end) - self.present
                    if r.start in self.merged or not todo:
                        continue
                    n = self.attempts[r.start] = self.attempts.get(r.start, 0) + 1
                    self._entries[r.start].update(status="running", attempts=n)
                    t = asyncio.create_task(self._attempt(RangeTask(r, todo, n)))
                    t.add_done_callback(events.put_nowait)
                    running[t] = r
                if not running and not merging:
                    break
                ev = await events.get()
                if isinstance(ev, BaseException):  # the merger stopped the run
                    raise ev
                if ev == "merged":
                    merging -= 1
                    continue
                r = running.pop(ev)
                self.in_flight_games.pop(r.start, None)
                try:
                    result = ev.result()
                except RangeLost as exc:
                    self._lost(r, exc, queue)
                    continue
                except NoWorkersLeft as exc:
                    stop = stop or exc
                    continue
                merging += 1
                merges.put_nowait((r, result))
            if stop is not None:
                raise stop
        except BaseException:
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for r in running.values():
                self._entries[r.start]["status"] = "interrupted"
            self._save()
            raise
        finally:
            merger.cancel()
            await asyncio.gather(merger, return_exceptions=True)

    def _orphaned(self, exc: NoWorkersLeft) -> RingRiftError:
        left = [e for e in self._entries.values() if e["status"] != "merged"]
        for e in left:
            e["status"] = "orphaned"
        self._save()
        games = self.spec.num_games - self.present.within(0, self.spec.num_games).count
        return RingRiftError(f"{exc}: {games} games in {len(left)} ranges are unfinished; rerun the same command "
                             f"when one is back to resume")

    async def _attempt(self, task: RangeTask) -> RangeResult:
        if not self.timeout or self.executor.own_timeout:
            return await self.executor.run_range(task, self._report(task.range))
        try:
            return await asyncio.wait_for(self.executor.run_range(task, self._report(task.range)), self.timeout)
        except asyncio.TimeoutError:
            raise RangeLost("?", f"range {task.range} did not finish within timeout_seconds="
                                 f"{self.timeout:g}") from None

    def _lost(self, r: Range, exc: RangeLost, queue: deque) -> None:
        n = self.attempts.get(r.start, 0)
        entry = self._entries[r.start]
        if exc.worker != "?":
            self._worker(exc.slot or exc.worker).update(status="failed", error=exc.reason, range=None)
        if n >= self.max_attempts:
            entry.update(status="failed", error=exc.reason)
            self._save()
            raise RingRiftError(f"range {r} failed {n} times, last on {exc.worker}: {exc.reason}; rerun the same "
                                f"command to resume")
        self.redispatched += 1
        entry.update(status="queued", error=exc.reason)
        queue.append(r)
        self.say(f"range {r} lost on {exc.worker} ({exc.reason}); re-dispatched (attempt {n + 1})",
                 logging.WARNING)
        self._save(throttle=0.5)

    async def _merger(self, merges: asyncio.Queue, queue: deque, events: asyncio.Queue) -> None:
        """Merge finished ranges one at a time, in a thread, as they arrive; tell the dispatch
        loop after each ("merged", or the exception that must stop the run)."""
        while True:
            r, result = await merges.get()
            try:
                await self._merge_one(r, result, queue)
            except Exception as exc:  # RingRiftError (another engine version, max attempts), DBError, ...
                events.put_nowait(exc)
                return
            events.put_nowait("merged")

    async def _merge_one(self, r: Range, result: RangeResult, queue: deque) -> None:
        if r.start in self.merged:
            self.duplicates += 1
            self.logger.info(f"range {r} from {result.worker}: merged already, result dropped")
            return
        entry = self._entries[r.start]
        entry.update(status="merging", host=result.worker)
        try:
            added = await asyncio.to_thread(self.sink.merge, r, result)
        except RangeLost as exc:
            self._lost(r, exc, queue)
            return
        self.merged.add(r.start)
        self.new += added
        self.present = self.present | IndexSet.interval(r.start, r.end)
        entry.update(status="merged", host=result.worker)
        self.by_worker[result.worker] = self.by_worker.get(result.worker, 0) + 1
        w = self._worker(result.slot or result.worker)
        if self.state is not None:
            w.update(status="idle", range=None, games=0, todo=None, ranges_done=w.get("ranges_done", 0) + 1,
                     games_merged=w.get("games_merged", 0) + added, error=None)
        self.logger.info(f"{result.worker}: range {r} merged, {added} new games")
        self._update_progress()
        self._save(throttle=0.5)
        await self.executor.merged(r, result)

    def summary(self) -> dict:
        return {"target": self.spec.num_games, "already": self.already, "new": self.new,
                "seconds": time.perf_counter() - self.t0, "by_host": dict(self.by_worker),
                "redispatched": self.redispatched, "duplicates_dropped": self.duplicates}


def run_scheduler(sched: RangeScheduler) -> dict:
    """Run a RangeScheduler in a fresh event loop; SIGTERM cancels like Ctrl-C (the executor
    stops its remote work)."""

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError):
            pass
        try:
            return await sched.run()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError):
                pass

    try:
        summary = asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        parts = sched.spec.parts_dir() if hasattr(sched.spec, "parts_dir") else None
        try:
            if parts is not None and parts.is_dir() and not any(parts.iterdir()):
                parts.rmdir()
        except OSError:
            pass
    if sched.state is not None:
        for w in sched.state.data["workers"].values():
            if w.get("status") in ("idle", "running"):
                w["status"] = "done"
    return summary
