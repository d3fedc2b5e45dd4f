"""The P2P cluster for real: `ringrift-p2p` nodes as separate processes on 127.0.0.1 (their own
HTTP ports, data dirs, and UDP discovery ports on 127.0.0.1), driven through the leader by
`ringrift-pipeline --backend p2p`. Nodes get killed with SIGKILL and restarted mid-run. Only
127.0.0.1 is ever contacted, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")

TOKEN = "p2p-test-token-3f9c1a"
HB = 0.25  # heartbeat of the test nodes (s)
DOWN = 3.0  # a node silent this long is marked down


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, *, token: str | None = TOKEN, raw: bytes | None = None, timeout=10,
         content_type: str = "application/json", headers: dict | None = None):
    """(status, parsed JSON or None, raw bytes) of one request (stdlib only)."""
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        status = exc.code
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    return status, parsed, payload


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class Node:
    def __init__(self, root: Path, name: str, *, discovery_ports: list[int] | None, priority=0, max_jobs=1,
                 peers=(), auth=True, token=TOKEN, capabilities="cpu", env=None):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dport = free_port(socket.SOCK_DGRAM) if discovery_ports is not None else None
        if discovery_ports is not None:
            discovery_ports.append(self.dport)
        self.discovery_ports = discovery_ports
        self.priority = priority
        self.max_jobs = max_jobs
        self.peers = list(peers)
        self.auth = auth
        self.token = token
        self.capabilities = capabilities
        self.extra_env = env or {}
        self.proc = None
        self.log = self.dir.parent / f"{name}.out"

    def argv(self) -> list[str]:
        a = [sys.executable, "-m", "ringrift.p2p", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.dir / "data"), "--node-id", self.name, "--priority", str(self.priority),
             "--max-jobs", str(self.max_jobs), "--heartbeat", str(HB), "--down-after", str(DOWN),
             "--capabilities", self.capabilities]
        if self.auth:
            a.append("--require-auth")
        if self.dport is None:
            a.append("--no-discovery")
        else:
            a += ["--discovery-port", str(self.dport)]
            for p in self.discovery_ports:
                a += ["--discovery-target", f"127.0.0.1:{p}"]
        for p in self.peers:
            a += ["--peer", p]
        return a

    def start(self, wait=True) -> "Node":
        env = dict(os.environ, **self.extra_env)
        env.pop("RINGRIFT_TS_ROOT", None)
        if self.token:
            env["RINGRIFT_CLUSTER_AUTH_TOKEN"] = self.token
        else:
            env.pop("RINGRIFT_CLUSTER_AUTH_TOKEN", None)
        self.proc = subprocess.Popen(self.argv(), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"node {self.name} exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                return http("GET", f"{self.url}/health", token=None, timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, f"node {self.name} to answer /health")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def status(self) -> dict:
        s, body, _ = http("GET", f"{self.url}/cluster/status", token=self.token)
        assert s == 200, body
        return body


@pytest.fixture
def nodes(tmp_path):
    made: list[Node] = []

    def make(*args, **kw) -> Node:
        n = Node(tmp_path / "nodes", *args, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.kill()
    # no worker may outlive its node
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and worker_pids(str(tmp_path)):
        time.sleep(0.1)
    assert not worker_pids(str(tmp_path)), "a self-play worker outlived its node"


def worker_pids(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "ringrift.pipeline worker" in cmd and marker in cmd:
                out.append(int(entry))
    return out


def alive_view(node: Node, names) -> bool:
    try:
        st = node.status()
    except OSError:
        return False
    alive = {n["node_id"] for n in st["nodes"] if n["alive"]}
    return set(names) <= alive and st["settled"]


def pipeline(*args, cwd: Path, token: str | None = TOKEN, timeout=120, popen=False):
    # (no RINGRIFT_LOG_DIR: the logs go to the default, logs/ under cwd, a temporary folder)
    env = {k: v for k, v in os.environ.items() if k not in ("RINGRIFT_TS_ROOT", "RINGRIFT_CLUSTER_AUTH_TOKEN",
                                                             "RINGRIFT_LOG_DIR")}
    if token:
        env["RINGRIFT_CLUSTER_AUTH_TOKEN"] = token
    env["RINGRIFT_P2P_POLL_S"] = "0.2"
    argv = [sys.executable, "-m", "ringrift.pipeline", "--state", str(cwd / "state.json"), *args]
    if popen:
        return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=env)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def parity(db: Path):
    env = {k: v for k, v in os.environ.items() if k != "RINGRIFT_TS_ROOT"}
    return subprocess.run([sys.executable, "-m", "ringrift.parity", "--db", str(db), "--sample", "0"],
                          capture_output=True, text=True, timeout=120, env=env)


def db_rows(db: Path, sql: str, params=()) -> list:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def job_files(node: Node) -> list[str]:
    """Every file under a node's data_dir/runs (job DBs and their -wal/-shm)."""
    runs = node.dir / "data" / "runs"
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file()) if runs.exists() else []


