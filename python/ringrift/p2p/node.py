"""One `ringrift-p2p` node: an aiohttp server, its membership view, the leader election, its
own self-play jobs, and the coordinator of the runs started through it.

Membership: every `heartbeat` seconds a node announces itself by UDP (see `discovery`) and polls
`GET /node/state` of every node it knows (static peers, discovered ones, and the peers those
list): a small, bounded JSON document. A peer that has not answered for `down_after` seconds
is down. The leader is, among the live nodes, the one with the highest `--priority`, then the
earliest start, then the smallest name; every node computes the same answer from the same view.
A run stays with the node that accepted it until it ends.

Event-loop hygiene: no handler reads a DB or a file into memory; DB work and file hashing run in
threads, workers are subprocesses, downloads are streamed (`web.FileResponse`), request bodies
are capped at 1 MiB, and a monitor task measures how late the loop wakes up (`/health`).
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import logging
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .. import BOARDS, POLICIES, __version__
from ..pipeline.models import SHA256, ModelError, model_of_policy, model_path_ok, onnxruntime_version
from ..pipeline.ranges import MAX_GAMES, MAX_SEED, MAX_SPEC_RUNS, IndexSet, check_range_count
from . import PROTOCOL_VERSION, dbtools
from .auth import bearer_ok
from .client import NodeClient, NodeError
from .discovery import Discovery
from .httpbody import BodyStalled, end_connection, iter_body
from .jobs import FINISHED, JOB_ID, JobManager
from .leader import Coordinator
from .models import ModelStore
from .netaddr import url_host

log = logging.getLogger("ringrift.p2p")

PHASES = ("canonical_selfplay", "parity_validation", "npz_export")
CLUSTER_PHASES = ("canonical_selfplay",)
CAPABILITIES = ("cpu", "gpu")
MAX_BODY = 1 << 20
MAX_DEPTH = 4  # the deepest body of this API is {"range": [a, b]}: 2
MAX_CONTAINERS = 1000  # arrays and objects in one body (brackets counted before parsing)
LONG_SPEC = 4096  # index specs longer than this are parsed in slices, yielding to the loop between them
SPEC_SLICE = 250  # index runs parsed per slice
MAX_PEERS = 256
# Seconds a connection gets to deliver a complete request head, from its opening and again after
# each answer (then it is an idle keep-alive connection): a socket that sends nothing, or header
# bytes one at a time, would otherwise hold one of the node's file descriptors for ever.
HEADER_TIMEOUT = 10.0
DEFAULT_MAX_MOVES = {"square8": 2000, "hex8": 2000, "square19": 10000, "hexagonal": 10000}
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A job's game indices must be below MAX_GAMES (2^62), where the native runners stop: refused here,
# not by the worker after the job was accepted.
INDEX_LIMIT = f"game indices are below 2^62 = {MAX_GAMES}, the native runners' limit"


@dataclass
class NodeConfig:
    node_id: str
    data_dir: Path
    bind: list[str]
    port: int
    advertise: str  # base URL other nodes and the pipeline use
    peers: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=lambda: ["cpu"])
    max_jobs: int = 1
    token: str | None = None
    require_auth: bool = False
    priority: int = 0
    heartbeat: float = 1.0
    down_after: float = 10.0
    discovery: bool = True
    discovery_bind: str = "0.0.0.0"
    discovery_port: int = 8771
    discovery_targets: list[tuple[str, int]] = field(default_factory=list)
    header_timeout: float = HEADER_TIMEOUT  # see HEADER_TIMEOUT (tests give less)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.extra = extra or {}


def peer_state_ok(d) -> bool:
    """A peer's /node/state answer has the types this node computes with (leader election, the
    coordinator's views): one wrong field once made every endpoint answer 500 and stopped rounds."""
    def num(v, lo=-1e18, hi=1e18):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi

    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20

    return (isinstance(d, dict) and isinstance(d.get("node_id"), str)
            and num(d.get("priority", 0), -1 << 31, 1 << 31) and num(d.get("started_at", 0))
            and count(d.get("free", 0)) and num(d.get("load", 0.0), 0)
            and (d.get("max_jobs") is None or count(d.get("max_jobs"))) and count(d.get("running", 0))
            and isinstance(d.get("peers", []), list) and isinstance(d.get("jobs", []), list)
            and isinstance(d.get("capabilities", []), list) and all(isinstance(c, str) for c in d.get("capabilities", [])))


