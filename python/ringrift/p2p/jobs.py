"""The self-play jobs of one node.

A job plays a set of game indices of one run with the pipeline's own worker
(`python -m ringrift.pipeline worker ...`) as a subprocess in its own session, stdin a pipe
from the node (`--exit-on-stdin-eof`: a worker never outlives its node, even a SIGKILLed one).
The worker commits its games in whole batches (one transaction each) to a DB in the node's
data dir, so whatever was committed survives any crash. Each job has a JSON record beside it,
written atomically (temporary file, fsync, rename) by one writer thread, never on the event
loop. A node that restarts marks the jobs its previous life left running as `interrupted`,
folds their WAL into the DB and offers them for collection like finished ones.

Once the coordinator has merged a job's games into its range DB it marks the job collected and,
unless the run keeps worker DBs, asks for the job's DB to be deleted ("discard"). The request is
recorded before the file goes, so a node that dies in between deletes it when it restarts. The
job record and log stay (they are small, and tell what the job played).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from pathlib import Path

from .. import atomic
from . import TOKEN_ENV
from . import dbtools
from ..pipeline.models import model_rel
from ..pipeline.worker import parse_event

log = logging.getLogger("ringrift.p2p")

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")
ACTIVE = ("running",)
FINISHED = ("done", "failed", "killed", "interrupted")
PUBLIC_FIELDS = ("job_id", "run_id", "owner", "board", "players", "policy", "seed", "device", "lo", "hi", "total",
                 "slot", "status", "done", "games", "size", "sha256", "error", "collected", "discarded", "started_at",
                 "finished_at")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_json(path: Path, data: dict) -> None:
    atomic.write_text(path, json.dumps(data))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class JobManager:
    def __init__(self, data_dir: Path, node_id: str, max_jobs: int, boot: str):
        self.data_dir = data_dir
        self.node_id = node_id
        self.max_jobs = max_jobs
        self.boot = boot
        self.jobs_dir = data_dir / "jobs"
        self.jobs: dict[str, dict] = {}
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.killed: set[str] = set()
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-records")

    # -- records ----------------------------------------------------------------------------
    def db_path(self, job: dict) -> Path:
        return self.data_dir / job["db"]

    async def persist(self, job: dict) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, _write_json, self.jobs_dir / f"{job['job_id']}.json", dict(job))

    def public(self, job: dict) -> dict:
        return {k: job.get(k) for k in PUBLIC_FIELDS}

    def running(self) -> list[dict]:
        return [j for j in self.jobs.values() if j["status"] in ACTIVE]

    def free_slots(self) -> int:
        return max(0, self.max_jobs - len(self.running()))

    def listing(self, *, run_id: str | None = None, uncollected: bool = False, limit: int = 200) -> list[dict]:
        """Jobs, newest first, at most `limit` (status payloads stay small)."""
        out = []
        for j in sorted(self.jobs.values(), key=lambda j: j.get("started_at") or "", reverse=True):
            if run_id is not None and j.get("run_id") != run_id:
                continue
            if uncollected and j.get("collected"):
                continue
            out.append(self.public(j))
            if len(out) >= limit:
                break
        return out

    # -- start-up ---------------------------------------------------------------------------
    async def recover(self) -> None:
        """Load the job records; jobs a previous life of this node left running become
        `interrupted` with their committed games kept."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        records = await asyncio.to_thread(self._load_records)
        for job in records:
            self.jobs[job["job_id"]] = job
            if job["status"] in ACTIVE:
                pid = job.get("pid")
                if pid and str(self.db_path(job)) in _cmdline(pid):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    await asyncio.sleep(0.05)
                await self._seal(job, "interrupted", "the node stopped while the job ran")
                log.info("job %s was interrupted by a restart; %s committed games kept", job["job_id"], job["games"])
            elif job.get("discard") and not job.get("discarded"):  # the previous life died before deleting it
                await self._discard(job)

    def _load_records(self) -> list[dict]:
        out = []
        for p in sorted(self.jobs_dir.glob("*.json")):
            try:
                job = json.loads(p.read_text())
            except (OSError, ValueError):
                log.warning("ignoring unreadable job record %s", p)
                continue
            if isinstance(job, dict) and JOB_ID.match(str(job.get("job_id", ""))):
                out.append(job)
        return out

    # -- running ----------------------------------------------------------------------------
    async def start(self, spec: dict) -> tuple[dict, bool]:
        """Start the job `spec` (validated by the caller); (job, created). An existing job id
        returns that job; no free slot raises LookupError."""
        job_id = spec["job_id"]
        if job_id in self.jobs:
            return self.public(self.jobs[job_id]), False
        if spec.get("model_sha256") and not (self.data_dir / model_rel(spec["model_sha256"])).is_file():
            raise FileNotFoundError(f"model {spec['model_sha256'][:12]} is not on {self.node_id}: upload it first "
                                    f"(PUT /models/<sha256>)")
        if self.free_slots() <= 0:
            raise LookupError(f"no free job slot on {self.node_id} ({self.max_jobs} in use)")
        used = {j.get("slot") for j in self.running()}
        slot = min(s for s in range(1, self.max_jobs + 1) if s not in used)
        run_dir = spec.get("run_id") or "adhoc"
        job = {
            "job_id": job_id, "run_id": spec.get("run_id"), "owner": spec.get("owner"),
            "board": spec["board"], "players": spec["players"], "policy": spec["policy"], "seed": spec["seed"],
            "max_moves": spec["max_moves"], "batch_size": spec.get("batch_size"), "threads": spec.get("threads", 0),
            "device": spec.get("device", "cpu"),
            "model_sha256": spec.get("model_sha256"), "play_policy": spec.get("play_policy"),
            "indices": spec["indices"], "lo": spec["lo"], "hi": spec["hi"], "total": spec["total"], "slot": slot,
            "status": "running", "done": 0, "pid": None, "boot": self.boot, "started_at": now_iso(),
            "finished_at": None, "error": None, "db": f"runs/{run_dir}/{job_id}.db", "games": 0, "size": None,
            "sha256": None, "collected": False, "discarded": False,
        }
        self.jobs[job_id] = job
        path = self.db_path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.persist(job)  # the record exists before the worker does: a crash never orphans a DB
        argv = [sys.executable, "-m", "ringrift.pipeline", "worker", "--board", job["board"],
                "--players", str(job["players"]), "--policy", job.get("play_policy") or job["policy"],
                "--seed", str(job["seed"]),
                "--indices", job["indices"], "--max-moves", str(job["max_moves"]),
                "--threads", str(job["threads"] or 0), "--parallel-jobs", str(self.max_jobs),
                "--output-db", str(path), "--host-name", self.node_id, "--exit-on-stdin-eof"]
        if job["batch_size"]:
            argv += ["--batch-size", str(job["batch_size"])]
        if job.get("device", "cpu") != "cpu":
            argv += ["--device", job["device"]]
        if job.get("model_sha256"):  # the worker checks the file's hash before it plays
            argv += ["--model-sha256", job["model_sha256"]]
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # the worker needs no secret
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.data_dir, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=env, limit=1 << 20)
        except OSError as exc:
            job.update(status="failed", error=f"cannot start the worker: {exc.strerror or exc}",
                       finished_at=now_iso())
            await self.persist(job)
            return self.public(job), True
        job["pid"] = proc.pid
        self.procs[job_id] = proc
        asyncio.get_running_loop().run_in_executor(self._writer, _write_json,  # in order, not awaited
                                                   self.jobs_dir / f"{job_id}.json", dict(job))
        self.tasks[job_id] = asyncio.create_task(self._follow(job, proc))
        log.info("job %s started (pid %s): %s games of %s %sp seed %s", job_id, proc.pid, job["total"],
                 job["board"], job["players"], job["seed"])
        return self.public(job), True

    async def _follow(self, job: dict, proc) -> None:
        tail: deque = deque(maxlen=8)
        done_event = None
        log_path = self.data_dir / "jobs" / f"{job['job_id']}.log"
        try:
            with open(log_path, "ab", buffering=0) as out:
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break
                    out.write(raw)
                    line = raw.decode(errors="replace").rstrip("\n")
                    ev = parse_event(line)
                    if ev is None:
                        tail.append(line)
                        continue
                    if ev.get("event") == "progress":
                        job["done"] = int(ev.get("done", 0))
                    elif ev.get("event") == "done":
                        done_event = ev
                        job["done"] = job["total"]
            rc = await proc.wait()
        except asyncio.CancelledError:
            await self._kill_proc(proc)
            raise
        finally:
            self.procs.pop(job["job_id"], None)
        if job["job_id"] in self.killed:
            status, error = "killed", "killed on request"
        elif rc == 0 and done_event is not None:
            status, error = "done", None
        else:
            status, error = "failed", f"worker exited with status {rc}: {' | '.join(tail) or 'no output'}"
        await self._seal(job, status, error)
        log.info("job %s %s: %s games in its DB%s", job["job_id"], status, job["games"],
                 f" ({error})" if error else "")

    async def _seal(self, job: dict, status: str, error: str | None) -> None:
        try:
            info = await asyncio.to_thread(dbtools.seal, self.db_path(job))
            job.update(games=info["games"], size=info["size"], sha256=info["sha256"])
        except Exception as exc:  # noqa: BLE001  (a corrupt DB: nothing of it can be collected)
            job.update(games=0, size=None, sha256=None)
            status, error = "failed", f"{error + '; ' if error else ''}its DB is unusable: {exc}"
        job.update(status=status, error=error, finished_at=now_iso(), pid=None)
        await self.persist(job)

    async def _kill_proc(self, proc) -> None:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def kill(self, job_id: str) -> dict:
        job = self.jobs[job_id]
        proc = self.procs.get(job_id)
        if proc is not None and job["status"] in ACTIVE:
            self.killed.add(job_id)
            await self._kill_proc(proc)
            task = self.tasks.get(job_id)
            if task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(task), 10)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    pass
        return self.public(job)

    async def mark_collected(self, job_id: str, *, discard: bool = False) -> tuple[dict, str | None]:
        """Mark a finished job collected; with `discard` also delete its DB (its games are
        merged on the coordinator). Returns (job, why the delete failed or None)."""
        job = self.jobs[job_id]
        if job["status"] not in FINISHED:
            return self.public(job), None
        if not job.get("collected") or (discard and not job.get("discard")):
            job["collected"] = True
            job["discard"] = job.get("discard") or discard
            await self.persist(job)  # first the record: a crash from here on still deletes the file
        error = await self._discard(job) if job.get("discard") and not job.get("discarded") else None
        return self.public(job), error

    async def _discard(self, job: dict) -> str | None:
        """Delete a collected job's DB, -wal and -shm, then its run folder if nothing else is
        there. A failure is logged and returned, never raised: the games are safe elsewhere."""
        path = self.db_path(job)
        try:
            await asyncio.to_thread(dbtools.remove_db, path)
        except OSError as exc:
            why = f"cannot delete {path}: {exc.strerror or exc}"
            log.warning("job %s: %s (its games are collected, so the file can be deleted by hand)", job["job_id"], why)
            return why
        job["discarded"] = True
        await self.persist(job)
        log.info("job %s: deleted its DB %s (collected)", job["job_id"], path)
        # Checked and removed without yielding to the loop: no job of this run can start in between.
        if not any(j.get("run_id") == job.get("run_id") and j["status"] in ACTIVE for j in self.jobs.values()):
            try:
                path.parent.rmdir()  # only an empty folder goes
            except OSError:
                pass
        return None

    async def close(self) -> None:
        for job_id, proc in list(self.procs.items()):
            await self._kill_proc(proc)
        for t in list(self.tasks.values()):
            t.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self._writer.shutdown(wait=True)