def running_job_with_games(node: Node):
    """(job, committed indices) of a job running on `node` whose DB already holds games."""
    try:
        s, body, _ = http("GET", f"{node.url}/jobs", token=node.token, timeout=2)
    except OSError:
        return None
    if s != 200:
        return None
    for job in body["jobs"]:
        if job["status"] != "running" or not job.get("run_id"):
            continue
        db = node.dir / "data" / "runs" / job["run_id"] / f"{job['job_id']}.db"
        try:
            idx = [r[0] for r in db_rows(db, "SELECT game_index FROM games")]
        except sqlite3.Error:
            continue
        if idx and len(idx) <= 0.6 * job["total"]:  # well before its end
            return job, idx
    return None


# ---- the tests ---------------------------------------------------------------------------------

def test_distributed_selfplay_survives_killed_and_restarted_workers(nodes, tmp_path):
    ports: list[int] = []
    a = nodes("A", discovery_ports=ports, priority=1, max_jobs=0)  # the leader, coordinating only
    b = nodes("B", discovery_ports=ports)
    c = nodes("C", discovery_ports=ports)
    d = nodes("D", discovery_ports=ports)
    for n in (a, b, c, d):
        n.start(wait=False)
    for n in (a, b, c, d):
        n.wait_ready()
    # UDP discovery on 127.0.0.1 only: nobody was given a peer address
    wait_for(lambda: alive_view(a, "ABCD") and alive_view(d, "ABCD"), 20, "the nodes to discover each other")
    st = b.status()
    assert st["leader"] == {"node_id": "A", "url": a.url}
    assert TOKEN not in json.dumps(st)
    # a forged announcement (unsigned, then signed with another key) is ignored
    from ringrift.p2p.auth import sign_datagram

    fake = {"v": 1, "node": "EVIL", "url": "http://127.0.0.1:9", "boot": "x", "t": time.time()}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(sign_datagram(fake, None), ("127.0.0.1", a.dport))
        s.sendto(sign_datagram(fake, "wrong-token"), ("127.0.0.1", a.dport))

    target, gpw = 2400, 150
    out = tmp_path / "out" / "games.db"
    work = tmp_path / "pipe"
    work.mkdir()
    args = ["--backend", "p2p", "--p2p-leader", b.url,  # a worker's URL: it names the leader
            "run", "canonical_selfplay", "--board", "square19", "--num-games", str(target), "--seed", "5",
            "--games-per-worker", str(gpw), "--batch-size", "5", "--threads", "1", "--output-db", str(out), "--quiet"]
    t0 = time.monotonic()
    proc = pipeline(*args, cwd=work, popen=True)
    try:
        # C: killed for good while it is part-way through a range
        c_job, _ = wait_for(lambda: running_job_with_games(c), 40, "C to be part-way through a range")
        c.kill()
        # D: killed part-way through a range and restarted at once with the same data dir
        d_job, _ = wait_for(lambda: running_job_with_games(d), 40, "D to be part-way through a range")
        d.kill()
        # what D committed before it died (its DB is deleted once the restarted D is collected)
        d_db = d.dir / "data" / "runs" / d_job["run_id"] / f"{d_job['job_id']}.db"
        committed = [r[0] for r in db_rows(d_db, "SELECT game_index FROM games")]
        d.start()
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, stderr
    assert f"{target} new games (0 already present, target {target})" in stdout, stdout
    # C's loss was noticed and its range re-dispatched
    c_range = f"[{c_job['lo']}, {c_job['hi']})"
    # (C may die while the leader is handing it its next range: then that is the failure it reports)
    assert f"node C failed on range {c_range}: " in stderr, stderr
    # exactly the target: every index once
    idx = [r[0] for r in db_rows(out, "SELECT game_index FROM games ORDER BY game_index")]
    assert idx == list(range(target))
    v = parity(out)
    assert v.returncode == 0 and f"parity: {target}/{target} games match" in v.stdout, v.stdout + v.stderr
    # C's range was finished elsewhere
    hosts = {r[0] for r in db_rows(out, "SELECT DISTINCT host FROM games WHERE game_index >= ? AND game_index < ?",
                                   (c_job["lo"], c_job["hi"]))}
    assert hosts and "C" not in hosts
    # D came back: the games it had committed before the kill were collected, not replayed
    assert committed
    placeholders = ",".join("?" * len(committed))
    got = dict(db_rows(out, f"SELECT game_index, host FROM games WHERE game_index IN ({placeholders})", committed))
    assert set(got) == set(committed) and set(got.values()) == {"D"}, got
    s, job, _ = http("GET", f"{d.url}/jobs/{d_job['job_id']}")
    assert s == 200 and job["job"]["status"] == "interrupted" and job["job"]["collected"] is True
    # every collected job's DB was deleted on its node; the leader keeps no range DB either
    assert job["job"]["discarded"] is True and not d_db.exists()
    wait_for(lambda: job_files(b) == [] and job_files(d) == [], 10, "the collected job DBs to be deleted")
    assert not list((a.dir / "data" / "coordinator").rglob("*.db*"))
    assert any(n["node_id"] == "D" and n["alive"] for n in a.status()["nodes"])
    # the pipeline state and `status`, as with the SSH backend
    state = json.loads((work / "state.json").read_text())
    assert state["phase_status"]["canonical_selfplay"] == "done"
    assert state["games_completed"] == state["games_target"] == target
    assert all(r["status"] == "merged" for r in state["ranges"]) and len(state["ranges"]) == target // gpw
    assert state["workers"]["C/1"]["status"] == "failed"
    s = pipeline("status", cwd=work)
    assert s.returncode == 0 and f"games: {target}/{target} (100%)" in s.stdout and "B/1" in s.stdout, s.stdout
    # the forged datagrams were refused
    assert not any(n["node_id"] == "EVIL" for n in a.status()["nodes"])
    assert a.status()["discovery"]["rejected"] >= 2
    # C restarts later: it rejoins, and the games it had committed are still in its data dir
    c.start()
    wait_for(lambda: alive_view(a, "ABCD"), 15, "C to rejoin")
    s, job, _ = http("GET", f"{c.url}/jobs/{c_job['job_id']}")
    assert s == 200 and job["job"]["status"] == "interrupted" and job["job"]["games"] > 0
    # the leader still knows the finished run: it collects C's job (duplicates) and C deletes its DB
    c_db = c.dir / "data" / "runs" / c_job["run_id"] / f"{c_job['job_id']}.db"
    wait_for(lambda: http("GET", f"{c.url}/jobs/{c_job['job_id']}")[1]["job"]["discarded"], 15,
             "C's job to be collected and its DB deleted")
    assert not c_db.exists() and job_files(c) == []
    # the same command again: nothing left to play
    r2 = pipeline(*args, cwd=work)
    assert r2.returncode == 0, r2.stderr
    assert f"0 new games ({target} already present" in r2.stdout
    # the token never reached a log
    for n in (a, b, c, d):
        assert TOKEN not in n.log.read_text(errors="replace")
        assert TOKEN not in (n.dir / "data" / "node.log").read_text(errors="replace")
    assert TOKEN not in (work / "logs" / "pipeline_orchestrator.log").read_text()
    print(stderr)
    print(f"distributed run with two killed workers: {elapsed:.1f}s")


