"""The `local` executor: seed ranges played in this process on a thread pool, each into its
own part DB (the native engine releases the GIL while it plays). For a single machine, and the
reference the other executors are compared against; the scheduler (../scheduler.py) plans,
merges and keeps the state file."""

from __future__ import annotations

import asyncio
import socket
import threading

from ..scheduler import Executor, RangeLost, RangeResult, RangeTask


class _Stopped(Exception):
    pass


class LocalPoolExecutor(Executor):
    name = "local"

    def __init__(self, spec, workers: int | None = None):
        from ... import _core

        self.spec = spec
        cores = _core.hardware_threads()
        self.threads = spec.threads if spec.threads else (spec.default_threads or 1)
        self.workers = workers or max(1, cores // self.threads)
        self.host = socket.gethostname()
        self._stop = threading.Event()

    def capacity(self) -> int:
        return self.workers

    async def run_range(self, task: RangeTask, report) -> RangeResult:
        spec = self.spec
        parts = spec.parts_dir()
        parts.mkdir(parents=True, exist_ok=True)
        part = parts / f"local_{task.range.tag}.db"
        worker = f"localhost/{task.range.start}"

        def play():
            from ...db import GameDB
            from ..worker import selfplay_range

            for suffix in ("", "-wal", "-shm"):
                part.with_name(part.name + suffix).unlink(missing_ok=True)

            def progress(done, total):
                if self._stop.is_set():
                    raise _Stopped()
                report("localhost", done, total)

            with GameDB(part) as db:
                selfplay_range(db, board=spec.board, num_players=spec.players, seed=spec.seed, policy=spec.local_policy,
                               indices=task.todo, threads=self.threads, max_moves=spec.max_moves,
                               batch_size=spec.batch_size, host=self.host, progress=progress, device=spec.device)

        try:
            await asyncio.to_thread(play)
        except _Stopped:
            raise asyncio.CancelledError() from None
        except OSError as exc:
            raise RangeLost(worker, f"range {task.range}: {exc}") from None
        return RangeResult(worker="localhost", db=part)

    async def close(self) -> None:
        self._stop.set()
