"""canonical_selfplay across hosts.

The target [0, N) is cut into seed ranges of `games_per_worker` games. Every range of the run is
dealt to a host by its position (one pass per job slot, see `ranges.assign`), so the plan is
known before anything starts and a resumed run sends a range back to the host that holds its
partial work. Each host runs at most `max_parallel_jobs` workers at once; a worker plays the
range's missing games into its own DB in the host's work_dir; when it finishes, the DB is
pulled (SFTP) and merged into the output DB (`GameDB.merge_from`: one transaction, duplicates
skipped), after checking that it holds only games of this run, of this range and of this
engine version. Once that merge has committed, the worker's DB is deleted on its host (unless
`selfplay.keep_worker_dbs`), so long runs do not fill the hosts' disks. A DB left behind (a
crash between a merge and its delete, a failed delete, a host that failed part-way through a
range another host then finished) holds only games that the output DB has; the sweep at the end
of a later run that uses the host deletes it.

A host that cannot be reached, whose build differs from this machine's, whose worker fails,
whose connection drops or whose range exceeds `timeout_seconds` is dropped for the rest of the
run, and its unfinished ranges go to the healthy host with the fewest queued ranges. Games are
deterministic in (board, players, policy, seed, index), so the replacement plays exactly the
games that were lost. Whatever is merged is done for good: a rerun skips it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..engine.errors import RingRiftError
from .backends import HostError
from .ranges import IndexSet, Range, assign, index_runs, split
from .state import now_iso
from .worker import parse_event


@dataclass
class SelfplaySpec:
    board: str
    players: int
    policy: str
    seed: int
    num_games: int
    max_moves: int
    output_db: Path
    games_per_worker: int
    timeout: float
    threads: int | None = None  # None: each host's `threads`, else the config's
    default_threads: int = 0
    batch_size: int | None = None
    keep_worker_dbs: bool = False  # config selfplay.keep_worker_dbs
    device: str = "cpu"  # cuda: hosts declaring capability gpu play on their GPU

    @property
    def run_id(self) -> str:
        return f"{self.board}_{self.players}p_{self.policy}_s{self.seed}"

    def identity(self) -> dict:
        return {"board": self.board, "num_players": self.players, "policy": self.policy, "seed": self.seed}

    def run_key(self) -> dict:
        return {"phase": "canonical_selfplay", "board": self.board, "players": self.players, "policy": self.policy,
                "seed": self.seed, "num_games": self.num_games, "output_db": str(self.output_db.resolve())}

    def remote_db(self, r: Range) -> str:
        return f"runs/{self.run_id}/range_{r.tag}.db"

    def parts_dir(self) -> Path:
        return self.output_db.parent / f".{self.output_db.name}.parts"

    def threads_for(self, cfg) -> int:
        if self.threads is not None:
            return self.threads
        return cfg.threads or self.default_threads

    def worker_argv(self, cfg, r: Range, todo: IndexSet) -> list[str]:
        argv = ["worker", "--board", self.board, "--players", str(self.players), "--policy", self.policy,
                "--seed", str(self.seed), "--indices", str(todo), "--max-moves", str(self.max_moves),
                "--threads", str(self.threads_for(cfg)), "--parallel-jobs", str(cfg.max_parallel_jobs),
                "--output-db", self.remote_db(r), "--host-name", cfg.name, "--exit-on-stdin-eof"]
        if self.batch_size:
            argv += ["--batch-size", str(self.batch_size)]
        if self.device != "cpu":
            argv += ["--device", self.device]
        return argv


_RANGE_DB = re.compile(r"(?:^|/)range_(\d+)_(\d+)\.db$")


def range_of_db(rel: str) -> Range | None:
    """The range a worker DB was named for (`runs/<run>/range_<start>_<end>.db`), or None."""
    m = _RANGE_DB.search(rel)
    return Range(int(m.group(1)), int(m.group(2))) if m else None


def selfplay_hosts(hosts, device: str = "cpu") -> list:
    workers = [h for h in hosts if h.role == "selfplay"]
    if not workers:
        raise RingRiftError("no host has role 'selfplay' in the hosts file; nothing can play the games")
    if device == "cuda":
        workers = [h for h in workers if "gpu" in h.capabilities]
        if not workers:
            raise RingRiftError("--device cuda: no selfplay host declares capability gpu in the hosts file "
                                "(capabilities: [cpu, gpu] on the GPU hosts)")
    return workers


def present_indices(path: Path, spec: SelfplaySpec, *, create: bool) -> IndexSet:
    """Indices of this run already in the output DB. Refuses a DB whose games of this run come
    from another engine version. With `create` false nothing is created or written: the file is
    read as immutable (no -wal/-shm appear), so a -wal left by a crashed writer is not seen."""
    from ..selfplay.runner import ENGINE_VERSION

    where = "board = ? AND num_players = ? AND policy = ? AND seed = ?"
    params = (spec.board, spec.players, spec.policy, spec.seed)

    def read(con):
        versions = {v for (v,) in con.execute(f"SELECT DISTINCT engine_version FROM games WHERE {where}", params)}
        return versions, index_runs(con.execute(f"SELECT game_index FROM games WHERE {where} ORDER BY game_index",
                                                params))

    from ..db.errors import DBError

    if create:
        from ..db import GameDB

        try:
            with GameDB(path) as db:
                versions, present = read(db.conn)
        except sqlite3.Error as exc:  # a page past the header is damaged
            raise DBError(f"{path}: not a readable game database ({exc})", path=str(path)) from None
    else:
        if not path.exists():
            return IndexSet()
        if path.is_dir():
            raise DBError(f"{path}: is a directory, not a game database", path=str(path))
        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                fmt = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if not fmt or fmt[0] != "ringrift-gamedb":
                    raise DBError(f"{path}: not a ringrift game database", path=str(path))
                versions, present = read(con)
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise DBError(f"{path}: not a readable game database ({exc})", path=str(path)) from None
    if versions - {ENGINE_VERSION}:
        raise RingRiftError(f"{path} holds games of this run from engine {', '.join(sorted(map(str, versions)))}; "
                            f"this is {ENGINE_VERSION}: refusing to mix engine versions in one run "
                            f"(use another --output-db or --seed)")
    return present


def plan_ranges(spec: SelfplaySpec, hosts, present: IndexSet):
    """[(range, host name, missing indices as an IndexSet)] for every range of the run, in order."""
    ranges = split(spec.num_games, spec.games_per_worker)
    owner = assign(ranges, hosts)
    return [(r, owner[r], IndexSet.interval(r.start, r.end) - present) for r in ranges]


def print_plan(spec: SelfplaySpec, handles: dict, plan, out) -> None:
    todo_ranges = [(r, h, t) for r, h, t in plan if t]
    done = sum(r.count - t.count for r, _, t in plan)
    w = out.write
    w(f"plan: canonical_selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}, "
      f"{spec.num_games} games into {spec.output_db}\n")
    hosts = ", ".join(f"{h.name} ({h.cfg.target()}, {h.cfg.max_parallel_jobs} job"
                      f"{'s' if h.cfg.max_parallel_jobs > 1 else ''})" for h in handles.values())
    w(f"  hosts: {hosts}\n")
    w(f"  {done} games already in the output DB; {sum(t.count for _, _, t in todo_ranges)} to play in "
      f"{len(todo_ranges)} of {len(plan)} ranges of up to {spec.games_per_worker}\n")
    parts = spec.parts_dir()
    for r, host, todo in plan:
        if not todo:
            w(f"  {r}  complete, skipped\n")
            continue
        h = handles[host]
        local = parts / f"{host}_{r.tag}.db"
        w(f"  {r}  {todo.count} games on {host}\n")
        w(f"    run:   {h.command_line(spec.worker_argv(h.cfg, r, todo))}\n")
        w(f"    pull:  {h.location(spec.remote_db(r))} -> {local}\n")
        w(f"    merge: {local} -> {spec.output_db} (then {local} is deleted)\n")
        if not spec.keep_worker_dbs:
            w(f"    clean: {h.location(spec.remote_db(r))} (and its -wal, -shm) is deleted on {host} once the "
              f"merge has committed\n")
    if spec.keep_worker_dbs:
        w("  worker DBs stay on the hosts after their merge (selfplay.keep_worker_dbs: true)\n")
    else:
        w(f"  worker DBs are deleted on the hosts after their merge (selfplay.keep_worker_dbs: false); at the end, "
          f"each healthy host's runs/{spec.run_id}/range_*.db whose games are all merged is deleted too\n")
    w(f"  each host runs at most max_parallel_jobs ranges at once; a host that fails, cannot be reached, runs "
      f"another build or exceeds {spec.timeout:g}s on a range is dropped and its unfinished ranges go to the "
      f"healthy host with the fewest queued ranges\n")


class _Scheduler:
    def __init__(self, queues: dict, order: list, log):
        self.queues = queues
        self.order = order
        self.alive = set(queues)
        self.inflight = 0
        self.orphans: list = []
        self.cond = asyncio.Condition()
        self.log = log
        self.redispatched: list = []

    async def next(self, host: str):
        async with self.cond:
            while True:
                if host not in self.alive:
                    return None
                q = self.queues[host]
                if q:
                    self.inflight += 1
                    return q.popleft()
                if self.inflight == 0 and not any(self.queues[h] for h in self.alive):
                    self.cond.notify_all()
                    return None
                await self.cond.wait()

    async def done(self):
        async with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    async def fail(self, host: str, r: Range | None):
        async with self.cond:
            if r is not None:
                self.inflight -= 1
            moved = ([r] if r is not None else []) + list(self.queues[host])
            self.queues[host].clear()
            self.alive.discard(host)
            for rr in moved:
                if not self.alive:
                    self.orphans.append(rr)
                    continue
                target = min(self.alive, key=lambda h: (len(self.queues[h]), self.order.index(h)))
                self.queues[target].append(rr)
                self.redispatched.append((rr, host, target))
                self.log(f"range {rr} of {host} re-dispatched to {target}")
            self.cond.notify_all()
            return moved


def say(logger, err, msg: str, level=logging.INFO) -> None:
    """Log a message; warnings and errors also go to `err` (the terminal) when given."""
    logger.log(level, msg)
    if err is not None and level >= logging.WARNING:
        err.write(f"ringrift-pipeline: {msg}\n")
        err.flush()


class Orchestrator:
    def __init__(self, spec: SelfplaySpec, handles: dict, state, logger: logging.Logger, logs_dir: Path,
                 progress=None, err=None):
        self.spec = spec
        self.handles = handles  # name -> HostHandle, the selfplay hosts in config order
        self.state = state
        self.logger = logger
        self.logs_dir = logs_dir
        self.progress = progress
        self.err = err
        self.present = IndexSet()
        self.merge_lock = asyncio.Lock()
        self.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.host_logs: dict = {}
        self.inflight: dict = {}
        self.played: dict = {}
        self.t0 = time.perf_counter()
        self.games_new = 0
        self._shown = -1

    # -- reporting -------------------------------------------------------------------------
    def say(self, msg: str, level=logging.INFO) -> None:
        say(self.logger, self.err, msg, level)

    def host_log(self, host: str):
        fh = self.host_logs.get(host)
        if fh is None:
            path = self.logs_dir / f"selfplay_{host}_{self.stamp}.log"
            fh = self.host_logs[host] = open(path, "a", buffering=1)
        return fh

    def _range_entry(self, r: Range) -> dict:
        for e in self.state.data["ranges"]:
            if e["start"] == r.start:
                return e
        raise KeyError(r)

    def _update_progress(self) -> None:
        done = self.present.count + sum(self.inflight.values())
        self.state.data["games_completed"] = self.present.count
        self.state.data["games_in_flight"] = sum(self.inflight.values())
        self.state.save(throttle=0.5)
        done = min(done, self.spec.num_games)
        if self.progress and done != self._shown:
            self._shown = done
            elapsed = time.perf_counter() - self.t0
            self.progress(done, self.spec.num_games, (done - self.already) / elapsed if elapsed > 0 else 0.0)

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> dict:
        spec = self.spec
        from .worker import build_id

        self.present = await asyncio.to_thread(present_indices, spec.output_db, spec, create=True)
        self.already = self.present.count
        plan = plan_ranges(spec, [h.cfg for h in self.handles.values()], self.present)
        self.state.data["ranges"] = [{"start": r.start, "end": r.end, "host": h,
                                      "status": "merged" if not t else "queued"} for r, h, t in plan]
        self.state.data["games_completed"] = self.present.count
        self.state.save()
        pending = [(r, h) for r, h, t in plan if t]
        self.say(f"canonical_selfplay {spec.run_id}: {self.already}/{spec.num_games} games present, "
                 f"{len(pending)} of {len(plan)} ranges to play on {', '.join(self.handles)}")
        if not pending:
            return self._summary()

        # Probe every host: reachable, ringrift importable, the same build as here.
        local_build = build_id()
        probes = await asyncio.gather(*(self._probe(h) for h in self.handles.values()), return_exceptions=True)
        healthy = []
        for h, res in zip(self.handles.values(), probes):
            w = self.state.worker(f"{h.name}/1")
            if isinstance(res, BaseException):
                if isinstance(res, HostError):
                    reason = res.reason
                elif isinstance(res, asyncio.TimeoutError):
                    reason = "the probe timed out"
                else:
                    reason = str(res) or type(res).__name__
                self.say(f"host {h.name} is unavailable and gets no work: {reason}", logging.WARNING)
                w.update(status="failed", error=reason)
            elif res.get("build") != local_build:
                reason = (f"runs ringrift {res.get('version')} build {res.get('build')}, this machine "
                          f"build {local_build}; run: ringrift-pipeline cluster update")
                self.say(f"host {h.name} gets no work: {reason}", logging.WARNING)
                w.update(status="failed", error=reason)
            else:
                healthy.append(h.name)
        if not healthy:
            self.state.save()
            raise RingRiftError("no healthy host: every selfplay host failed its check (see above); "
                                "rerun when one is back to resume")
        order = list(self.handles)
        queues = {name: deque() for name in healthy}
        sched = _Scheduler(queues, order, lambda m: self.say(m, logging.WARNING))
        for r, host in pending:
            if host in queues:
                queues[host].append(r)
            else:
                target = min(healthy, key=lambda n: (len(queues[n]), order.index(n)))
                queues[target].append(r)
                self._range_entry(r)["host"] = target
        self.state.save()

        tasks = []
        for name in healthy:
            for k in range(1, self.handles[name].cfg.max_parallel_jobs + 1):
                tasks.append(asyncio.create_task(self._slot(sched, self.handles[name], k)))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for fh in self.host_logs.values():
                fh.close()
        if sched.orphans or not self.present.covers(0, spec.num_games):
            left = spec.num_games - self.present.within(0, spec.num_games).count
            raise RingRiftError(f"no healthy host left: {left} games in {len(sched.orphans)} ranges are unfinished; "
                                f"rerun the same command when a host is back to resume")
        await self._sweep([n for n in healthy if n in sched.alive])
        summary = self._summary()
        summary["redispatched"] = len(sched.redispatched)
        return summary

    def _summary(self) -> dict:
        return {"target": self.spec.num_games, "already": self.already, "new": self.games_new,
                "seconds": time.perf_counter() - self.t0, "by_host": dict(self.played)}

    async def _probe(self, h):
        return await asyncio.wait_for(h.probe(), h.cfg.connect_timeout + 120)

    async def _slot(self, sched: _Scheduler, h, k: int):
        wname = f"{h.name}/{k}"
        w = self.state.worker(wname)
        w.update(status="idle", games=0, range=None, error=None, ranges_done=w.get("ranges_done", 0))
        while True:
            r = await sched.next(h.name)
            if r is None:
                if h.name in sched.alive:
                    w.update(status="done", range=None, games=0, todo=None)
                self.state.save()
                return
            entry = self._range_entry(r)
            entry.update(status="running", host=h.name)
            w.update(status="running", range=[r.start, r.end], games=0, todo=None)
            self.state.save()
            try:
                await self._play(h, wname, r)
            except HostError as exc:
                self.inflight.pop(wname, None)
                self.say(f"host {h.name} failed on range {r}: {exc.reason}", logging.WARNING)
                w.update(status="failed", error=exc.reason, range=None)
                entry.update(status="queued")
                await sched.fail(h.name, r)
                for rr, _src, tgt in sched.redispatched:
                    self._range_entry(rr)["host"] = tgt
                for rr in sched.orphans:
                    self._range_entry(rr).update(status="orphaned")
                self.state.save()
                return
            except asyncio.CancelledError:
                entry.update(status="interrupted")
                w.update(status="interrupted")
                raise
            entry.update(status="merged")
            w.update(status="idle", range=None, games=0, todo=None, ranges_done=w.get("ranges_done", 0) + 1)
            self.played[h.name] = self.played.get(h.name, 0) + 1
            self.state.save()
            # Only now, with the merge committed: a crash before this leaves the DB on the host.
            await self._drop_worker_db(h, self.spec.remote_db(r), r)
            await sched.done()

    async def _play(self, h, wname: str, r: Range):
        spec = self.spec
        todo = IndexSet.interval(r.start, r.end) - self.present
        if not todo:
            return
        w = self.state.worker(wname)
        log = self.host_log(h.name)
        argv = spec.worker_argv(h.cfg, r, todo)
        log.write(f"# {now_iso()} range {r} ({todo.count} games): {h.command_line(argv)}\n")
        self.say(f"{h.name}: range {r}, {todo.count} games")
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
                    w.update(games=int(ev.get("done", 0)), todo=int(ev.get("total", todo.count)))
                    self.inflight[wname] = int(ev.get("done", 0))
                    self._update_progress()
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
        w.update(status="pulling")
        local = spec.parts_dir() / f"{h.name}_{r.tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{local}{suffix}").unlink(missing_ok=True)
        await h.fetch(spec.remote_db(r), local)
        w.update(status="merging")
        async with self.merge_lock:
            added = await asyncio.to_thread(self._merge, local, r, h.name)
        self.inflight.pop(wname, None)
        self.games_new += added
        self.present = self.present | IndexSet.interval(r.start, r.end)
        log.write(f"# {now_iso()} range {r} merged: {added} new games\n")
        self.say(f"{h.name}: range {r} merged, {added} new games")
        self._update_progress()

    async def _drop_worker_db(self, h, rel: str, r: Range) -> None:
        """Delete a worker DB whose games are all in the output DB. A failure only warns: the
        games are safe, and the file is tried again by the sweep of a later run."""
        if self.spec.keep_worker_dbs:
            return
        try:
            await h.remove_db(rel)
        except HostError as exc:
            self.say(f"{h.name}: could not delete the worker DB of range {r} after merging it ({exc.reason}); "
                     f"its games are merged, so {h.location(rel)} can be deleted by hand", logging.WARNING)
            return
        self.logger.info(f"{h.name}: deleted {h.location(rel)} (range {r} is merged)")

    async def _sweep(self, names: list) -> None:
        """Delete this run's worker DBs on the given hosts whose ranges are wholly in the output
        DB (left behind by an earlier run, see the module notes), then the run's folder if that
        leaves it empty."""
        if self.spec.keep_worker_dbs:
            return
        folder = f"runs/{self.spec.run_id}"
        for name in names:
            h = self.handles[name]
            try:
                found = await h.glob(f"{folder}/range_*.db")
            except HostError as exc:
                self.say(f"{name}: could not list its worker DBs to clean up: {exc.reason}", logging.WARNING)
                continue
            for rel in found:
                r = range_of_db(rel)
                if r is not None and self.present.covers(r.start, r.end):
                    await self._drop_worker_db(h, rel, r)
            await h.remove_dir_if_empty(folder)

    def _merge(self, part: Path, r: Range, host: str) -> int:
        """The scheduler's checked merge (scheduler.merge_range_db), a failed check as the
        host's failure; the pulled DB is deleted once merged."""
        from .scheduler import RangeLost, merge_range_db

        try:
            added = merge_range_db(self.spec, part, r, host)
        except RangeLost as exc:
            raise HostError(host, exc.reason) from None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{part}{suffix}").unlink(missing_ok=True)
        return added