def test_auth_malformed_bodies_static_peers_restart_and_load(nodes, tmp_path):
    a = nodes("A", discovery_ports=None, priority=1, max_jobs=0).start()
    b = nodes("B", discovery_ports=None, peers=[a.url]).start()
    c = nodes("C", discovery_ports=None, peers=[a.url]).start()
    # static peers only (no UDP): B learns of C through A
    wait_for(lambda: alive_view(b, "ABC") and alive_view(a, "ABC"), 15, "B to learn of C through A")
    # -- auth: every endpoint but /health, missing or wrong token -> 401
    endpoints = [("GET", "/cluster/status"), ("GET", "/node/state"), ("POST", "/pipeline/start"),
                 ("GET", "/pipeline/status"), ("POST", "/pipeline/stop"), ("POST", "/pipeline/ack"),
                 ("POST", "/pipeline/selfplay_worker"), ("GET", "/jobs"), ("GET", "/jobs/x"), ("GET", "/jobs/x/db"),
                 ("POST", "/jobs/x/kill"), ("GET", "/pipeline/runs/r/ranges/0/db"), ("GET", "/debug/loop"),
                 ("GET", "/no/such/endpoint")]
    for method, path in endpoints:
        for tok in (None, "wrong", TOKEN + "x", ""):
            s, body, _ = http(method, f"{a.url}{path}", {} if method == "POST" else None, token=tok)
            assert s == 401, (method, path, tok, s, body)
            assert "token" in body["error"]
    s, body, _ = http("GET", f"{a.url}/health", token=None)
    assert s == 200 and body["status"] == "ok" and body["role"] == "leader"
    s, body, raw = http("GET", f"{a.url}/cluster/status")
    assert s == 200 and TOKEN.encode() not in raw and len(raw) < 20000
    # the token is not on any node's command line (it came from the environment)
    for n in (a, b, c):
        with open(f"/proc/{n.proc.pid}/cmdline", "rb") as fh:
            assert TOKEN.encode() not in fh.read()
    # -- malformed bodies and unknown phases: 4xx with a message, never 5xx
    start = f"{a.url}/pipeline/start"
    bad = [
        (b"not json", 400, "not valid JSON"), (b"[1, 2]", 400, "JSON object"), (b"", 400, "empty"),
        (b'{"board": "square8", "num_games": 10}', 400, "missing field 'phase'"),
        (b'{"phase": "train_model", "board": "square8", "num_games": 10}', 400, "unknown phase 'train_model'"),
        (b'{"phase": "parity_validation"}', 422, "runs on the pipeline's own machine"),
        (b'{"phase": "canonical_selfplay", "num_games": 10}', 400, "missing field 'board'"),
        (b'{"phase": "canonical_selfplay", "board": "chess", "num_games": 10}', 400, "field 'board'"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": "ten"}', 400, "must be an integer"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": true}', 400, "must be an integer"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": -1}', 400, "field 'num_games'"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": 5, "skip": "3-1"}', 400, "'skip'"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": 5, "colour": 1}', 400, "unknown field"),
        (b'{"phase": "canonical_selfplay", "board": "square8", "num_games": 5, "capability": "gpu"}', 409,
         "capability gpu"),
        (b'{"phase": 7}', 400, "must be a string"),
    ]
    for raw, want, text in bad:
        s, body, payload = http("POST", start, raw=raw)
        assert s == want and text in body["error"], (raw, s, payload)
    s, body, _ = http("POST", start, raw=b"{" + b'"x": "' + b"a" * (1 << 20) + b'"}')
    assert s == 413 and "1048576" in body["error"]
    worker = f"{b.url}/pipeline/selfplay_worker"
    for raw, text in [(b'{"board": "square8"}', "'start'"), (b'{"board": "square8", "indices": "5-2"}', "'indices'"),
                      (b'{"board": "square8", "indices": "1", "start": 0, "count": 1}', "not both"),
                      (b'{"board": "square8", "start": 0, "count": 0}', "'count'"),
                      (b'{"board": "square8", "indices": "0-9", "range": [5, 9]}', "'range'"),
                      (b'{"board": "square8", "indices": "0-9", "job_id": "../x"}', "'job_id'")]:
        s, body, payload = http("POST", worker, raw=raw)
        assert s == 400 and text in body["error"], (raw, s, payload)
    for method, path, want in [("GET", "/pipeline/status?run_id=nope", 404), ("GET", "/jobs/nope", 404),
                               ("GET", "/pipeline/status?run_id=x&since=z", 400), ("GET", "/no/such", 404),
                               ("PUT", "/pipeline/start", 405), ("POST", "/pipeline/ack", 400)]:
        s, body, payload = http(method, f"{a.url}{path}", {} if method in ("POST", "PUT") else None)
        assert s == want and body.get("error"), (method, path, s, payload)
    # a non-leader refuses to start a run and names the leader
    s, body, _ = http("POST", f"{b.url}/pipeline/start",
                      {"phase": "canonical_selfplay", "board": "square8", "num_games": 5})
    assert s == 409 and body["leader"] == {"node_id": "A", "url": a.url}
    # -- a job on one node, and the node's restart: the finished DB persists and stays downloadable
    s, body, _ = http("POST", worker, {"board": "square8", "start": 0, "count": 30, "seed": 9, "threads": 1,
                                       "job_id": "solo-1"})
    assert s == 202 and body["job"]["status"] == "running", body
    s, again, _ = http("POST", worker, {"board": "square8", "start": 0, "count": 30, "seed": 9, "job_id": "solo-1"})
    assert s == 200 and again["created"] is False
    wait_for(lambda: http("GET", f"{b.url}/jobs/solo-1")[1]["job"]["status"] == "done", 30, "the job to finish")
    s, job, _ = http("GET", f"{b.url}/jobs/solo-1")
    assert job["job"]["games"] == 30 and job["job"]["sha256"]
    b.kill()
    b.start()
    s, job2, _ = http("GET", f"{b.url}/jobs/solo-1")
    assert s == 200 and job2["job"]["status"] == "done" and job2["job"]["sha256"] == job["job"]["sha256"]
    s, _, payload = http("GET", f"{b.url}/jobs/solo-1/db")
    assert s == 200 and len(payload) == job["job"]["size"]
    got = tmp_path / "solo.db"
    got.write_bytes(payload)
    assert [r[0] for r in db_rows(got, "SELECT game_index FROM games ORDER BY game_index")] == list(range(30))
    for raw, text in [(b'{"discard": 1}', "must be true or false"), (b'{"dicsard": true}', "unknown field"),
                      (b"[true]", "JSON object")]:
        s, body, payload = http("POST", f"{b.url}/jobs/solo-1/collected", raw=raw)
        assert s == 400 and text in body["error"], (raw, s, payload)
    assert http("GET", f"{b.url}/jobs/solo-1")[1]["job"]["collected"] is False  # refused calls change nothing
    # -- bounded load: 1000 status requests from 20 concurrent clients, no errors, no loop stall
    assert http("POST", f"{a.url}/debug/loop/reset", {})[0] == 200

    async def load():
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        statuses: list[int] = []
        sizes: list[int] = []
        todo = iter(range(1000))

        async def client():
            async with aiohttp.ClientSession(headers=hdr) as sess:
                for _ in todo:
                    async with sess.get(f"{a.url}/cluster/status", timeout=aiohttp.ClientTimeout(total=10)) as r:
                        sizes.append(len(await r.read()))
                        statuses.append(r.status)

        t = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(20))), 60)
        return statuses, sizes, time.monotonic() - t

    statuses, sizes, secs = asyncio.run(load())
    assert len(statuses) == 1000 and set(statuses) == {200}
    assert max(sizes) < 20000  # small, bounded status payloads
    s, health, _ = http("GET", f"{a.url}/health", token=None)
    lag = health["loop_lag_ms"]
    assert lag["samples"] > 0 and lag["max_since_reset"] < 100, lag
    print(f"1000 status requests from 20 clients in {secs:.2f}s; max loop lag {lag['max_since_reset']} ms")


