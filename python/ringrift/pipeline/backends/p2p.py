"""The p2p backend: canonical_selfplay through the leader of a `ringrift-p2p` cluster.

    ringrift-pipeline --backend p2p --p2p-leader http://node:8770 [--p2p-auth-token T] \\
        run canonical_selfplay --board square8 --num-games 100000

The p2p executor (`P2PExecutor`) is an executor of the scheduler (../scheduler.py), which
owns the plan, the checked merge into the output DB, re-dispatch and the state file, as for
every backend. "Running a range" here is the leader's job: the executor submits the run to the
leader (telling it which games the output DB already holds), the leader hands each range to a
live node with a free job slot, moves the range to another node when that one stops answering
(see `ringrift.p2p.leader`), and collects the job's DB; the executor downloads each collected
range DB (streamed) and hands it to the scheduler, and acknowledges it once merged. What is
merged is done for good: a rerun tells the leader to skip it. Reference: docs/p2p.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from ...p2p import TOKEN_ENV
from ...p2p.node import NODE_ID
from ...engine.errors import RingRiftError
from ..ranges import IndexSet, Range, coarsen, split
from ..scheduler import Executor, RangeLost, RangeResult, RangeTask
from .base import Backend, BackendUnavailable

POLL_S = float(os.environ.get("RINGRIFT_P2P_POLL_S", "0.3"))
RECONNECT_S = float(os.environ.get("RINGRIFT_P2P_RECONNECT_S", "30"))


def _check_url(url: str) -> str:
    u = urlparse(url)
    try:
        u.port  # noqa: B018 (a port out of 0..65535, or not a number, raises here, not at the first request)
    except ValueError:
        raise BackendUnavailable(f"--p2p-leader {url!r}: the port is not a port number (1-65535)") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise BackendUnavailable(f"--p2p-leader {url!r} is not a URL like http://host:8770")
    return url.rstrip("/")


class P2PBackend(Backend):
    name = "p2p"

    def __init__(self, *, leader: str | None = None, auth_token: str | None = None):
        if not leader:
            raise BackendUnavailable("--backend p2p needs --p2p-leader URL (a node of the cluster, e.g. "
                                     "http://host:8770)")
        try:
            import aiohttp  # noqa: F401
        except ImportError:  # pragma: no cover (a declared dependency)
            raise BackendUnavailable("the p2p backend needs aiohttp: pip install aiohttp") from None
        self.leader = _check_url(leader)
        self.token = auth_token or None

    def handle(self, cfg):
        raise BackendUnavailable("the p2p backend drives the cluster through its leader, not host by host; "
                                 "use --backend ssh for the hosts file")

    # -- talking to the leader --------------------------------------------------------------
    def client(self):
        from ...p2p.client import NodeClient

        return NodeClient(self.token, timeout=15.0)

    def _fail(self, url: str, tried: str, exc) -> RingRiftError:
        if getattr(exc, "status", None) == 401:
            return RingRiftError(f"the P2P leader at {url} refused the cluster token (HTTP 401 on {tried}): give "
                                 f"--p2p-auth-token or set {TOKEN_ENV}")
        if getattr(exc, "status", None) is None:
            return RingRiftError(f"Cannot connect to P2P leader at {url} (tried {tried}: {exc})")
        return RingRiftError(f"the P2P leader at {url} answered {tried} with {exc}")

    def cluster_status_now(self) -> tuple[str, dict]:
        """cluster_status with a client of its own, from synchronous code."""

        async def look():
            client = self.client()
            try:
                return await self.cluster_status(client)
            finally:
                await client.close()

        return asyncio.run(look())

    async def cluster_status(self, client) -> tuple[str, dict]:
        """(leader URL, its /cluster/status). The given node hands over to the leader it knows."""
        from ...p2p.client import NodeError

        url = self.leader
        tried = f"GET {url}/cluster/status"
        try:
            data = await client.get(f"{url}/cluster/status", timeout=10)
        except NodeError as exc:
            raise self._fail(url, tried, exc) from None
        lead = (data.get("leader") or {}).get("url")
        if lead and lead.rstrip("/") != url:
            try:
                data = await client.get(f"{lead}/cluster/status", timeout=10)
                url = lead.rstrip("/")
            except NodeError as exc:
                raise self._fail(lead, f"{tried} (which names {lead} as the leader), then GET "
                                       f"{lead}/cluster/status", exc) from None
        return url, data


def _token(args) -> str | None:
    return args.p2p_auth_token or os.environ.get(TOKEN_ENV) or None


class P2PExecutor(Executor):
    """Executor of the scheduler on a P2P cluster. `open()` submits the run's ranges to the leader
    (telling it which games the output DB already holds); the leader hands each range to a
    live node as a job and collects the job's DB. `run_range` waits for its range to be
    collected there and downloads that DB; the scheduler merges it, and `merged()` acknowledges
    it to the leader (which then deletes its copy). One poller follows the run on the leader:
    its events go to the log, its per-node progress to the scheduler."""

    name = "p2p"
    own_timeout = True  # the leader times out its jobs (timeout_seconds); a range waits here for its turn

    def __init__(self, backend: P2PBackend, spec):
        self.backend = backend
        self.spec = spec
        self.url = backend.leader
        self.run_id: str | None = None
        self.seq = 0
        self.client = None
        self.follower: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.collected: dict = {}  # range start -> future of the leader's record of it, once collected
        self.reporters: dict = {}  # range start -> the scheduler's progress callback
        self.running: dict = {}  # range start -> (node, slot) while the leader reports it running
        self.nodes: set = set()
        self.requeued = 0
        self.shipped = 0  # uploads of the net to the leader
        self._start_body: dict = {}
        self.n_ranges = len(split(spec.num_games, spec.games_per_worker))

    def say(self, msg: str, level=logging.INFO) -> None:
        if self.sched is not None:
            self.sched.say(msg, level)

    def capacity(self) -> int:
        return max(1, self.n_ranges)  # the leader decides what plays when; every range waits for it here

    def _skip(self) -> str:
        """What to tell the leader this side has: the merged indices of the target, in at most
        MAX_SPEC_RUNS runs (a coarser set only replays some games, which merge as duplicates)."""
        return str(coarsen(self.sched.present.within(0, self.spec.num_games)))

    # -- open: submit the run --------------------------------------------------------------
    async def open(self) -> None:
        from ..worker import build_id

        spec = self.spec
        self.client = self.backend.client()
        self.url, cluster = await self.backend.cluster_status(self.client)
        leader = cluster.get("leader") or {}
        self.say(f"P2P leader {leader.get('node_id')} at {self.url}; nodes: "
                 + ", ".join(f"{n['node_id']} ({'up' if n.get('alive') else 'down'})"
                             for n in cluster.get("nodes", [])))
        me = next((n for n in cluster.get("nodes", []) if n.get("node_id") == leader.get("node_id")), {})
        local_build = await asyncio.to_thread(build_id)
        if me.get("build") and me["build"] != local_build:
            raise RingRiftError(f"the P2P leader at {self.url} runs ringrift build {me['build']}, this machine "
                                f"build {local_build}: install the same build on both")
        self.sched.record("backend", {"name": "p2p", "leader": self.url})
        body = {"phase": "canonical_selfplay", "board": spec.board, "players": spec.players,
                "policy": spec.policy, "seed": spec.seed, "num_games": spec.num_games,
                "max_moves": spec.max_moves, "games_per_worker": spec.games_per_worker,
                "timeout": spec.timeout, "threads": spec.threads if spec.threads is not None
                else spec.default_threads, "skip": self._skip(),
                "keep_worker_dbs": spec.keep_worker_dbs}
        if spec.batch_size:
            body["batch_size"] = spec.batch_size
        if spec.device != "cpu":
            body["device"] = spec.device  # the leader sends these ranges to nodes with capability gpu
        if spec.model:  # a net's policy: games stored by the net's id, played from models/<sha256>.onnx
            body.update(model_sha256=spec.model.sha256, play_policy=spec.model.remote_policy)
        self._start_body = body
        await self._start()
        self.follower = asyncio.create_task(self._follow())

    async def _start(self) -> None:
        from ...p2p.client import NodeError

        deadline = time.monotonic() + 20
        moved = False
        while True:
            tried = f"POST {self.url}/pipeline/start"
            try:
                if self.spec.model:
                    tried = f"PUT {self.url}/models/{self.spec.model.sha256}"
                    await self._ship_model()
                    tried = f"POST {self.url}/pipeline/start"
                data = await self.client.post(f"{self.url}/pipeline/start", self._start_body, timeout=30)
                break
            except NodeError as exc:
                if exc.status == 409 and exc.body.get("leader") and not moved:
                    self.url = exc.body["leader"]["url"].rstrip("/")
                    moved = True
                    self.say(f"the leader is now {exc.body['leader']['node_id']} at {self.url}")
                    continue
                if exc.status == 409 and exc.body.get("retry") and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                raise self.backend._fail(self.url, tried, exc) from None
        run = data["run"]
        self.run_id = run["run_id"]
        self.sched.record("backend", {"name": "p2p", "leader": self.url, "run_id": self.run_id})
        self.say(f"run {self.run_id} {'started' if data.get('created') else 'resumed'} on the leader at {self.url}")

    async def _ship_model(self) -> None:
        """Upload the net to the leader unless it holds that hash already (content-addressed);
        the leader hands it on to each node that plays a range, once per node."""
        m = self.spec.model
        url = f"{self.url}/models/{m.sha256}"
        if await self.client.has(url):
            self.say(f"the leader at {self.url} has model {m.sha256[:12]} already: not shipped")
            return
        t0 = time.perf_counter()
        await self.client.upload(url, m.path)
        self.shipped += 1
        self.say(f"shipped model {m.sha256[:12]} ({m.size} bytes) to the leader at {self.url} in "
                 f"{time.perf_counter() - t0:.2f}s")

    # -- one range -------------------------------------------------------------------------
    async def run_range(self, task: RangeTask, report) -> RangeResult:
        from ...p2p.client import NodeError

        r = task.range
        if self.error is not None:
            raise self.error
        self.reporters[r.start] = report
        self.sched.waiting(r)  # until the leader reports it running on a node
        fut = self.collected.get(r.start)
        if fut is None or fut.done():
            fut = self.collected[r.start] = asyncio.get_running_loop().create_future()
        try:
            info = await fut
        finally:
            self.collected.pop(r.start, None)
        node = info.get("played_by") or info.get("node") or "?"  # "?": a range a restarted leader restored
        if node != "?" and (not isinstance(node, str) or not NODE_ID.match(node)):
            # the name goes into a local file name: a leader's "../../x" wrote and deleted files elsewhere
            raise RingRiftError(f"the P2P leader names the node of range {r.start} {node!r}, not a node id")
        slot = f"{node}/{info.get('slot') or 1}"
        self.nodes.add(node)
        local = self.spec.parts_dir() / f"p2p_{node}_{r.tag}.db"
        local.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{local}{suffix}").unlink(missing_ok=True)
        url = f"{self.url}/pipeline/runs/{self.run_id}/ranges/{r.start}/db"
        try:
            await self.client.download(url, local)
        except NodeError as exc:
            if exc.status is None:  # the leader is out of reach: wait for it to be collected again
                raise RangeLost(node, f"downloading range {r} from the leader: {exc}", slot=slot) from None
            raise self.backend._fail(self.url, f"GET {url}", exc) from None
        return RangeResult(worker=node, slot=slot, db=local)

    async def merged(self, r: Range, result: RangeResult) -> None:
        await self._ack(r.start)

    async def _ack(self, start: int) -> None:
        from ...p2p.client import NodeError

        try:
            await self.client.post(f"{self.url}/pipeline/ack", {"run_id": self.run_id, "start": start}, timeout=15)
        except NodeError as exc:
            self.say(f"could not acknowledge range starting at {start} to the leader ({exc}); it is merged here",
                     logging.WARNING)

    # -- following the run on the leader ---------------------------------------------------
    async def _status(self) -> dict:
        """The run's status, retried for RECONNECT_S while the leader cannot be reached; after a
        leader restart the run is started again (the leader resumes it)."""
        from ...p2p.client import NodeError

        deadline = None
        while True:
            tried = f"GET {self.url}/pipeline/status"
            try:
                st = await self.client.get(f"{self.url}/pipeline/status",
                                           params={"run_id": self.run_id, "since": str(self.seq)}, timeout=15)
                if deadline is None:
                    return st
                # Back after a loss (the leader may have restarted): tell it again what is merged
                # here, so it replays nothing that was delivered.
                self.say(f"the P2P leader at {self.url} answers again", logging.WARNING)
                self._start_body["skip"] = self._skip()
                await self._start()
                deadline = None
                continue
            except NodeError as exc:
                if exc.status == 404:  # the leader restarted without this run: start it again
                    self._start_body["skip"] = self._skip()
                    self.seq = 0
                    await self._start()
                    continue
                if exc.status is not None:
                    raise self.backend._fail(self.url, tried, exc) from None
                if deadline is None:
                    deadline = time.monotonic() + RECONNECT_S
                    self.say(f"lost the P2P leader at {self.url} ({exc}); retrying for {RECONNECT_S:g}s",
                             logging.WARNING)
                if time.monotonic() > deadline:
                    raise RingRiftError(f"Cannot connect to P2P leader at {self.url} (tried {tried} for "
                                        f"{RECONNECT_S:g}s: {exc}); merged games are kept, rerun the same command "
                                        f"to resume") from None
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        try:
            await self._follow_loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001  (handed to every range waiting here)
            self.error = exc
            for fut in self.collected.values():
                if not fut.done():
                    fut.set_exception(exc)

    async def _follow_loop(self) -> None:
        boot = None
        while True:
            st = await self._status()
            if boot is not None and st.get("coordinator_boot") != boot:
                self.seq = 0  # a restarted coordinator numbers its events afresh
            boot = st.get("coordinator_boot")
            self._events(st.get("events", []))
            self._mirror(st)
            present = self.sched.present
            for r in st.get("active_ranges", []):
                if r["status"] != "collected":
                    continue
                if present.covers(r["start"], r["end"]):
                    await self._ack(r["start"])  # merged here before the leader restarted
                    continue
                fut = self.collected.get(r["start"])
                if fut is not None and not fut.done():
                    fut.set_result(r)
            if st.get("status") == "failed":
                raise RingRiftError(f"the P2P run failed: {st.get('error')}; merged games are kept, rerun to resume")
            if st.get("status") == "stopped":
                raise RingRiftError("the P2P run was stopped on the leader; merged games are kept, rerun to resume")
            if st.get("status") == "done" and not present.covers(0, self.spec.num_games):
                left = self.spec.num_games - present.within(0, self.spec.num_games).count
                raise RingRiftError(f"the leader reports the run done but {left} games were not merged here; "
                                    f"rerun to resume")
            await asyncio.sleep(POLL_S)

    def _events(self, events: list) -> None:
        for ev in events:
            self.seq = max(self.seq, int(ev.get("seq", 0)))
            level = logging.WARNING if ev.get("level") in ("warning", "error") else logging.INFO
            self.say(f"leader: {ev.get('message')}", level)
            node = ev.get("node")
            if ev.get("kind") == "requeued":
                self.requeued += 1
                for n, slot, _ in list(self.running.values()):
                    if n == node:
                        self.sched.worker_entry(slot).update(status="failed", error=ev.get("message"), range=None)
            if ev.get("kind") == "dispatched" and node:
                self.nodes.add(node)

    def _mirror(self, st: dict) -> None:
        """The leader's per-range progress into the scheduler (state file, progress bar)."""
        now_running = {}
        active = {}
        for r in st.get("active_ranges", []):
            active[r["start"]] = r["status"]
            report = self.reporters.get(r["start"])
            if r["status"] != "running" or report is None or r["start"] not in self.collected:
                continue
            slot = f"{r['node']}/{r.get('slot') or 1}"
            now_running[r["start"]] = (r["node"], slot, Range(r["start"], r["end"]))
            report(r["node"], int(r.get("done") or 0), int(r.get("todo") or 0), slot=slot)
        for start, (node, slot, rng) in self.running.items():
            if start not in now_running:
                w = self.sched.worker_entry(slot)
                if w.get("status") == "running":
                    w.update(status="idle", range=None, games=0, todo=None)
                if start in self.collected and active.get(start, "queued") == "queued":
                    self.sched.waiting(rng)  # back in the leader's queue (its node was lost)
        self.running = now_running

    async def close(self) -> None:
        from ...p2p.client import NodeError

        if self.follower is not None:
            self.follower.cancel()
            await asyncio.gather(self.follower, return_exceptions=True)
        if self.client is None:
            return
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        if self.run_id and cancelling is not None and cancelling():  # Ctrl-C, SIGTERM: stop the jobs too
            try:
                await asyncio.wait_for(self.client.post(f"{self.url}/pipeline/stop", {"run_id": self.run_id}), 5)
            except (NodeError, asyncio.TimeoutError):
                pass
        await self.client.close()


