"""The `ssh` executor: seed ranges played by `python -m ringrift.pipeline worker` on the hosts
of the hosts file (over SSH, see ssh.py; `localhost` as a subprocess, see local.py).

Like every executor it only runs a range somewhere and hands back its DB; the scheduler
(../scheduler.py) owns the plan, re-dispatch, the merge and the state file. What is particular
to hosts:

* Slot preference. Every range of the run is dealt to a host by its position (one pass per job
  slot, `ranges.assign`), so a dry run can print the plan and a resumed run sends a range back
  to the host that holds its partial work. A range waits for a free slot of its host (each host
  runs at most `max_parallel_jobs` workers) while that host is healthy.
* Probing. `open()` probes every host (reachable, ringrift importable, this machine's build);
  a host that fails gets no work.
* Dropping. A host whose attempts fail HOST_FAILURES times in a row (unreachable, worker
  crashed, connection lost, `timeout_seconds` exceeded) is dropped for the rest of the run:
  the ranges waiting for it go to the healthy host with the fewest ranges, and a range that
  failed on a host is offered to another one when there is one. With no healthy host left the
  run stops (NoWorkersLeft) and a rerun resumes.
* Clean-up. Once a range's merge has committed, its worker DB is deleted on its host (unless
  `selfplay.keep_worker_dbs`); at the end, each healthy host's worker DBs of this run whose
  ranges are all merged (left by an earlier, interrupted run) are deleted too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from ...engine.errors import RingRiftError
from ...logfiles import LogFile
from ..ranges import IndexSet, Range, assign, split
from ..scheduler import Executor, NoWorkersLeft, RangeLost, RangeResult, RangeTask
from ..state import now_iso
from ..worker import parse_event
from .base import HostError

HOST_FAILURES = 2  # failed attempts in a row after which a host is dropped for the run


class HostsExecutor(Executor):
    name = "ssh"
    own_timeout = True  # a range queued behind its host's busy slots is not late

    def __init__(self, spec, handles: dict, backend, logs_dir: Path, *, host_failures: int = HOST_FAILURES):
        self.spec = spec
        self.handles = handles  # name -> HostHandle, the selfplay hosts in config order
        self.backend = backend
        self.logs_dir = logs_dir
        self.host_failures = max(1, host_failures)
        self.order = list(handles)
        ranges = split(spec.num_games, spec.games_per_worker)
        self.owner = {r.start: host for r, host in assign(ranges, [h.cfg for h in handles.values()]).items()}
        self.n_ranges = len(ranges)
        self.alive: list[str] = []
        self.free: dict[str, deque] = {}  # host -> its free slot numbers
        self.waiting: dict[str, deque] = {}  # host -> futures of ranges waiting for one of its slots
        self.busy: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.failed_on: dict[int, set] = {}  # range start -> hosts it failed on
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.host_logs: dict = {}
        self.cleanups: set = set()
        self.shipped = 0  # hosts the model of a net's policy was copied to

    # -- helpers ---------------------------------------------------------------------------
    def say(self, msg: str, level=logging.INFO) -> None:
        if self.sched is not None:
            self.sched.say(msg, level)

    def _worker(self, slot: str) -> dict:
        return self.sched.worker_entry(slot) if self.sched is not None else {}

    def host_log(self, host: str):
        fh = self.host_logs.get(host)
        if fh is None:
            path = self.logs_dir / f"selfplay_{host}_{self.stamp}.log"
            fh = self.host_logs[host] = LogFile.open(path, "ringrift-pipeline")  # a full disk: one warning
        return fh

    def capacity(self) -> int:
        # Every range is handed over at once and waits in its host's queue here, so a range
        # dealt to a busy host never holds back one dealt to an idle host.
        return max(1, self.n_ranges)

    # -- open: probe every host ------------------------------------------------------------
    async def open(self) -> None:
        from ..worker import build_id

        local_build = build_id()
        handles = list(self.handles.values())
        model = self.spec.model.sha256 if self.spec.model else None
        probes = await asyncio.gather(*(asyncio.wait_for(h.probe(model), h.cfg.connect_timeout + 120)
                                        for h in handles), return_exceptions=True)
        if model:  # a net's policy: every host that can play gets the model, once, before any range
            probes = await asyncio.gather(*(self._with_model(h, res, local_build) for h, res in zip(handles, probes)))
        for h, res in zip(handles, probes):
            if isinstance(res, BaseException):
                if isinstance(res, HostError):
                    reason = res.reason
                elif isinstance(res, asyncio.TimeoutError):
                    reason = "the probe timed out"
                else:
                    reason = str(res) or type(res).__name__
                self.say(f"host {h.name} is unavailable and gets no work: {reason}", logging.WARNING)
                self._worker(f"{h.name}/1").update(status="failed", error=reason)
            elif res.get("build") != local_build:
                reason = (f"runs ringrift {res.get('version')} build {res.get('build')}, this machine "
                          f"build {local_build}; run: ringrift-pipeline cluster update")
                self.say(f"host {h.name} gets no work: {reason}", logging.WARNING)
                self._worker(f"{h.name}/1").update(status="failed", error=reason)
            else:
                self.alive.append(h.name)
                slots = range(1, h.cfg.max_parallel_jobs + 1)
                self.free[h.name] = deque(slots)
                self.waiting[h.name] = deque()
                self.busy[h.name] = 0
                self.failures[h.name] = 0
                for k in slots:
                    self._worker(f"{h.name}/{k}").update(status="idle", games=0, range=None, error=None)
        if not self.alive:
            raise RingRiftError("no healthy host: every selfplay host failed its check (see above); "
                                "rerun when one is back to resume")

    # -- the model of a net's policy --------------------------------------------------------
    async def _with_model(self, h, probed, build: str):
        """The probe result of `h`, or the exception that keeps it from playing: a host without
        onnxruntime, or one the model could not be shipped to, gets no work."""
        if isinstance(probed, BaseException) or probed.get("build") != build:
            return probed
        info = probed.get("model") or {}
        if not info.get("onnxruntime"):
            python = getattr(h.cfg, "remote_python", None) or probed.get("executable") or "its python"
            return HostError(h.name, f"onnxruntime is not installed for {python} (policy {self.spec.policy} needs "
                                     f"it): pip install 'ringrift[train]' there")
        try:
            await self._ship(h, present=bool(info.get("present")))
        except HostError as exc:
            return exc
        return probed

    async def _ship(self, h, *, present: bool) -> None:
        """Copy the model to the host's models/<sha256>.onnx unless it holds it already; the host
        checks the copy's SHA-256 before it moves it into place (`model-install`)."""
        m = self.spec.model
        if present:
            self.say(f"{h.name}: has model {m.sha256[:12]} already: not shipped")
            return
        t0 = time.perf_counter()
        part = f"models/.{m.sha256}.{self.stamp}.part"
        await h.put(m.path, part)
        rc, out = await h.run(h.pipeline_argv(["model-install", "--work-dir", ".", "--sha256", m.sha256,
                                               "--part", part]), 120)
        res = next((parse_event(line) for line in reversed(out.strip().splitlines()) if parse_event(line)), None)
        if rc != 0 or not res or not res.get("ok"):
            why = (res or {}).get("error") or (out.strip().splitlines() or ["no output"])[-1]
            raise HostError(h.name, f"model {m.path.name} could not be installed: {why}")
        self.shipped += 1
        self.say(f"{h.name}: shipped model {m.sha256[:12]} ({m.size} bytes) in {time.perf_counter() - t0:.2f}s")

    # -- slots -----------------------------------------------------------------------------
    def _pick(self, r: Range, preferred: str) -> str:
        """The host for `r`: `preferred` while it is healthy and `r` has not failed there, else
        the healthy host with the fewest ranges (one `r` has not failed on, when there is one)."""
        avoid = self.failed_on.get(r.start, set())
        if preferred in self.alive and preferred not in avoid:
            return preferred
        if not self.alive:
            raise NoWorkersLeft("no healthy host left")
        candidates = [h for h in self.alive if h not in avoid] or self.alive
        target = min(candidates, key=lambda h: (len(self.waiting[h]) + self.busy[h], self.order.index(h)))
        if target != preferred:
            self.say(f"range {r} of {preferred} re-dispatched to {target}", logging.WARNING)
        return target

    async def _acquire(self, r: Range) -> tuple[str, int]:
        host = self.owner.get(r.start) or self.order[0]
        while True:
            host = self._pick(r, host)
            if self.free[host]:
                self.busy[host] += 1
                return host, self.free[host].popleft()
            fut = asyncio.get_running_loop().create_future()
            self.waiting[host].append(fut)
            if self.sched is not None:
                self.sched.waiting(r, host)
            try:
                k = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self.busy[host] += 1  # handed a slot as it was cancelled: give it back
                    self._release(host, fut.result())
                raise
            if k is not None:
                self.busy[host] += 1
                return host, k
            # None: the host was dropped while the range waited; pick another

    def _release(self, host: str, k: int) -> None:
        self.busy[host] -= 1
        if host not in self.alive:
            return
        waiters = self.waiting[host]
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(k)
                return
        self.free[host].append(k)

    def _failed(self, host: str, r: Range, reason: str) -> None:
        self.say(f"host {host} failed on range {r}: {reason}", logging.WARNING)
        self.failed_on.setdefault(r.start, set()).add(host)
        self.failures[host] += 1
        if host in self.alive and self.failures[host] >= self.host_failures:
            self.alive.remove(host)
            self.say(f"host {host} is dropped for the rest of the run after {self.failures[host]} failed "
                     f"attempt{'s' if self.failures[host] > 1 else ''}; its ranges go to the other hosts",
                     logging.WARNING)
            for fut in self.waiting[host]:
                if not fut.done():
                    fut.set_result(None)
            self.waiting[host].clear()

    # -- one range -------------------------------------------------------------------------
    async def run_range(self, task: RangeTask, report) -> RangeResult:
        r = task.range
        host, k = await self._acquire(r)
        slot = f"{host}/{k}"
        try:
            local = await self._play(self.handles[host], slot, task, report)
        except HostError as exc:
            self._failed(host, r, exc.reason)
            raise RangeLost(host, exc.reason, slot=slot) from None
        finally:
            self._release(host, k)
        self.failures[host] = 0
        return RangeResult(worker=host, slot=slot, db=local)

    async def _play(self, h, slot: str, task: RangeTask, report) -> Path:
        spec = self.spec
        r, todo = task.range, task.todo
        w = self._worker(slot)
        log = self.host_log(h.name)
        argv = spec.worker_argv(h.cfg, r, todo)
        log.write(f"# {now_iso()} range {r} ({todo.count} games): {h.command_line(argv)}\n")
        self.say(f"{h.name}: range {r}, {todo.count} games")
        report(h.name, 0, todo.count, slot=slot)
        proc = await h.start(argv)
        done_event = None
        tail: deque = deque(maxlen=8)

        async def follow():
            nonlocal done_event
            async for line in proc.lines():
                log.write(line + "\n")
                ev = parse_event(line)
                if ev is None:
                    tail.append(line)
                    continue
                kind = ev.get("event")
                if kind == "start":
                    proc.pid = ev.get("pid")
                    w["pid"] = proc.pid
                elif kind == "progress":
                    # games of the range played so far (those already present there count too)
                    report(h.name, int(ev.get("done", 0)), int(ev.get("total", todo.count)), slot=slot)
                elif kind == "done":
                    done_event = ev

        try:
            await asyncio.wait_for(follow(), spec.timeout)
        except asyncio.TimeoutError:
            await proc.kill()
            raise HostError(h.name, f"range {r} did not finish within timeout_seconds={spec.timeout:g}") from None
        except BaseException:
            await proc.kill()
            raise
        rc = await proc.wait()
        if rc is None:
            await proc.kill()
            raise HostError(h.name, f"connection lost while playing range {r}")
        if rc != 0 or done_event is None:
            last = " | ".join(tail) or "no output"
            raise HostError(h.name, f"worker for range {r} exited with status {rc}: {last}")
        w["status"] = "pulling"
        local = spec.parts_dir() / f"{h.name}_{r.tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{local}{suffix}").unlink(missing_ok=True)
        await h.fetch(spec.remote_db(r), local)
        log.write(f"# {now_iso()} range {r} pulled to {local}\n")
        return local

    # -- after the merge -------------------------------------------------------------------
    async def merged(self, r: Range, result: RangeResult) -> None:
        """The range is in the output DB: delete its worker DB on its host (in the background,
        so the next merge does not wait for SFTP)."""
        if self.spec.keep_worker_dbs:
            return
        h = self.handles[result.worker]
        t = asyncio.create_task(self._drop_worker_db(h, self.spec.remote_db(r), r))
        self.cleanups.add(t)
        t.add_done_callback(self.cleanups.discard)

    async def _drop_worker_db(self, h, rel: str, r: Range) -> None:
        """Delete a worker DB whose games are all in the output DB. A failure only warns: the
        games are safe, and the file is tried again by the sweep of a later run."""
        try:
            await h.remove_db(rel)
        except HostError as exc:
            self.say(f"{h.name}: could not delete the worker DB of range {r} after merging it ({exc.reason}); "
                     f"its games are merged, so {h.location(rel)} can be deleted by hand", logging.WARNING)
            return
        if self.sched is not None:
            self.sched.logger.info(f"{h.name}: deleted {h.location(rel)} (range {r} is merged)")

    async def finished(self, present: IndexSet) -> None:
        """Wait for the deletes, then sweep each healthy host's worker DBs of this run whose
        ranges are wholly merged (left behind by an earlier run), and the run's folder if that
        leaves it empty."""
        from ..orchestrator import range_of_db

        if self.cleanups:
            await asyncio.gather(*list(self.cleanups), return_exceptions=True)
        if self.spec.keep_worker_dbs:
            return
        folder = f"runs/{self.spec.run_id}"
        for name in list(self.alive):
            h = self.handles[name]
            try:
                found = await h.glob(f"{folder}/range_*.db")
            except HostError as exc:
                self.say(f"{name}: could not list its worker DBs to clean up: {exc.reason}", logging.WARNING)
                continue
            for rel in found:
                r = range_of_db(rel)
                if r is not None and present.covers(r.start, r.end):
                    await self._drop_worker_db(h, rel, r)
            await h.remove_dir_if_empty(folder)

    async def close(self) -> None:
        for t in list(self.cleanups):
            t.cancel()
        if self.cleanups:
            await asyncio.gather(*list(self.cleanups), return_exceptions=True)
        for fh in self.host_logs.values():
            fh.close()
        self.host_logs.clear()
        if self.backend is not None:
            await self.backend.close()