def _json(data: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _field(body: dict, name: str, typ, *, default=None, required=False, check=None, what: str = ""):
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(f"missing field {name!r}{f' ({what})' if what else ''}")
        return default
    v = body[name]
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise BadRequest(f"field {name!r} must be an integer{f' ({what})' if what else ''}, got {json.dumps(v)[:40]}")
    if typ is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise BadRequest(f"field {name!r} must be a number{f' ({what})' if what else ''}, got {json.dumps(v)[:40]}")
    if typ is bool and not isinstance(v, bool):
        raise BadRequest(f"field {name!r} must be true or false{f' ({what})' if what else ''}, "
                         f"got {json.dumps(v)[:40]}")
    if typ is str and not isinstance(v, str):
        raise BadRequest(f"field {name!r} must be a string{f' ({what})' if what else ''}, got {json.dumps(v)[:40]}")
    if check is not None and not check(v):
        raise BadRequest(f"field {name!r}: {json.dumps(v)[:60]} is not {what or 'valid'}")
    return v


def _only(body: dict, allowed) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise BadRequest(f"unknown field{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                         f"(known: {', '.join(sorted(allowed))})")


def _nesting_ok(value, limit: int) -> bool:
    """Whether `value` nests at most `limit` arrays/objects deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > limit:
                return False
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return True


async def _body(request: web.Request, stall: float) -> dict:
    """The request's JSON object: 415 unless it is sent as JSON, 413 over MAX_BODY bytes, 408
    when its bytes stop coming for `stall` s, 400 for anything that is not a flat enough JSON
    object (the bodies of this API nest at most MAX_DEPTH deep, so a deeper one is refused
    before anything walks it)."""
    if request.content_type != "application/json":
        raise BadRequest(f"the request body must be JSON (Content-Type: application/json), not "
                         f"{request.content_type}", 415)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
    parts, size = [], 0
    try:
        async for chunk in iter_body(request, stall):
            size += len(chunk)
            if size > MAX_BODY:
                raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
            parts.append(chunk)
    except BodyStalled as exc:
        end_connection(request)
        raise BadRequest(str(exc), 408) from None
    raw = b"".join(parts)
    if not raw.strip():
        raise BadRequest("empty request body: a JSON object is required")
    if raw.count(b"[") + raw.count(b"{") > MAX_CONTAINERS:
        raise BadRequest(f"request body nests more than {MAX_CONTAINERS} arrays and objects")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if not _nesting_ok(body, MAX_DEPTH):
        raise BadRequest(f"request body nests deeper than {MAX_DEPTH} levels")
    return body


def _parse_now(text: str, name: str, within: int | None = None) -> IndexSet:
    try:
        out = IndexSet.parse(text, max_runs=MAX_SPEC_RUNS)
    except ValueError as exc:
        raise BadRequest(f"field {name!r}: {exc}") from None
    return out if within is None else out.within(0, within)


async def _parse_indices(text: str, name: str, within: int | None = None) -> IndexSet:
    """An index-runs field of a request as an IndexSet, clipped to [0, within) if given. The
    work is linear in the text; a long text is parsed in slices on the loop, yielding between
    them (a worker thread would contend for the GIL and stall the loop just the same)."""
    if len(text) <= LONG_SPEC:
        return _parse_now(text, name, within)
    parts = text.split(",")
    if len(parts) > MAX_SPEC_RUNS:
        raise BadRequest(f"field {name!r}: more than {MAX_SPEC_RUNS} index runs")
    runs: list = []
    for k in range(0, len(parts), SPEC_SLICE):
        try:
            IndexSet.parse_parts(parts[k:k + SPEC_SLICE], into=runs)
        except ValueError as exc:
            raise BadRequest(f"field {name!r}: {exc}") from None
        await asyncio.sleep(0)
    out = IndexSet.from_ordered_runs(runs)
    return out if within is None else out.within(0, within)


_NET_NAME = re.compile(r"^(gumbel:)?onnx:[A-Za-z0-9_.:=,+-]{1,280}$")


def _policy_params(body: dict, policy: str) -> dict:
    """The policy fields of a run or job body. A built-in policy or a net-free search as it is;
    a net's policy is its stored name (`policy`, the net's id) plus the model's SHA-256 and the
    spec the worker plays (`play_policy`), which must name the model at models/<sha256>.onnx
    under the node's data dir (content-addressed, uploaded by PUT /models/<sha256>) and nothing
    else on the node."""
    sha = _field(body, "model_sha256", str, default=None, check=lambda v: bool(SHA256.match(v)),
                 what="64 lowercase hex digits")
    play = _field(body, "play_policy", str, default=None, check=lambda v: 0 < len(v) <= 600, what="a policy spec")
    if sha is None:
        if play is not None:
            raise BadRequest("field 'play_policy' goes with 'model_sha256'")
        if policy in POLICIES:
            return {}
        from ..search.spec import check_policy

        try:
            if not policy.startswith("gumbel:onnx:"):
                return {"policy": check_policy(policy)}
        except ValueError as exc:
            raise BadRequest(f"field 'policy': {exc}") from None
        raise BadRequest(f"field 'policy': {policy!r} plays a net: give 'model_sha256' and 'play_policy'")
    if play is None:
        raise BadRequest("field 'model_sha256' needs 'play_policy' (the spec at models/<sha256>.onnx)")
    if not _NET_NAME.match(policy):
        raise BadRequest(f"field 'policy': {policy!r} is not a net's name like onnx:square8-<id>:temperature=1")
    try:
        parts = model_of_policy(play)
    except ModelError as exc:
        raise BadRequest(f"field 'play_policy': {exc}") from None
    if parts is None or not model_path_ok(parts[1], sha):
        raise BadRequest(f"field 'play_policy' must name the model at models/{sha}.onnx")
    return {"model_sha256": sha, "play_policy": play}


class Peer:
    def __init__(self, node_id: str, url: str):
        self.node_id = node_id
        self.url = url
        self.last_ok = 0.0  # monotonic time of the last answered poll
        self.last_seen = 0.0  # monotonic time of the last sign of life (poll or datagram)
        self.info: dict = {}

    def alive(self, now: float, down_after: float) -> bool:
        return self.last_ok > 0 and now - self.last_ok <= down_after


class Node:
    def __init__(self, cfg: NodeConfig):
        if not 0 < cfg.header_timeout <= 3600:  # NaN fails too
            raise ValueError(f"header_timeout must be 0..3600 s, not {cfg.header_timeout}")
        self.cfg = cfg
        self.node_id = cfg.node_id
        self.boot = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.t0 = time.monotonic()
        self.first_poll: float | None = None  # when the first round of asking the peers began
        self.polls = 0  # rounds of asking the peers that have finished
        self.build: str | None = None
        self.onnxruntime: str | None = None
        self.jobs = JobManager(cfg.data_dir, cfg.node_id, cfg.max_jobs, self.boot)
        self.models = ModelStore(cfg.data_dir, cfg.node_id, stall=cfg.header_timeout)
        self.coordinator = Coordinator(self)
        self.client = NodeClient(cfg.token, timeout=10.0)
        self.peers: dict[str, Peer] = {}
        self.urls: dict[str, dict] = {u.rstrip("/"): {"static": True, "fails_since": None} for u in cfg.peers}
        self.discovery: Discovery | None = None
        self.runner: web.AppRunner | None = None
        self.tasks: list[asyncio.Task] = []
        self.lock_fd: int | None = None
        self.lag = {"max": 0.0, "max_since_reset": 0.0, "last": 0.0, "samples": 0, "over_100ms": 0}
        self.requests = 0
        self._served: set = set()  # connections (aiohttp protocols) that delivered a request head
        self._hello = {"X-Ringrift-Node": self.node_id, "X-Ringrift-Url": cfg.advertise}

    # -- lifecycle --------------------------------------------------------------------------
    def lock_data_dir(self) -> None:
        """flock on DATA_DIR/node.lock: two nodes never share a data dir; the kernel drops the
        lock when the holder dies, so a crash never leaves it stale."""
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.cfg.data_dir / "node.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode().strip()
            except OSError:
                holder = ""
            os.close(fd)
            raise RuntimeError(f"another ringrift-p2p node{f' (pid {holder})' if holder else ''} uses the data "
                               f"directory {self.cfg.data_dir}; give this one its own --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd

    async def start(self) -> None:
        from ..pipeline.worker import build_id

        self.lock_data_dir()
        self.build = await asyncio.to_thread(build_id)
        self.onnxruntime = await asyncio.to_thread(onnxruntime_version)  # can this node play a net's policy
        await self.jobs.recover()
        await self.coordinator.restore()  # before any request can start a run
        app = self.make_app()
        # keepalive_timeout: aiohttp closes a kept-alive connection that has not delivered its next
        # request head this long after the last answer (bytes trickled in do not extend it); the
        # first head of a connection is _close_silent_connections' job.
        # lingering_time: how long aiohttp drains a body its handler left unread before it
        # closes the connection (10 s by default), bounded the same way.
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    keepalive_timeout=self.cfg.header_timeout,
                                    lingering_time=self.cfg.header_timeout)
        await self.runner.setup()
        for host in self.cfg.bind:
            site = web.TCPSite(self.runner, host, self.cfg.port, reuse_address=True)
            await site.start()
        if self.cfg.discovery and self.cfg.discovery_targets:
            self.discovery = Discovery(node_id=self.node_id, url_fn=lambda: self.cfg.advertise, boot=self.boot,
                                       bind=self.cfg.discovery_bind, port=self.cfg.discovery_port,
                                       targets=self.cfg.discovery_targets, token=self.cfg.token,
                                       on_peer=self._discovered)
            await self.discovery.start()
        self.tasks = [asyncio.create_task(self._lag_monitor()), asyncio.create_task(self._heartbeat()),
                      asyncio.create_task(self._close_silent_connections())]
        # Everything loaded so far lives as long as the node: keep it out of the cyclic garbage
        # collector's full passes, whose time would otherwise grow with it and stall the loop.
        gc.collect()
        gc.freeze()
        where = ", ".join(f"{url_host(h)}:{self.cfg.port}" for h in self.cfg.bind)
        disc = (f"UDP discovery on port {self.cfg.discovery_port} to "
                f"{', '.join(f'{a}:{p}' for a, p in self.cfg.discovery_targets)}" if self.discovery else
                "no UDP discovery")
        log.info("node %s (build %s) listening on %s, advertised as %s; %s; %d static peers; auth %s; "
                 "%d job slots, capabilities %s", self.node_id, self.build, where, self.cfg.advertise, disc,
                 len(self.cfg.peers), "required" if self.cfg.require_auth else "not required", self.cfg.max_jobs,
                 ",".join(self.cfg.capabilities))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.coordinator.close()
        if self.discovery:
            self.discovery.close()
        await self.jobs.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.client.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- membership -------------------------------------------------------------------------
    def _discovered(self, node_id: str, url: str) -> None:
        url = url.rstrip("/")
        p = self.peers.get(node_id)
        if p is not None:
            p.last_seen = time.monotonic()
            if p.url != url:
                self.urls.setdefault(url, {"static": False, "fails_since": None})
        elif len(self.urls) < 4 * MAX_PEERS:
            self.urls.setdefault(url, {"static": False, "fails_since": None})

    async def _heartbeat(self) -> None:
        hb = self.cfg.heartbeat
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            try:
                if self.discovery:
                    self.discovery.announce()
                if self.first_poll is None:
                    self.first_poll = time.monotonic()
                await self._poll_peers()
                self.polls += 1
                await asyncio.wait_for(self.coordinator.tick(self.views()), max(10.0, 5 * hb))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  (a round that fails is retried next heartbeat)
                log.exception("heartbeat round failed")
            await asyncio.sleep(max(0.05, hb - (loop.time() - t0)))

    async def _poll_peers(self) -> None:
        now = time.monotonic()
        targets = set(self.urls)
        for p in self.peers.values():
            targets.add(p.url)
        targets.discard(self.cfg.advertise)
        timeout = max(0.5, min(3.0, self.cfg.down_after / 2))
        sem = asyncio.Semaphore(32)

        async def one(url):
            async with sem:
                try:
                    data = await self.client.get(f"{url}/node/state", timeout=timeout, headers=self._hello)
                except NodeError as exc:
                    return url, None, exc
                return url, data, None

        results = await asyncio.gather(*(one(u) for u in sorted(targets)))
        now = time.monotonic()
        for url, data, err in results:
            meta = self.urls.get(url)
            if err is not None and err.status == 401 and meta is not None and not meta.get("warned"):
                meta["warned"] = True
                log.warning("the node at %s refuses this node's cluster token (HTTP 401): give every node the "
                            "same %s", url, "RINGRIFT_CLUSTER_AUTH_TOKEN")
            if data is not None and not peer_state_ok(data):  # a malformed answer: as no answer (it crashed rounds)
                if meta is not None and not meta.get("malformed_logged"):
                    meta["malformed_logged"] = True
                    log.warning("the node at %s answers /node/state with fields of the wrong type: ignored", url)
                data = None
            if data is None or not isinstance(data.get("node_id"), str) or not NODE_ID.match(data["node_id"]):
                if meta is not None:
                    if meta["fails_since"] is None:
                        meta["fails_since"] = now
                    elif not meta["static"] and now - meta["fails_since"] > 10 * self.cfg.down_after:
                        del self.urls[url]  # a discovered address that has been dead for long
                continue
            if meta is not None:
                meta["fails_since"] = None
            nid = data["node_id"]
            if nid == self.node_id:
                if meta is not None and not meta["static"]:
                    del self.urls[url]
                continue
            p = self.peers.get(nid)
            if p is None:
                if len(self.peers) >= MAX_PEERS:
                    continue
                p = self.peers[nid] = Peer(nid, url)
                log.info("peer %s joined at %s", nid, url)
            elif not p.alive(now, self.cfg.down_after):
                log.info("peer %s is back at %s", nid, url)
            if p.info.get("boot") and p.info.get("boot") != data.get("boot"):
                log.info("peer %s restarted (boot %s)", nid, data.get("boot"))
            p.url = url
            p.last_ok = p.last_seen = now
            p.info = data
            for g in data.get("peers", [])[:MAX_PEERS]:
                if isinstance(g, dict) and isinstance(g.get("url"), str) and g.get("node_id") != self.node_id:
                    gurl = g["url"].rstrip("/")
                    known = self.peers.get(g.get("node_id"))
                    if (known is None or known.url != gurl) and gurl.startswith(("http://", "https://")):
                        self.urls.setdefault(gurl, {"static": False, "fails_since": None})
        for p in self.peers.values():
            if p.last_ok and not p.alive(now, self.cfg.down_after) and not p.info.get("_down_logged"):
                p.info["_down_logged"] = True
                log.warning("peer %s stopped answering (no answer for %.1fs): marked down", p.node_id,
                            now - p.last_ok)

    def alive_peers(self) -> list[Peer]:
        now = time.monotonic()
        return [p for p in self.peers.values() if p.alive(now, self.cfg.down_after)]

    def leader(self) -> tuple[str, str]:
        """(node id, url) of the leader in this node's view."""
        cands = [(-self.cfg.priority, self.started_at, self.node_id, self.cfg.advertise)]
        for p in self.alive_peers():
            i = p.info
            if i.get("protocol") == PROTOCOL_VERSION:
                cands.append((-int(i.get("priority", 0)), float(i.get("started_at", 0)), p.node_id, p.url))
        best = min(cands)
        return best[2], best[3]

    def uptime(self) -> float:
        return time.monotonic() - self.t0

    def settled(self) -> bool:
        """Two rounds of asking the peers have finished, over at least two heartbeats: only then
        does the node know which jobs its peers run (a coordinator after a restart) and who
        leads. Counted from the first round, not from start-up: a start that takes long (jobs
        to recover, runs to restore) must not count as time spent listening."""
        return self.polls >= 2 and time.monotonic() - self.first_poll >= 2 * self.cfg.heartbeat + 0.5

    def load(self) -> float:
        try:
            return round(os.getloadavg()[0] / (os.cpu_count() or 1), 3)
        except OSError:
            return 0.0

    def local_state(self) -> dict:
        running = self.jobs.running()
        jobs = [j for j in self.jobs.listing(uncollected=True, limit=200) if j.get("run_id")]
        return {
            "protocol": PROTOCOL_VERSION, "node_id": self.node_id, "url": self.cfg.advertise, "boot": self.boot,
            "started_at": self.started_at, "priority": self.cfg.priority, "version": __version__,
            "build": self.build, "capabilities": list(self.cfg.capabilities), "max_jobs": self.cfg.max_jobs,
            "running": len(running), "free": self.jobs.free_slots(), "load": self.load(),
            "leader": self.leader()[0], "onnxruntime": self.onnxruntime,
            "peers": [{"node_id": p.node_id, "url": p.url} for p in self.alive_peers()][:64],
            "jobs": jobs,
        }

    def views(self) -> dict:
        """{node id: view} for the coordinator: the live state of this node and the last
        answers of the peers."""
        now = time.monotonic()
        me = self.local_state()
        out = {self.node_id: dict(me, alive=True, jobs={j["job_id"]: j for j in me["jobs"]})}
        for p in self.peers.values():
            i = p.info
            out[p.node_id] = {"alive": p.alive(now, self.cfg.down_after), "url": p.url, "free": int(i.get("free", 0)),
                              "build": i.get("build"), "capabilities": i.get("capabilities", []),
                              "load": float(i.get("load", 0.0)), "boot": i.get("boot"),
                              "onnxruntime": i.get("onnxruntime"), "max_jobs": i.get("max_jobs"),
                              "jobs": {j["job_id"]: j for j in i.get("jobs", []) if isinstance(j, dict)
                                       and isinstance(j.get("job_id"), str)}}
        return out

    async def call_start_job(self, view: dict, spec: dict) -> dict:
        if view.get("url") in (None, self.cfg.advertise):
            try:
                job, _ = await self.jobs.start(await self._job_spec_off_loop(spec))
            except LookupError as exc:
                raise NodeError(self.cfg.advertise, str(exc), 409) from None
            except FileNotFoundError as exc:
                raise NodeError(self.cfg.advertise, str(exc), 424) from None
            except BadRequest as exc:
                raise NodeError(self.cfg.advertise, str(exc), exc.status) from None
            return job
        if spec.get("model_sha256"):  # a net's policy: the node gets the model (once) before the job
            await self.models.push(self.client, view["url"], spec["model_sha256"])
        data = await self.client.post(f"{view['url']}/pipeline/selfplay_worker", spec, timeout=10)
        return data.get("job", {})

    async def call_node(self, node_id: str, method: str, path: str, body: dict) -> dict:
        if node_id == self.node_id:
            m = re.match(r"^/jobs/([^/]+)/(kill|collected)$", path)
            if m and m.group(1) in self.jobs.jobs:
                if m.group(2) == "kill":
                    return {"job": await self.jobs.kill(m.group(1))}
                job, error = await self.jobs.mark_collected(m.group(1), discard=bool(body.get("discard")))
                return {"job": job, "discard_error": error}
            raise NodeError(self.cfg.advertise, f"no such local call {path}", 404)
        p = self.peers.get(node_id)
        if p is None:
            raise NodeError(node_id, f"unknown node {node_id}")
        return await self.client.request(method, f"{p.url}{path}", body=body, timeout=10)

    # -- connections that never send a request ----------------------------------------------
    async def _close_silent_connections(self) -> None:
        """Close every connection that has not delivered a complete first request head within
        header_timeout of this task first seeing it: between 1 and 1.5 x header_timeout after
        it opened (10-12 s by default). aiohttp arms its keep-alive timer at a connection's
        opening only in its newest releases; before them such a socket was never closed."""
        limit = self.cfg.header_timeout
        loop = asyncio.get_running_loop()
        seen: dict = {}  # connection -> when this task first saw it without a request
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = loop.time()
            conns = self.runner.server.connections if self.runner and self.runner.server else []
            self._served &= set(conns)  # forget the closed ones
            seen = {c: seen.get(c, now) for c in conns if c not in self._served}
            for c, since in seen.items():
                if now - since >= limit:
                    c.force_close()

    # -- the loop monitor -------------------------------------------------------------------
    async def _lag_monitor(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 0.025
        while True:
            t = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - t - interval)
            self.lag["last"] = lag
            self.lag["samples"] += 1
            if lag > self.lag["max"]:
                self.lag["max"] = lag
            if lag > self.lag["max_since_reset"]:
                self.lag["max_since_reset"] = lag
            if lag > 0.1:
                self.lag["over_100ms"] += 1
                log.warning("event loop stalled for %.0f ms", lag * 1000)

    def lag_report(self) -> dict:
        return {"max": round(self.lag["max"] * 1000, 2), "max_since_reset": round(self.lag["max_since_reset"] * 1000, 2),
                "last": round(self.lag["last"] * 1000, 2), "samples": self.lag["samples"],
                "over_100ms": self.lag["over_100ms"]}

    # -- HTTP -------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors, self._auth])
        r = app.router
        r.add_get("/health", self.h_health)
        r.add_get("/cluster/status", self.h_cluster_status)
        r.add_get("/node/state", self.h_node_state)
        r.add_post("/pipeline/start", self.h_pipeline_start)
        r.add_get("/pipeline/status", self.h_pipeline_status)
        r.add_post("/pipeline/stop", self.h_pipeline_stop)
        r.add_post("/pipeline/ack", self.h_pipeline_ack)
        r.add_get("/pipeline/runs/{run_id}/ranges/{start}/db", self.h_range_db)
        r.add_post("/pipeline/selfplay_worker", self.h_selfplay_worker)
        r.add_get("/jobs", self.h_jobs)
        r.add_get("/jobs/{job_id}", self.h_job)
        r.add_get("/jobs/{job_id}/db", self.h_job_db)
        r.add_post("/jobs/{job_id}/kill", self.h_job_kill)
        r.add_post("/jobs/{job_id}/collected", self.h_job_collected)
        r.add_get("/models", self.models.h_list)
        r.add_get("/models/{sha256}", self.models.h_get)
        r.add_put("/models/{sha256}", self.models.h_put)
        r.add_get("/debug/loop", self.h_debug_loop)
        r.add_post("/debug/loop/reset", self.h_debug_loop_reset)
        return app

    @web.middleware
    async def _errors(self, request, handler):
        self.requests += 1
        self._served.add(request.protocol)  # its head arrived: _close_silent_connections leaves it be
        try:
            return await handler(request)
        except BadRequest as exc:
            return _json({"error": str(exc), **exc.extra}, exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            msg = exc.reason if exc.status != 413 else f"request body over {MAX_BODY} bytes"
            if exc.status == 404:
                msg = f"no such endpoint: {request.method} {request.path} (see docs/p2p.md)"
            elif exc.status == 405:
                msg = f"method {request.method} is not allowed on {request.path}"
            return _json({"error": msg}, exc.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("internal error on %s %s", request.method, request.path)
            return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    @web.middleware
    async def _auth(self, request, handler):
        if self.cfg.require_auth and request.path != "/health":
            if not bearer_ok(request.headers.get("Authorization"), self.cfg.token or ""):
                return _json({"error": "missing or invalid cluster token (Authorization: Bearer <token>)"}, 401,
                             headers={"WWW-Authenticate": 'Bearer realm="ringrift-p2p"'})
        return await handler(request)

    async def h_health(self, request):
        return _json({"status": "ok", "node_id": self.node_id, "version": __version__,
                      "uptime_s": round(self.uptime(), 3), "role": "leader" if self.leader()[0] == self.node_id
                      else "worker", "loop_lag_ms": self.lag_report()})

    async def h_debug_loop(self, request):
        return _json({"loop_lag_ms": self.lag_report(), "requests": self.requests,
                      "tasks": len(asyncio.all_tasks())})

    async def h_debug_loop_reset(self, request):
        self.lag["max_since_reset"] = 0.0
        return _json({"loop_lag_ms": self.lag_report()})

    async def h_node_state(self, request):
        # A polling peer says who it is: poll it back (that answer, not this claim, makes it a peer).
        nid, url = request.headers.get("X-Ringrift-Node"), request.headers.get("X-Ringrift-Url")
        # A node holding the cluster token polls its peers with it: an address is taken only from a
        # caller that proves it holds the token too (even without --require-auth), else anyone could
        # name an address and receive the token with every heartbeat
        trusted = not self.cfg.token or bearer_ok(request.headers.get("Authorization"), self.cfg.token)
        if trusted and nid and url and NODE_ID.match(nid) and url.startswith(("http://", "https://")) and len(url) <= 300:
            self._discovered(nid, url)
        return _json(self.local_state())

    async def h_cluster_status(self, request):
        now = time.monotonic()
        leader_id, leader_url = self.leader()

        def row(node_id, url, info, alive, seen):
            jobs = [{k: j.get(k) for k in ("job_id", "run_id", "lo", "hi", "status", "done", "total", "slot")}
                    for j in info.get("jobs", []) if isinstance(j, dict) and j.get("status") == "running"]
            return {"node_id": node_id, "url": url, "alive": alive, "last_seen_s": seen,
                    "role": "leader" if node_id == leader_id else "worker",
                    "capabilities": info.get("capabilities", []), "max_jobs": info.get("max_jobs"),
                    "running": info.get("running"), "free": info.get("free"), "load": info.get("load"),
                    "version": info.get("version"), "build": info.get("build"),
                    "build_ok": info.get("build") == self.build, "onnxruntime": info.get("onnxruntime"), "boot": info.get("boot"), "jobs": jobs[:16]}

        me = self.local_state()
        me["jobs"] = self.jobs.listing(limit=200)
        nodes = [row(self.node_id, self.cfg.advertise, me, True, 0.0)]
        for p in sorted(self.peers.values(), key=lambda p: p.node_id):
            nodes.append(row(p.node_id, p.url, p.info, p.alive(now, self.cfg.down_after),
                             round(now - p.last_seen, 1) if p.last_seen else None))
        out = {"self": self.node_id, "leader": {"node_id": leader_id, "url": leader_url},
               "settled": self.settled(), "nodes": nodes,
               "runs": [r.summary() for r in list(self.coordinator.runs.values())[-20:]]}
        if self.discovery:
            out["discovery"] = {"sent": self.discovery.sent, "received": self.discovery.received,
                                "rejected": self.discovery.rejected}
        return _json(out)

    # -- pipeline ---------------------------------------------------------------------------
    def _selfplay_params(self, body: dict) -> dict:
        board = _field(body, "board", str, required=True, check=lambda v: v in BOARDS,
                       what=f"one of {', '.join(BOARDS)}")
        p = {
            "board": board,
            "players": _field(body, "players", int, default=2, check=lambda v: 2 <= v <= 4, what="2, 3 or 4"),
            "policy": _field(body, "policy", str, default="random", check=lambda v: 0 < len(v) <= 300,
                             what=" or ".join(POLICIES) + ", a gumbel:... spec or a net's name"),
            "seed": _field(body, "seed", int, default=0, check=lambda v: 0 <= v <= MAX_SEED,
                           what=f"0..{MAX_SEED}"),
            "max_moves": _field(body, "max_moves", int, default=DEFAULT_MAX_MOVES[board],
                                check=lambda v: 1 <= v <= 1_000_000, what="1..1000000"),
            "batch_size": _field(body, "batch_size", int, check=lambda v: 1 <= v <= 100_000, what="1..100000"),
            "threads": _field(body, "threads", int, default=0, check=lambda v: 0 <= v <= 1024, what="0..1024"),
            "device": _field(body, "device", str, default="cpu", check=lambda v: v in ("cpu", "cuda"),
                             what="cpu or cuda"),
        }
        p.update(_policy_params(body, p["policy"]))
        return p

    async def h_pipeline_start(self, request):
        body = await _body(request, self.cfg.header_timeout)
        phase = _field(body, "phase", str, required=True, what=f"one of {', '.join(CLUSTER_PHASES)}")
        if phase not in PHASES:
            raise BadRequest(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")
        if phase not in CLUSTER_PHASES:
            raise BadRequest(f"phase {phase} runs on the pipeline's own machine, not on the cluster "
                             f"(cluster phases: {', '.join(CLUSTER_PHASES)})", 422)
        _only(body, ("phase", "board", "players", "policy", "seed", "max_moves", "batch_size", "threads", "num_games",
                     "games_per_worker", "timeout", "capability", "skip", "keep_worker_dbs", "device",
                     "model_sha256", "play_policy"))
        p = self._selfplay_params(body)
        p["num_games"] = _field(body, "num_games", int, required=True, check=lambda v: 0 <= v <= 10**9,
                                what="0..1000000000")
        p["games_per_worker"] = _field(body, "games_per_worker", int, default=1000,
                                       check=lambda v: 1 <= v <= 10**7, what="1..10000000")
        p["timeout"] = float(_field(body, "timeout", float, default=3600.0, check=lambda v: 0 < v <= 10**7,
                                    what="a positive number of seconds, at most 10000000"))
        # GPU games go to nodes that declared the gpu capability, whose workers play on their GPU
        p["capability"] = _field(body, "capability", str, default="gpu" if p["device"] == "cuda" else "cpu",
                                 check=lambda v: v in CAPABILITIES, what=" or ".join(CAPABILITIES))
        if p["device"] == "cuda" and p["capability"] != "gpu":
            raise BadRequest("device cuda needs capability gpu (or leave capability out)")
        p["keep_worker_dbs"] = _field(body, "keep_worker_dbs", bool, default=False)
        try:
            check_range_count(p["num_games"], p["games_per_worker"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        skip_spec = _field(body, "skip", str, default="", what="index runs like 0-99,150")
        # Indices the pipeline holds beyond the target do not matter: only [0, num_games) is kept.
        skip = await _parse_indices(skip_spec, "skip", within=p["num_games"])
        if not self.settled():
            raise BadRequest("this node is still finding its peers and electing a leader; retry in a moment", 409,
                             {"retry": True})
        leader_id, leader_url = self.leader()
        if leader_id != self.node_id:
            raise BadRequest(f"this node is not the leader; the leader is {leader_id} at {leader_url}", 409,
                             {"leader": {"node_id": leader_id, "url": leader_url}})
        views = self.views()
        able = [n for n, v in views.items() if v["alive"] and p["capability"] in v.get("capabilities", ())
                and v.get("build") == self.build]
        if not able:
            raise BadRequest(f"no live node of this build has capability {p['capability']} "
                             f"(nodes: {', '.join(sorted(views))})", 409)
        players = [n for n in able if (views[n].get("max_jobs") or 0) > 0]  # nodes with job slots
        if p.get("model_sha256") and not any(views[n].get("onnxruntime") for n in players):
            raise BadRequest(f"policy {p['policy']} needs onnxruntime, and no live node that could play it has it "
                             f"(nodes without onnxruntime: {', '.join(sorted(players)) or 'none with job slots'}): "
                             f"pip install 'ringrift[train]' on them", 409)
        if p.get("model_sha256") and not self.models.has(p["model_sha256"]):
            raise BadRequest(f"the leader does not hold model {p['model_sha256'][:12]}: upload it first "
                             f"(PUT /models/<sha256>)", 424)
        run, created = await self.coordinator.start_run(p, skip)
        return _json({"created": created, "run": self.coordinator.status(run)}, 201 if created else 200)

    def _run(self, run_id) -> "object":
        if not isinstance(run_id, str) or not run_id:
            raise BadRequest("missing run_id")
        run = self.coordinator.runs.get(run_id)
        if run is None:
            raise BadRequest(f"no run {run_id!r} on this node", 404)
        return run

    async def h_pipeline_status(self, request):
        run_id = request.query.get("run_id")
        if not run_id:
            return _json({"node_id": self.node_id, "runs": [r.summary() for r in self.coordinator.runs.values()]})
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise BadRequest("query parameter 'since' must be an integer") from None
        return _json(self.coordinator.status(self._run(run_id), since))

    async def h_pipeline_stop(self, request):
        body = await _body(request, self.cfg.header_timeout)
        _only(body, ("run_id",))
        run = self._run(_field(body, "run_id", str, required=True))
        self.coordinator.stop(run)
        return _json({"run": run.summary()})

    async def h_pipeline_ack(self, request):
        body = await _body(request, self.cfg.header_timeout)
        _only(body, ("run_id", "start"))
        run = self._run(_field(body, "run_id", str, required=True))
        start = _field(body, "start", int, required=True)
        if start not in run.by_start:
            raise BadRequest(f"run {run.run_id} has no range starting at {start}", 404)
        r = run.by_start[start]
        if r.status not in ("collected", "delivered"):
            raise BadRequest(f"range [{r.start}, {r.end}) is {r.status}, not collected", 409)
        r = await self.coordinator.ack(run, start)
        return _json({"range": r.public(), "run": run.summary()})

    async def h_range_db(self, request):
        run = self._run(request.match_info["run_id"])
        try:
            start = int(request.match_info["start"])
        except ValueError:
            raise BadRequest("the range start must be an integer") from None
        r = run.by_start.get(start)
        if r is None:
            raise BadRequest(f"run {run.run_id} has no range starting at {start}", 404)
        if r.status != "collected":
            raise BadRequest(f"range [{r.start}, {r.end}) is {r.status}; only a collected range can be fetched", 409)
        path = run.range_db(r)
        if not path.exists():
            raise BadRequest(f"range [{r.start}, {r.end}) has no DB", 404)
        digest = await asyncio.to_thread(dbtools.sha256_file, path)
        return web.FileResponse(path, headers={"X-Ringrift-Sha256": digest,
                                               "Content-Type": "application/vnd.sqlite3"})

    def _job_spec(self, body: dict, indices: IndexSet | None = None) -> dict:
        """The validated job of a /pipeline/selfplay_worker body (`indices`: its 'indices'
        field parsed already, off the loop)."""
        _only(body, ("job_id", "run_id", "owner", "board", "players", "policy", "seed", "max_moves", "batch_size",
                     "threads", "device", "indices", "start", "count", "range", "model_sha256", "play_policy"))
        spec = self._selfplay_params(body)
        spec["job_id"] = _field(body, "job_id", str, default=None, check=lambda v: bool(JOB_ID.match(v)),
                                what="letters, digits, '_', '.', '-' (at most 120)")
        if spec["job_id"] is None:
            spec["job_id"] = f"adhoc-{uuid.uuid4().hex[:12]}"
        spec["run_id"] = _field(body, "run_id", str, default=None, check=lambda v: bool(JOB_ID.match(v)),
                                what="letters, digits, '_', '.', '-'")
        spec["owner"] = _field(body, "owner", str, default=None, check=lambda v: len(v) <= 100, what="a node id")
        if "indices" in body and body["indices"] is not None:
            if "start" in body or "count" in body:
                raise BadRequest("give either 'indices' or 'start' and 'count', not both")
            text = _field(body, "indices", str, what="index runs like 0-99,150")
            if len(text) > 200_000:
                raise BadRequest("field 'indices' is too long")
            idx = indices if indices is not None else _parse_now(text, "indices")
        else:
            start = _field(body, "start", int, required=True, check=lambda v: 0 <= v < MAX_GAMES,
                           what=f"0..{MAX_GAMES - 1} ({INDEX_LIMIT})")
            count = _field(body, "count", int, required=True, check=lambda v: 1 <= v <= 10_000_000,
                           what="1..10000000")
            if start + count > MAX_GAMES:
                raise BadRequest(f"fields 'start' + 'count' must be at most {MAX_GAMES} ({INDEX_LIMIT})")
            idx = IndexSet.interval(start, start + count)
        if not idx:
            raise BadRequest("no game indices to play")
        if idx.count > 10_000_000:
            raise BadRequest("at most 10000000 games per job")
        if idx.max >= MAX_GAMES:
            raise BadRequest(f"field 'indices': index {idx.max} is too large ({INDEX_LIMIT})")
        lo, hi = idx.min, idx.max + 1
        rng = body.get("range")
        if rng is not None:
            if (not isinstance(rng, list) or len(rng) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                                   for v in rng)):
                raise BadRequest("field 'range' must be [start, end], two integers")
            if rng[1] > MAX_GAMES:
                raise BadRequest(f"field 'range': its end {rng[1]} is beyond {MAX_GAMES} ({INDEX_LIMIT})")
            if not (0 <= rng[0] <= lo and hi <= rng[1]):
                raise BadRequest(f"field 'range': the indices {lo}..{hi - 1} are not inside [{rng[0]}, {rng[1]})")
            lo, hi = rng
        spec.update(indices=str(idx), lo=lo, hi=hi, total=idx.count)
        return spec

    async def _job_spec_off_loop(self, body: dict) -> dict:
        """_job_spec with a long 'indices' field parsed in a thread."""
        text = body.get("indices")
        parsed = None
        if isinstance(text, str) and len(text) <= 200_000 and "start" not in body and "count" not in body:
            parsed = await _parse_indices(text, "indices")
        return self._job_spec(body, parsed)

    async def h_selfplay_worker(self, request):
        body = await _body(request, self.cfg.header_timeout)
        spec = await self._job_spec_off_loop(body)
        try:
            job, created = await self.jobs.start(spec)
        except LookupError as exc:
            raise BadRequest(str(exc), 409) from None
        except FileNotFoundError as exc:
            raise BadRequest(str(exc), 424) from None
        return _json({"job": job, "created": created}, 202 if created else 200)

    def _job(self, request) -> dict:
        job_id = request.match_info["job_id"]
        job = self.jobs.jobs.get(job_id)
        if job is None:
            raise BadRequest(f"no job {job_id!r} on node {self.node_id}", 404)
        return job

    async def h_jobs(self, request):
        try:
            limit = max(1, min(500, int(request.query.get("limit", "100"))))
        except ValueError:
            raise BadRequest("query parameter 'limit' must be an integer") from None
        return _json({"node_id": self.node_id, "free": self.jobs.free_slots(),
                      "jobs": self.jobs.listing(run_id=request.query.get("run_id"), limit=limit)})

    async def h_job(self, request):
        return _json({"job": self.jobs.public(self._job(request))})

    async def h_job_db(self, request):
        job = self._job(request)
        if job["status"] not in FINISHED:
            raise BadRequest(f"job {job['job_id']} is {job['status']}; its DB can be fetched once it ends", 409)
        path = self.jobs.db_path(job)
        if job.get("discard"):
            raise BadRequest(f"job {job['job_id']} was collected and its DB deleted", 404)
        if not path.exists() or not job.get("games"):
            raise BadRequest(f"job {job['job_id']} has no games", 404)
        headers = {"Content-Type": "application/vnd.sqlite3"}
        if job.get("sha256"):
            headers["X-Ringrift-Sha256"] = job["sha256"]
        return web.FileResponse(path, headers=headers)

    async def h_job_kill(self, request):
        job = self._job(request)
        return _json({"job": await self.jobs.kill(job["job_id"])})

    async def h_job_collected(self, request):
        job = self._job(request)
        body = await _body(request, self.cfg.header_timeout) if request.body_exists else {}
        _only(body, ("discard",))
        discard = _field(body, "discard", bool, default=False, what="delete the job's DB")
        if job["status"] not in FINISHED:
            raise BadRequest(f"job {job['job_id']} is {job['status']}", 409)
        job, error = await self.jobs.mark_collected(job["job_id"], discard=discard)
        return _json({"job": job, "discard_error": error})