def selfplay_p2p(ctx, spec, phases, run_key) -> int:
    """`run canonical_selfplay` (and the self-play step of `run all`) with --backend p2p."""
    from ..api import begin_distributed_selfplay, check_ranges, state_note, would_be_writable
    from ..orchestrator import present_indices, report_selfplay
    from ..scheduler import GameDBSink, RangeScheduler, run_scheduler

    check_ranges(spec)
    args = ctx.args
    backend = P2PBackend(leader=args.p2p_leader, auth_token=_token(args))
    if ctx.dry_run:
        would_be_writable(spec.output_db)
        present = present_indices(spec.output_db, spec, create=False)
        url, cluster = backend.cluster_status_now()
        plan = split(spec.num_games, spec.games_per_worker)
        todo = [r for r in plan if not present.covers(r.start, r.end)]
        print(f"plan: canonical_selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}, "
              f"{spec.num_games} games into {spec.output_db}")
        lead = cluster.get("leader") or {}
        nodes = ", ".join(f"{n['node_id']} ({','.join(n.get('capabilities') or [])}, {n.get('max_jobs')} job slots, "
                          f"{'up' if n.get('alive') else 'DOWN'})" for n in cluster.get("nodes", []))
        print(f"  through the P2P leader {lead.get('node_id')} at {url}; nodes: {nodes}")
        print(f"  {present.count} games already in the output DB; "
              f"{sum((IndexSet.interval(r.start, r.end) - present).count for r in todo)} to play in {len(todo)} of "
              f"{len(plan)} ranges of up to {spec.games_per_worker}")
        print("  the leader hands each range to a live node with a free job slot; a node that stops answering is "
              "marked down and its range goes to another")
        if spec.device == "cuda":
            gpu = [n["node_id"] for n in cluster.get("nodes", []) if "gpu" in (n.get("capabilities") or [])]
            print(f"  --device cuda: only nodes with capability gpu play, on their GPU: {', '.join(gpu) or 'NONE'}")
        if spec.model:
            from ..orchestrator import model_plan

            print(f"  {model_plan(spec)}: PUT to the leader's models/ (unless it holds that hash), which sends it to "
                  f"each node before that node's first range of the run (once per node; checked on arrival); only "
                  f"nodes with onnxruntime play")
        print(f"  each collected range: {url}/pipeline/runs/<run>/ranges/<start>/db -> {spec.parts_dir()} -> "
              f"merge into {spec.output_db}")
        if spec.keep_worker_dbs:
            print("  the jobs' DBs stay in the nodes' data dirs after collection (selfplay.keep_worker_dbs: true)")
        else:
            print("  each job's DB (and its -wal, -shm) is deleted on its node once the leader has merged it into the "
                  "range's DB (selfplay.keep_worker_dbs: false); the leader deletes the range's DB once it is merged "
                  "here")
        print(f"  {state_note(ctx)}")
        return 0
    st, bar = begin_distributed_selfplay(ctx, spec, phases, run_key)
    executor = P2PExecutor(backend, spec)
    sched = RangeScheduler(spec, executor, GameDBSink(spec), st, ctx.logger, progress=bar, err=sys.stderr)
    summary = run_scheduler(sched)
    if bar:
        bar.close()
    summary["redispatched"] = summary.get("redispatched", 0) + executor.requeued
    nodes = executor.nodes | set(summary["by_host"])
    return report_selfplay(ctx, spec, st, summary, workers=f"{len(nodes)} P2P nodes", unit="node")