def run_orchestrator(orch) -> dict:
    """Run an Orchestrator (SSH) or a P2PDriver (anything with async run(), spec and backend) in a
    fresh event loop; SIGTERM cancels like Ctrl-C (remote workers are killed)."""

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError):
            pass
        try:
            return await orch.run()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError):
                pass
            backend = getattr(orch, "backend", None)
            if backend is not None:
                await backend.close()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        parts = orch.spec.parts_dir()
        try:
            if parts.is_dir() and not any(parts.iterdir()):
                parts.rmdir()
        except OSError:
            pass


def report_selfplay(ctx, spec, st, summary: dict, *, workers: str, unit: str) -> int:
    """Print and log a distributed self-play summary and mark the phase done in the state file.
    `workers` says where it ran ("3 hosts"), `unit` names one of them ("host", "node")."""
    from ..db import GameDB

    with GameDB(spec.output_db, readonly=True) as db:
        total = db.count_games(**spec.identity())
    secs = summary["seconds"]
    by_worker = ", ".join(f"{h}: {n}" for h, n in sorted(summary["by_host"].items())) or "-"
    lines = [
        f"selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}: {summary['new']} new games "
        f"({summary['already']} already present, target {spec.num_games}) on {workers}",
        f"  ranges played by {unit}: {by_worker}; re-dispatched: {summary.get('redispatched', 0)}",
        f"  time: {secs:.2f}s, {summary['new'] / secs if secs > 0 else 0:.1f} games/s",
        f"  database: {spec.output_db} ({total} games of this run)",
    ]
    for line in lines:
        print(line)
        ctx.logger.info(line)
    st.data["games_completed"] = total
    for wk in st.data["workers"].values():
        if wk.get("status") in ("idle", "running"):
            wk["status"] = "done"
    st.set_phase("canonical_selfplay", "done")
    return 0
