"""--backend ray on a real multi-node Ray cluster on loopback: a head and two worker nodes started
with `ray start` (each in its own process group, its temp dir, TMPDIR and HOME under tmp_path),
a run of thousands of games whose driver is killed part-way and rerun, one worker node killed
in the rerun; every game exactly once, `ringrift-parity --db` passes, and no Ray process is left
behind. Also: `cluster list|health` against the cluster, and the one-line error without Ray."""

from __future__ import annotations

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

from ringrift.pipeline.ranges import IndexSet

BIN = Path(sys.executable).parent
GAMES = 12000
PER_RANGE = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_processes(root: str, groups: list[int]) -> list[str]:
    """Processes of our cluster still alive: in one of our process groups, or naming our temp dir."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    left = []
    for line in out.splitlines():
        pid, pgid, stat, args = (line.split(None, 3) + [""])[:4]
        if stat.startswith("Z") or int(pid) == os.getpid():
            continue
        if int(pgid) in groups or root in args:
            left.append(line.strip()[:200])
    return left


class LoopbackRay:
    """A Ray cluster of this test: every node started by `ray start` in a new session, so that
    killing its process group kills the node (raylet, workers, agents) and nothing else."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []
        (root / "tmp").mkdir()
        (root / "home").mkdir()
        self.env = dict(os.environ, HOME=str(root / "home"), TMPDIR=str(root / "tmp"), RAY_TMPDIR=str(root),
                        RAY_USAGE_STATS_ENABLED="0",
                        # a killed node is declared dead after ~5 s, not Ray's default ~15 s
                        RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="5",
                        RAY_raylet_start_wait_time_s="150")
        self.env.pop("RAY_ADDRESS", None)

    def start_nodes(self, n: int, head: bool = False) -> None:
        """Start `n` nodes (the head alone), each `ray start` in a session of its own."""
        argv = [str(BIN / "ray"), "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                "--object-store-memory", str(100 << 20), "--disable-usage-stats", "--temp-dir", str(self.root)]
        argv += (["--head", "--port", str(self.port), "--include-dashboard", "false"] if head
                 else ["--address", self.address])
        for _ in range(n):  # one after the other: on a loaded box parallel starts time out
            p = subprocess.Popen(argv, env=self.env, start_new_session=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
            self.groups.append(p.pid)
            out, _ = p.communicate(timeout=180)
            assert p.returncode == 0, out[-2000:]

    def stop(self) -> list[str]:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for g in self.groups:
                try:
                    os.killpg(g, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (3 if sig == signal.SIGTERM else 10)
            while time.monotonic() < deadline and _ray_processes(str(self.root), self.groups):
                time.sleep(0.2)
        return _ray_processes(str(self.root), self.groups)


@pytest.fixture
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ringrift[ray]')")
    root = tmp_path_factory.mktemp("ray")  # short: Ray's socket paths must fit in 107 bytes
    cluster = LoopbackRay(root)
    try:
        cluster.start_nodes(1, head=True)
        cluster.start_nodes(2)
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, "Ray processes left behind:\n" + "\n".join(left)


def _pipeline(cluster, *args, env_extra=None, **popen):
    argv = [str(BIN / "ringrift-pipeline"), "--backend", "ray", "--ray-address", cluster.address, *args]
    env = dict(os.environ, RAY_TMPDIR=str(cluster.root), TMPDIR=str(cluster.root / "tmp"), **(env_extra or {}))
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _wait_state(path: Path, proc, cond, what: str, limit: float = 90) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if data is not None and cond(data):
            return data
        if proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _alive_nodes(cluster, cmd="list") -> str:
    p = _pipeline(cluster, "cluster", cmd)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    return out


def test_ray_run_survives_a_killed_driver_and_a_killed_node(ray_cluster, tmp_path):
    c = ray_cluster
    deadline = time.monotonic() + 60
    while "3 alive nodes of 3" not in (listing := _alive_nodes(c)):
        assert time.monotonic() < deadline, listing
        time.sleep(0.5)
    health = _alive_nodes(c, "health")
    assert "3/3 alive nodes healthy" in health and health.count("(same)") == 3, health

    db = tmp_path / "games.db"
    state = tmp_path / "state.json"
    run = ["--state", str(state), "run", "canonical_selfplay", "--board", "square8", "--policy", "random",
           "--num-games", str(GAMES), "--games-per-worker", str(PER_RANGE), "--threads", "1",
           "--output-db", str(db), "--quiet"]

    # 1. The driver is killed (SIGKILL) once some ranges are merged.
    first = _pipeline(c, *run, start_new_session=True)
    seen = _wait_state(state, first, lambda d: d.get("games_completed", 0) >= 1000, "1000 games merged")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    assert seen["games_completed"] < GAMES

    # 2. The rerun resumes; a worker node is killed while it plays. Every range DB comes back in
    # chunks of 256 KiB read by tasks pinned to its node (the path of DBs over 64 MiB).
    second = _pipeline(c, *run, env_extra={"RINGRIFT_RAY_INLINE_BYTES": "0", "RINGRIFT_RAY_CHUNK_BYTES": "262144"})
    resumed = _wait_state(state, second, lambda d: d.get("pid") == second.pid and d.get("ranges"), "the rerun")
    have = resumed["games_completed"]
    _wait_state(state, second, lambda d: d.get("games_completed", 0) >= have + 1500, "the rerun to progress")
    os.killpg(c.groups[2], signal.SIGKILL)
    killed_at = json.loads(state.read_text())["games_completed"]
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out
    assert killed_at < GAMES, f"the node was killed after the run had finished ({killed_at} games)"

    # Every game exactly once: all indices present, no identity twice.
    con = sqlite3.connect(db)
    rows = con.execute("SELECT game_index FROM games WHERE board='square8' AND num_players=2 AND policy='random' "
                       "AND seed=0").fetchall()
    hosts = {h for (h,) in con.execute("SELECT DISTINCT host FROM games")}
    con.close()
    assert len(rows) == GAMES and IndexSet.from_indices(i for (i,) in rows) == IndexSet.interval(0, GAMES)
    assert len(hosts) >= 2, hosts  # played on several nodes
    final = json.loads(state.read_text())
    assert final["phase_status"]["canonical_selfplay"] == "done" and final["games_completed"] == GAMES
    assert all(r["status"] == "merged" for r in final["ranges"])
    nodes = {n: w for n, w in final["workers"].items() if w.get("ranges_done")}
    assert len(nodes) >= 2 and sum(w["games_merged"] for w in nodes.values()) == GAMES - have, final["workers"]
    assert f"({have} already present, target {GAMES})" in out and f"{GAMES - have} new games" in out, out

    log = (tmp_path / "logs" / "pipeline_orchestrator.log").read_text()
    assert log.count(" chunks\n") >= (GAMES - have) // PER_RANGE - 5, log[-3000:]  # the chunked path ran

    parity = subprocess.run([str(BIN / "ringrift-parity"), "--db", str(db), "--sample", "0"], capture_output=True,
                            text=True, timeout=300)
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert f"{GAMES}/{GAMES} games match" in parity.stdout, parity.stdout


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    from ringrift.pipeline.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc = main(["--backend", "ray", "--state", str(tmp_path / "st.json"), "run", "canonical_selfplay",
               "--board", "square8", "--num-games", "10", "--output-db", str(tmp_path / "g.db")])
    err = capsys.readouterr().err
    assert rc != 0 and err.strip().count("\n") == 0, err
    assert "pip install 'ringrift[ray]'" in err, err
    assert not (tmp_path / "g.db").exists() and not (tmp_path / "st.json").exists()
    with pytest.raises(Exception, match=r"pip install 'ringrift\[ray\]'"):
        from ringrift import pipeline

        pipeline.run_selfplay(10, board="square8", output_db=tmp_path / "g.db", backend="ray",
                              state=tmp_path / "st.json")
    rc = main(["--backend", "ray", "cluster", "health"])
    assert rc != 0 and "pip install 'ringrift[ray]'" in capsys.readouterr().err


def test_a_ray_address_that_does_not_answer_fails_in_one_line(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ringrift[ray]')")
    from ringrift.pipeline.cli import main

    port = _free_port()  # nothing listens there now
    for addr, says in ((f"127.0.0.1:{port}", "cannot connect to the Ray cluster at"),
                       (f"ray://127.0.0.1:{port}", "cannot connect to the Ray cluster at"),
                       ("nonsense", "is not auto, HOST:PORT or ray://HOST:PORT")):
        t0 = time.monotonic()
        assert main(["--backend", "ray", "--ray-address", addr, "cluster", "list"]) != 0
        err = capsys.readouterr().err
        assert says in err and err.strip().count("\n") == 0, err
        assert time.monotonic() - t0 < 30