def cluster_p2p(ctx) -> int:
    """`cluster list|health` through the leader; sync and update are SSH-backend commands."""
    sub = ctx.args.cluster_command
    if sub not in ("list", "health"):
        raise BackendUnavailable(f"cluster {sub} is not available with --backend p2p (the leader collects every range "
                                 f"DB itself; install ringrift on each node to update it)")
    backend = P2PBackend(leader=ctx.args.p2p_leader, auth_token=_token(ctx.args))
    if ctx.dry_run:
        print(f"plan: GET {backend.leader}/cluster/status (read only)")
        print("nothing was changed (--dry-run)")
        return 0
    url, cluster = backend.cluster_status_now()
    lead = cluster.get("leader") or {}
    print(f"P2P cluster of leader {lead.get('node_id')} at {url}:")
    rows = [("node", "url", "role", "status", "capabilities", "jobs", "load", "build")]
    bad = 0
    for n in cluster.get("nodes", []):
        ok = n.get("alive") and n.get("build_ok")
        bad += not ok
        status = "up" if n.get("alive") else "DOWN"
        rows.append((n["node_id"], n.get("url", ""), n.get("role", ""), status,
                     ",".join(n.get("capabilities") or []), f"{n.get('running')}/{n.get('max_jobs')}",
                     str(n.get("load")), f"{n.get('build')}{'' if n.get('build_ok') else ' (DIFFERS)'}"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    if sub == "health":
        total = len(cluster.get("nodes", []))
        print(f"{total - bad}/{total} nodes healthy")
        return 1 if bad else 0
    return 0
