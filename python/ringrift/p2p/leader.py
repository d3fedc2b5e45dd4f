"""The coordinator: runs of canonical_selfplay on the cluster.

A run cuts its target [0, N) into seed ranges (the pipeline's `ranges.split`). Every range
is played by one job at a time on a live node of the leader's build that has the capability
the run needs and a free job slot (most free slots first, then lowest load, then name).
Ranges are disjoint, so no index is ever handed to two live jobs.

When a job ends (done, failed, killed, or interrupted by its node's restart) the coordinator
streams the job's DB from its node, checks that it holds only games of this run, of this range
and of this engine version, and merges it into the range's DB in its own data dir (threads,
off the event loop; merges skip known identities). A range is `collected` when that DB holds
all its indices; the pipeline then downloads it and acknowledges it (`delivered`, written to the
run's run.json before the range's DB is deleted, so a restart never deals it again). Once a job's
games are merged into its range's DB (the merge has committed), the job is marked collected on
its node, which then deletes the job's DB unless the run keeps worker DBs (`keep_worker_dbs`);
a DB that was refused is never deleted.

A node that stops answering for `down_after` seconds is marked down and its running ranges go
back to the queue with the indices not yet collected; nothing committed is lost on a node that
comes back: when it rejoins, its finished and interrupted jobs are still in its data dir, and
the coordinator collects them (duplicates are skipped by the merge).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter, deque
from pathlib import Path

from .. import atomic
from ..pipeline.ranges import IndexSet, Range, iter_split
from . import dbtools
from .client import NodeError

log = logging.getLogger("ringrift.p2p")

MAX_FAILURES = 3
RANGE_STATUSES = ("queued", "running", "collecting", "collected", "delivered")
STATUS_RANGE_LIMIT = 1000
NONE = IndexSet()
SLICE = 200  # ranges handled between two yields to the event loop


def run_id_for(p: dict) -> str:
    key = json.dumps({k: p[k] for k in ("board", "players", "policy", "seed", "num_games", "max_moves",
                                        "games_per_worker")}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    # job ids extend the run id and allow only [A-Za-z0-9_.-]: a search or a net's policy
    # (gumbel:onnx:square8-<id>:sims=...) is shortened to those; the digest keeps ids apart
    policy = re.sub(r"[^A-Za-z0-9_.-]+", "-", p["policy"])[:48]
    return f"{p['board']}_{p['players']}p_{policy}_s{p['seed']}_{digest}"


class RangeState:
    def __init__(self, r: Range, todo: IndexSet):
        self.start, self.end = r.start, r.end
        self.todo = todo
        self.status = "queued"
        self.node: str | None = None
        self.slot: int | None = None
        self.job_id: str | None = None
        self.done = 0
        self.dispatches = 0
        self.failures = 0
        self.failed_on: set[str] = set()
        self.dispatched_at = 0.0
        self.kill_sent = False
        self.played_by: str | None = None
        self.pending = 0  # collections in flight
        self.error: str | None = None
        self.restored = False  # running on the word of run.json: its node has not been heard from yet

    @property
    def tag(self) -> str:
        return Range(self.start, self.end).tag

    def public(self) -> dict:
        return {"start": self.start, "end": self.end, "status": self.status, "node": self.node, "slot": self.slot,
                "job_id": self.job_id, "done": self.done, "todo": self.todo.count, "dispatches": self.dispatches,
                "played_by": self.played_by, "error": self.error}


class Run:
    def __init__(self, run_id: str, params: dict, run_dir: Path):
        self.run_id = run_id
        self.params = params
        self.dir = run_dir
        self.ident = {"board": params["board"], "num_players": params["players"], "policy": params["policy"],
                      "seed": params["seed"]}
        self.ranges: list[RangeState] = []
        self.by_start: dict[int, RangeState] = {}
        self.status = "running"
        self.error: str | None = None
        self.events: deque = deque(maxlen=200)
        self.seq = 0
        self.created = time.time()
        self.locks: dict[int, asyncio.Lock] = {}
        self.skips: list[IndexSet] = []  # indices the pipeline holds: the union of these
        self.persist_lock = asyncio.Lock()
        self.life = 0  # restores of this run: keeps the job ids of one life apart from the last's

    def event(self, kind: str, message: str, level=logging.INFO, **fields) -> None:
        self.seq += 1
        self.events.append({"seq": self.seq, "t": round(time.time(), 3), "kind": kind, "message": message,
                            "level": logging.getLevelName(level).lower(), **fields})
        log.log(level, "run %s: %s", self.run_id, message)

    def range_db(self, r: RangeState) -> Path:
        return self.dir / f"range_{r.tag}.db"

    def lock(self, start: int) -> asyncio.Lock:
        return self.locks.setdefault(start, asyncio.Lock())

    def counts(self) -> dict:
        out = {s: 0 for s in RANGE_STATUSES}
        out.update(Counter(r.status for r in self.ranges))
        return out

    def summary(self) -> dict:
        return {"run_id": self.run_id, "phase": "canonical_selfplay", "status": self.status, "error": self.error,
                "target": self.params["num_games"], "ranges": self.counts(),
                "games_pending": sum(r.todo.count for r in self.ranges if r.status in ("queued", "running",
                                                                                          "collecting"))}


class Coordinator:
    def __init__(self, node):
        self.node = node  # ringrift.p2p.node.Node
        self.runs: dict[str, Run] = {}
        self.collecting: set[str] = set()
        self.sem = asyncio.Semaphore(3)
        self.tasks: set[asyncio.Task] = set()
        self.start_lock = asyncio.Lock()
        self.avoid: dict[str, float] = {}  # node -> until when it gets no new job (it failed to answer one)

    @property
    def runs_dir(self) -> Path:
        return self.node.cfg.data_dir / "coordinator"

    # -- runs -------------------------------------------------------------------------------
    async def start_run(self, params: dict, skip: IndexSet, delivered=(), running=()) -> tuple[Run, bool]:
        """Start a run (or resume the running one of the same id). `skip`: indices the
        pipeline already holds; a restore also gives `delivered` (starts of ranges the pipeline
        acknowledged) and `running` ([start, node, job id] of the jobs the last life started)."""
        async with self.start_lock:
            return await self._start_run(params, IndexSet.from_indices(skip), delivered, running)

    async def _start_run(self, params: dict, skip: IndexSet, delivered, running=()) -> tuple[Run, bool]:
        # Work here is linear in ranges and index runs, never in games (a skip of [0, 3*10**7)
        # is one run); what is linear in ranges runs in a thread or yields to the loop, so a
        # request for the largest run never stalls the other requests.
        run_id = run_id_for(params)
        run = self.runs.get(run_id)
        if run is not None and run.status == "running":
            run.params["keep_worker_dbs"] = params.get("keep_worker_dbs", False)  # this pipeline's config decides
            run.skips.append(skip)  # their union is formed when the run is persisted, in a thread
            merged_there = []  # collected ranges the pipeline holds: their DBs go once run.json says so
            for k, r in enumerate(run.ranges):
                if k % SLICE == SLICE - 1:
                    await asyncio.sleep(0)  # a round may dispatch a queued range meanwhile: it then plays
                    # games the pipeline has, which its merge skips as duplicates
                if r.status == "queued" or (r.status == "running" and r.restored):
                    # a job only presumed from run.json is not waited for once the pipeline holds
                    # its games (it merged them before the restart; its node's copy may be gone)
                    r.todo = r.todo - skip
                    if not r.todo:
                        r.status, r.node, r.job_id, r.restored = "delivered", None, None, False
                elif r.status == "collected" and skip.covers(r.start, r.end):
                    r.status = "delivered"  # the pipeline merged it before it could acknowledge it
                    merged_there.append(r)
            run.event("resumed", f"the pipeline reconnected ({skip.count} games already at the pipeline)")
            self._check_finished(run)
            await self._persist(run)
            for r in merged_there:  # after the persist: see ack
                self._spawn(self._remove_range_db(run, r))
            return run, False
        # a run id seen before (stopped, done, or in an earlier life of this node): new job ids
        life = run.life + 1 if run is not None else await asyncio.to_thread(self._last_life, run_id)
        run = await self._new_run(run_id, params, skip, set(delivered))
        run.life = life
        self._await_jobs(run, running)
        self.runs[run_id] = run
        run.event("started", f"canonical_selfplay {params['board']} {params['players']}p policy={params['policy']} "
                             f"seed={params['seed']}: {params['num_games']} games in {len(run.ranges)} ranges, "
                             f"{sum(r.todo.count for r in run.ranges)} to play")
        self._check_finished(run)
        await self._persist(run)
        return run, True

    async def _new_run(self, run_id: str, params: dict, skip: IndexSet, delivered: set) -> Run:
        """A new run's ranges, built in slices between which the loop serves other requests
        (nothing else sees the run until it is complete)."""
        run = Run(run_id, params, self.runs_dir / run_id)
        run.skips = [skip]
        for k, r in enumerate(iter_split(params["num_games"], params["games_per_worker"])):
            if k % SLICE == SLICE - 1:
                await asyncio.sleep(0)
            rs = RangeState(r, IndexSet.interval(r.start, r.end) - skip)
            run.ranges.append(rs)
            run.by_start[r.start] = rs
        # Range DBs left by an earlier life of this run (a coordinator restart): keep their games.
        have = await asyncio.to_thread(self._existing, run) if run.dir.is_dir() else {}
        for k, rs in enumerate(run.ranges):
            if k % SLICE == SLICE - 1:
                await asyncio.sleep(0)
            got = have.get(rs.start, NONE)
            rs.todo = rs.todo - got
            if rs.start in delivered and not got:
                rs.todo = IndexSet()
            if not rs.todo:
                rs.status = "collected" if got else "delivered"
        return run

    def _last_life(self, run_id: str) -> int:
        """The life after the one recorded in the run's run.json (0 for a run never seen)."""
        try:
            return int(json.loads((self.runs_dir / run_id / "run.json").read_text()).get("life") or 0) + 1
        except (OSError, ValueError, TypeError, AttributeError):
            return 0

    def _existing(self, run: Run) -> dict:
        out = {}
        incoming = run.dir / "incoming"
        if incoming.is_dir():  # downloads cut short by a restart
            for p in incoming.iterdir():
                p.unlink(missing_ok=True)
        try:  # one listing of the run's folder, not one lookup per range
            names = {e.name for e in os.scandir(run.dir)}
        except OSError:
            names = set()
        for rs in run.ranges if names else ():
            path = run.range_db(rs)
            if path.name in names:
                try:
                    out[rs.start] = dbtools.present_in_file(path, run.ident, rs.start, rs.end)
                except Exception as exc:  # noqa: BLE001  (unusable: start that range afresh)
                    log.warning("run %s: ignoring unusable %s: %s", run.run_id, path, exc)
                    dbtools.remove_db(path)
        return out

    async def _persist(self, run: Run) -> None:
        async with run.persist_lock:  # one writer per run, the latest state last
            doc = {"run_id": run.run_id, "params": run.params, "skip": list(run.skips), "status": run.status,
                   "life": run.life, "delivered": [r.start for r in run.ranges if r.status == "delivered"],
                   "running": [[r.start, r.node, r.job_id] for r in run.ranges
                               if r.status in ("running", "collecting") and r.node and r.job_id]}
            await asyncio.to_thread(self._write_doc, run, doc)

    @staticmethod
    def _write_doc(run: Run, doc: dict) -> None:
        # here, in the thread: a fragmented skip has many runs
        union = IndexSet()
        for part in doc["skip"]:
            union = union | part
        doc = dict(doc, skip=str(union))  # (run.skips grows by one set per reconnect of the pipeline)
        run.dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run.dir / "run.json", json.dumps(doc))

    async def restore(self) -> None:
        """Runs that a previous life of this node was coordinating resume (their range DBs
        are kept; the jobs still on the nodes are adopted or collected)."""
        if not self.runs_dir.is_dir():
            return

        def read():
            docs = []
            for p in sorted(self.runs_dir.glob("*/run.json")):
                try:
                    docs.append(json.loads(p.read_text()))
                except (OSError, ValueError):
                    pass
            return docs

        for doc in await asyncio.to_thread(read):
            if doc.get("status") == "done":
                # Every range of a done run was delivered; a DB still here is one whose delete a
                # restart cut off after run.json said done (see ack): nothing reads it again.
                await asyncio.to_thread(self._sweep_done, str(doc.get("run_id") or ""))
            if doc.get("status") == "running" and isinstance(doc.get("params"), dict):
                try:
                    skip = await asyncio.to_thread(IndexSet.parse, doc.get("skip", ""))
                    run, _ = await self.start_run(doc["params"], skip, delivered=doc.get("delivered") or [],
                                                  running=doc.get("running") or [])
                    run.event("restored", "restored after a restart of the coordinator")
                except Exception as exc:  # noqa: BLE001
                    log.warning("cannot restore run %s: %s", doc.get("run_id"), exc)

    def _sweep_done(self, run_id: str) -> None:
        folder = self.runs_dir / run_id
        if not run_id or folder.parent != self.runs_dir or not folder.is_dir():
            return  # a run id that is no folder name of ours (a damaged run.json)
        for path in sorted(folder.glob("range_*.db")):
            log.info("run %s: removing %s, left by a restart after the run was done", run_id, path.name)
            dbtools.remove_db(path)

    def _await_jobs(self, run: Run, running: list) -> None:
        """The jobs the last life had started keep their ranges: a range is not dealt again
        until its node answers without that job, or stays silent past the grace of a
        restart (a node discovered late must not find its range played twice)."""
        now = time.monotonic()
        for entry in running:
            try:
                start, node_id, job_id = int(entry[0]), str(entry[1]), str(entry[2])
            except (TypeError, ValueError, IndexError):
                continue
            r = run.by_start.get(start)
            if r is None or r.status != "queued" or not r.todo:
                continue
            r.status, r.node, r.job_id, r.done, r.restored = "running", node_id, job_id, 0, True
            r.dispatched_at, r.kill_sent = now, False

    def stop(self, run: Run) -> None:
        if run.status == "running":
            run.status = "stopped"
            run.event("stopped", "stopped on request")
            for r in run.ranges:
                if r.status == "running" and r.node and r.job_id:
                    self._spawn(self._kill_job(r.node, r.job_id))
            self._spawn(self._persist(run))

    async def ack(self, run: Run, start: int) -> RangeState:
        r = run.by_start[start]
        if r.status == "collected":
            r.status = "delivered"
            self._check_finished(run)
            # run.json records the delivery before the range's DB goes. The other order left a
            # window in which a coordinator killed after the delete restored the range with
            # neither its DB nor its delivery, as a range to play: it was dealt again before the
            # pipeline reconnected with its skip, and its games were played twice. Killed in this
            # order's window, a restart finds the DB (the range is collected and acknowledged again).
            await self._persist(run)
            await self._remove_range_db(run, r)
        return r

    async def _remove_range_db(self, run: Run, r: RangeState) -> None:
        async with run.lock(r.start):
            await asyncio.to_thread(dbtools.remove_db, run.range_db(r))

    def _check_finished(self, run: Run) -> None:
        if run.status == "running" and all(r.status == "delivered" for r in run.ranges):
            run.status = "done"
            run.event("done", "every range delivered")

    def status(self, run: Run, since: int = 0) -> dict:
        out = run.summary()
        out["params"] = run.params
        out["coordinator_boot"] = self.node.boot
        out["num_ranges"] = len(run.ranges)
        active = [r.public() for r in run.ranges if r.status not in ("queued", "delivered")]
        out["active_ranges"] = active[:STATUS_RANGE_LIMIT]
        out["truncated"] = len(active) > STATUS_RANGE_LIMIT
        out["events"] = [e for e in run.events if e["seq"] > since]
        return out

    # -- the scheduler ----------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def tick(self, views: dict) -> None:
        """One scheduling round over the nodes' latest views {node_id: view}."""
        free = {n: v["free"] for n, v in views.items() if v["alive"] and v.get("build") == self.node.build}
        if not self.node.settled():  # first learn what the nodes are running (after a restart)
            free = {}
        now = time.monotonic()
        for n, until in list(self.avoid.items()):
            if until < now:
                del self.avoid[n]
            else:
                free.pop(n, None)
        for run in list(self.runs.values()):  # oldest run first; the slots are shared
            if run.status != "running":
                self._collect_strays(run, views, only_finished=True)
                continue
            self._follow(run, views)
            self._collect_strays(run, views)
            await self._dispatch(run, views, free)

    def _follow(self, run: Run, views: dict) -> None:
        now = time.monotonic()
        hb = self.node.cfg.heartbeat
        for r in run.ranges:
            if r.status != "running":
                continue
            v = views.get(r.node)
            if r.restored:
                if v is None or not v["alive"]:
                    if now - r.dispatched_at <= self._restart_grace():
                        continue
                else:
                    r.restored = False  # heard from: its jobs are known from here on
                    r.dispatched_at = now
            if v is None or not v["alive"]:
                self._requeue(run, r, f"node {r.node} failed on range [{r.start}, {r.end}): it stopped answering",
                              failure=False)
                continue
            job = v["jobs"].get(r.job_id)
            if job is None:
                if now - r.dispatched_at > 3 * hb + 2:
                    self._requeue(run, r, f"node {r.node} failed on range [{r.start}, {r.end}): it no longer knows "
                                          f"job {r.job_id}", failure=False)
                continue
            if job["status"] == "running":
                r.done = int(job.get("done") or 0)
                if not r.kill_sent and now - r.dispatched_at > run.params["timeout"]:
                    r.kill_sent = True
                    run.event("timeout", f"node {r.node} failed on range [{r.start}, {r.end}): not finished within "
                                         f"{run.params['timeout']:g}s; stopping its job", logging.WARNING)
                    self._spawn(self._kill_job(r.node, r.job_id))
                continue
            if r.job_id not in self.collecting:
                r.status = "collecting"
                self._start_collect(run, r.node, job, v, current=True)

    def _restart_grace(self) -> float:
        cfg = self.node.cfg
        return cfg.down_after + 3 * cfg.heartbeat + 2

    def _collect_strays(self, run: Run, views: dict, only_finished: bool = False) -> None:
        """Jobs of this run not (or no longer) tied to a range: finished ones of nodes that
        were marked down and came back are collected; running ones whose range waits in the
        queue are adopted."""
        current = {r.job_id for r in run.ranges if r.status in ("running", "collecting")}
        for node_id, v in views.items():
            if not v["alive"]:
                continue
            for job in v["jobs"].values():
                if job.get("run_id") != run.run_id or job["job_id"] in current or job["job_id"] in self.collecting:
                    continue
                r = run.by_start.get(job.get("lo"))
                if r is None or r.end != job.get("hi"):
                    continue
                if job["status"] == "running":
                    if not only_finished and r.status == "queued" and v.get("build") == self.node.build:
                        r.status, r.node, r.slot, r.job_id = "running", node_id, job.get("slot"), job["job_id"]
                        r.dispatched_at, r.kill_sent = time.monotonic(), False
                        run.event("adopted", f"range [{r.start}, {r.end}) adopts job {job['job_id']} running on "
                                             f"{node_id}")
                    continue
                if job.get("collected"):
                    continue
                self._start_collect(run, node_id, job, v, current=False)

    def _requeue(self, run: Run, r: RangeState, why: str, *, failure: bool) -> None:
        if failure:
            r.failures += 1
            if r.node:
                r.failed_on.add(r.node)
        prev = r.node
        r.status, r.node, r.slot, r.job_id, r.done, r.kill_sent = "queued", None, None, None, 0, False
        r.error, r.restored = why, False
        run.event("requeued", f"{why}; range [{r.start}, {r.end}) ({r.todo.count} games) goes back to the queue",
                  logging.WARNING, node=prev, start=r.start, end=r.end)
        if failure and r.failures >= MAX_FAILURES:
            run.status = "failed"
            run.error = (f"range [{r.start}, {r.end}) failed {r.failures} times (last on {prev}): {why}")
            run.event("failed", run.error, logging.ERROR)
            self._spawn(self._persist(run))

    async def _dispatch(self, run: Run, views: dict, free: dict) -> None:
        cap = run.params["capability"]
        able = [n for n in free if cap in views[n].get("capabilities", ())]
        if run.params.get("model_sha256"):  # a net's policy: nodes that can load the net
            able = [n for n in able if views[n].get("onnxruntime")]
        starts = []
        for r in run.ranges:
            if r.status != "queued" or not r.todo or r.pending:
                continue
            cands = [n for n in able if free[n] > 0]
            if not cands:
                break
            fresh = [n for n in cands if n not in r.failed_on] or cands
            target = min(fresh, key=lambda n: (-free[n], views[n].get("load", 0.0), n))
            free[target] -= 1
            r.dispatches += 1
            life = f"{run.life}." if run.life else ""
            job_id = f"{run.run_id}-{r.start:09d}-{life}{r.dispatches}"
            r.status, r.node, r.job_id, r.done = "running", target, job_id, 0
            r.dispatched_at, r.kill_sent = time.monotonic(), False
            starts.append(self._send(run, r, views[target], job_id))
        if starts:
            await self._persist(run)  # written before the jobs start: a restart waits for them
            await asyncio.gather(*starts)

    async def _send(self, run: Run, r: RangeState, view: dict, job_id: str) -> None:
        p = run.params
        spec = {"job_id": job_id, "run_id": run.run_id, "owner": self.node.node_id, "board": p["board"],
                "players": p["players"], "policy": p["policy"], "seed": p["seed"], "max_moves": p["max_moves"],
                "batch_size": p.get("batch_size"), "threads": p.get("threads") or 0,
                "device": p.get("device", "cpu"), "indices": str(r.todo), "range": [r.start, r.end]}
        if p.get("model_sha256"):  # a net's policy: the node gets the model first (Node.call_start_job)
            spec.update(model_sha256=p["model_sha256"], play_policy=p["play_policy"])
        node_id = r.node
        try:
            job = await self.node.call_start_job(view, spec)
        except NodeError as exc:
            if r.job_id == job_id and r.status == "running":
                if exc.status == 409:  # no free slot after all: try again next round
                    r.status, r.node, r.job_id = "queued", None, None
                else:
                    if exc.status is None:  # no answer: give it no more work until it is marked down or back
                        self.avoid[node_id] = time.monotonic() + self.node.cfg.down_after
                    self._requeue(run, r, f"node {node_id} failed on range [{r.start}, {r.end}): cannot start "
                                          f"the job: {exc}", failure=False)
            return
        if r.job_id == job_id:
            r.slot = job.get("slot")
            run.event("dispatched", f"range [{r.start}, {r.end}) ({r.todo.count} games) to {node_id} "
                                    f"(slot {r.slot}, job {job_id})", node=node_id, start=r.start, end=r.end,
                      slot=r.slot)

    async def _kill_job(self, node_id: str, job_id: str) -> None:
        try:
            await self.node.call_node(node_id, "POST", f"/jobs/{job_id}/kill", {})
        except NodeError as exc:
            log.warning("cannot stop job %s on %s: %s", job_id, node_id, exc)

    def _start_collect(self, run: Run, node_id: str, job: dict, view: dict, *, current: bool) -> None:
        """Collect a job's games; until that is done its range is not dispatched again (so a
        rejoined node's finished games are never played twice)."""
        if job["job_id"] in self.collecting:
            return
        self.collecting.add(job["job_id"])
        run.by_start[job["lo"]].pending += 1
        self._spawn(self._collect(run, node_id, job, view, current=current))

    async def _collect(self, run: Run, node_id: str, job: dict, view: dict, *, current: bool = True) -> None:
        job_id = job["job_id"]
        r = run.by_start[job["lo"]]
        try:
            async with self.sem:
                added, have, why = await self._pull_and_merge(run, r, node_id, job, view)
        except NodeError as exc:
            # The node went away mid-download: the job stays uncollected there, and is
            # collected when the node is back; the range itself is re-queued by _follow.
            log.warning("run %s: cannot collect job %s from %s: %s", run.run_id, job_id, node_id, exc)
            if current and r.job_id == job_id and r.status == "collecting":
                r.status = "running"
            return
        finally:
            self.collecting.discard(job_id)
            r.pending -= 1
        if why is None:
            r.todo = r.todo - have
            if added or not current:
                run.event("collected", f"{added} new games of job {job_id} from {node_id} "
                                       f"({job['status']}{', after its node rejoined' if not current else ''})")
        else:
            run.event("rejected", f"the DB of job {job_id} from {node_id} was refused: {why}", logging.WARNING)
        if not current or r.job_id != job_id:
            if r.status == "queued" and not r.todo:
                r.status = "collected"
            return
        if not r.todo:
            r.status, r.played_by, r.error = "collected", node_id, None
            r.node, r.job_id, r.done = node_id, job_id, int(job.get("total") or r.done)
        elif job["status"] in ("failed", "killed") or why is not None:
            reason = why or job.get("error") or job["status"]
            self._requeue(run, r, f"node {node_id} failed on range [{r.start}, {r.end}): {reason}", failure=True)
        else:
            self._requeue(run, r, f"job {job_id} on {node_id} ended {job['status']} with {r.todo.count} games "
                                  f"of range [{r.start}, {r.end}) missing", failure=job["status"] == "done")

    async def _pull_and_merge(self, run: Run, r: RangeState, node_id: str, job: dict, view: dict):
        """(games added, indices of the range now held, refusal reason or None)."""
        from ..selfplay.runner import ENGINE_VERSION

        job_id = job["job_id"]
        if r.status in ("collected", "delivered") and r.job_id != job_id:
            # Its range is complete already: its games are duplicates; nothing to fetch.
            await self._mark_collected(run, node_id, job_id)
            return 0, IndexSet(), None
        if not job.get("games"):
            await self._mark_collected(run, node_id, job_id)
            return 0, IndexSet(), None
        local = node_id == self.node.node_id
        if local:
            src = self.node.jobs.db_path(self.node.jobs.jobs[job_id])
        else:
            src = run.dir / "incoming" / f"{job_id}.db"
            await self.node.client.download(f"{view['url']}/jobs/{job_id}/db", src, size=job.get("size"),
                                            sha256=job.get("sha256"))
        why = None
        added, have = 0, IndexSet()
        try:
            async with run.lock(r.start):
                def work():
                    dbtools.check_job_db(src, run.ident, r.start, r.end, ENGINE_VERSION)
                    return dbtools.merge_into(run.range_db(r), src, run.ident, r.start, r.end)

                try:
                    added, have = await asyncio.to_thread(work)
                except ValueError as exc:
                    why = str(exc)
        finally:
            if not local:
                await asyncio.to_thread(dbtools.remove_db, src)
        # The merge has committed (or the DB was refused, which keeps it on its node).
        await self._mark_collected(run, node_id, job_id, refused=why is not None)
        return added, have, why

    async def _mark_collected(self, run: Run, node_id: str, job_id: str, *, refused: bool = False) -> None:
        """Tell the node its job is collected, and to delete the job's DB unless the run keeps
        worker DBs or the DB was refused. A node that cannot delete it only earns a warning."""
        discard = not refused and not run.params.get("keep_worker_dbs", False)
        try:
            res = await self.node.call_node(node_id, "POST", f"/jobs/{job_id}/collected", {"discard": discard})
        except NodeError as exc:
            log.warning("cannot mark job %s collected on %s: %s", job_id, node_id, exc)
            return
        if res.get("discard_error"):
            run.event("cleanup", f"node {node_id} could not delete the DB of job {job_id} after it was collected "
                                 f"({res['discard_error']}); its games are safe", logging.WARNING, node=node_id)

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