def test_leader_restart_mid_run_loses_and_replays_nothing(nodes, tmp_path):
    ports: list[int] = []
    a = nodes("A", discovery_ports=ports, priority=1, max_jobs=0)
    b = nodes("B", discovery_ports=ports)
    c = nodes("C", discovery_ports=ports)
    for n in (a, b, c):
        n.start(wait=False)
    for n in (a, b, c):
        n.wait_ready()
    wait_for(lambda: alive_view(a, "ABC"), 20, "the nodes to discover each other")
    target, gpw = 1500, 150
    out = tmp_path / "games.db"
    work = tmp_path / "pipe"
    work.mkdir()
    proc = pipeline("--backend", "p2p", "--p2p-leader", a.url, "run", "canonical_selfplay", "--board", "square19",
                    "--num-games", str(target), "--seed", "11", "--games-per-worker", str(gpw), "--batch-size", "5",
                    "--threads", "1", "--output-db", str(out), "--quiet", cwd=work, popen=True)

    def some_merged_some_running():
        try:
            st = json.loads((work / "state.json").read_text())
        except (OSError, ValueError):
            return False
        statuses = [r["status"] for r in st.get("ranges", [])]
        return statuses.count("merged") >= 2 and "running" in statuses

    try:
        wait_for(some_merged_some_running, 60, "two merged ranges while others run")
        a.kill()  # the coordinator dies mid-run; the workers' jobs go on
        a.start()
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "lost the P2P leader" in stderr and "answers again" in stderr, stderr
    assert "restored after a restart of the coordinator" in (a.dir / "data" / "node.log").read_text()
    assert [r[0] for r in db_rows(out, "SELECT game_index FROM games ORDER BY game_index")] == list(range(target))
    # nothing was played twice: the workers' job DBs hold exactly the target between them
    played = 0
    for n in (b, c):
        s, body, _ = http("GET", f"{n.url}/jobs?limit=500")
        assert s == 200
        assert all(j["status"] == "done" and j["collected"] for j in body["jobs"]), body["jobs"]
        played += sum(j["games"] for j in body["jobs"])
    assert played == target
    # and every job's DB is gone from the workers (the records tell what they played)
    for n in (b, c):
        wait_for(lambda: job_files(n) == [], 10, f"{n.name}'s job DBs to be deleted")
    st = json.loads((work / "state.json").read_text())
    assert st["phase_status"]["canonical_selfplay"] == "done" and st["games_completed"] == target
    s, runs, _ = http("GET", f"{a.url}/pipeline/status")
    assert [r["status"] for r in runs["runs"]] == ["done"]


def test_keep_worker_dbs_keeps_the_job_dbs_on_the_nodes(nodes, tmp_path):
    a = nodes("A", discovery_ports=None, priority=1, max_jobs=0).start()
    b = nodes("B", discovery_ports=None, peers=[a.url], max_jobs=2).start()
    wait_for(lambda: alive_view(a, "AB"), 15, "B to join A")
    work = tmp_path / "pipe"
    work.mkdir()
    cfg = work / "keep.yaml"
    cfg.write_text("selfplay:\n  keep_worker_dbs: true\n")
    out = tmp_path / "kept.db"
    args = ["--backend", "p2p", "--p2p-leader", a.url, "run", "canonical_selfplay", "--board", "square8",
            "--num-games", "400", "--seed", "2", "--games-per-worker", "100", "--threads", "1", "--output-db",
            str(out), "--quiet"]
    default = pipeline("--dry-run", *args, cwd=work)
    assert default.returncode == 0 and "each job's DB (and its -wal, -shm) is deleted on its node" in default.stdout
    plan = pipeline("--config", str(cfg), "--dry-run", *args, cwd=work)
    assert plan.returncode == 0 and "stay in the nodes' data dirs" in plan.stdout, plan.stdout + plan.stderr
    r = pipeline("--config", str(cfg), *args, cwd=work)
    assert r.returncode == 0, r.stderr
    assert [x[0] for x in db_rows(out, "SELECT game_index FROM games ORDER BY game_index")] == list(range(400))
    s, body, _ = http("GET", f"{b.url}/jobs")
    jobs = body["jobs"]
    assert all(j["collected"] and not j["discarded"] for j in jobs) and sum(j["games"] for j in jobs) == 400
    assert job_files(b) == sorted(f"{j['run_id']}/{j['job_id']}.db" for j in jobs)
    for j in jobs:  # still downloadable
        assert http("GET", f"{b.url}/jobs/{j['job_id']}/db")[0] == 200


def test_device_cuda_runs_only_on_gpu_nodes_and_plays_the_cpu_games(nodes, tmp_path):
    """--device cuda through the leader: ranges go to nodes with capability gpu, whose workers play
    them on the GPU path. No GPU here: node B's processes see the stand-in cupy of tests/standin_gpu
    (launches checked against the shipped kernels, run as their host twin)."""
    import numpy as np

    from ringrift import _core

    standin = str(Path(__file__).resolve().parent / "standin_gpu")
    a = nodes("A", discovery_ports=None, priority=1, max_jobs=1).start()
    b = nodes("B", discovery_ports=None, peers=[a.url], max_jobs=2, capabilities="cpu,gpu",
              env={"PYTHONPATH": standin}).start()
    wait_for(lambda: alive_view(a, "AB"), 15, "B to join A")
    work = tmp_path / "pipe"
    work.mkdir()
    out = tmp_path / "gpu.db"
    args = ["--backend", "p2p", "--p2p-leader", a.url, "run", "canonical_selfplay", "--board", "hex8",
            "--num-games", "120", "--seed", "4", "--games-per-worker", "40", "--device", "cuda", "--output-db",
            str(out), "--quiet"]
    plan = pipeline("--dry-run", *args, cwd=work)
    assert plan.returncode == 0 and "only nodes with capability gpu play, on their GPU: B" in plan.stdout
    r = pipeline(*args, cwd=work)
    assert r.returncode == 0, r.stderr
    hosts = {x[0] for x in db_rows(out, "SELECT DISTINCT host FROM games")}
    assert hosts == {"B"}
    s, body, _ = http("GET", f"{b.url}/jobs")
    assert body["jobs"] and all(j["device"] == "cuda" for j in body["jobs"])
    cpu = _core.selfplay_batch("hex8", 2, 4, list(range(120)), "random", threads=1, max_moves=2000)
    from ringrift.db import GameDB

    with GameDB(out, create=False, readonly=True) as gdb:
        rows = sorted(gdb.iter_games(), key=lambda row: row.game_index)
    assert np.array_equal(np.concatenate([row.moves for row in rows]), cpu["moves"])
