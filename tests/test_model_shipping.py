"""Self-play with a net (onnx:PATH, gumbel:onnx:PATH) on the ssh, p2p and ray backends (and the
loop's self-play step over ssh): the model is shipped to each worker once, content-addressed and
checked on arrival, and the remote games (and the search's targets) are the ones a local run
plays (same moves per (seed, index)), stored under the net's id.

Real things only: sshd hosts on 127.0.0.1 (tests/test_pipeline_ssh.py's Cluster), ringrift-p2p
nodes as processes on 127.0.0.1 (tests/test_p2p_cluster.py's Node), a tiny net trained here for
a few batches (what matters is that it is a real ringrift-train ONNX file, not its strength)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")
pytest.importorskip("onnxruntime", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")

from ringrift.db import GameDB  # noqa: E402
from ringrift.selfplay.runner import run_selfplay  # noqa: E402

import test_p2p_cluster as p2p  # noqa: E402
import test_pipeline_ssh as ssh  # noqa: E402

HAVE_SSHD = (os.path.exists(ssh.SSHD) and os.path.exists(ssh.KEYGEN) and hasattr(os, "geteuid")
             and os.geteuid() == 0)
needs_sshd = pytest.mark.skipif(not HAVE_SSHD, reason="needs root and OpenSSH's sshd and ssh-keygen "
                                                      "(run: bash scripts/setup_sshd.sh)")
MAX_MOVES = 200


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def games(db: Path) -> dict:
    """{(policy, seed, index): moves bytes} of every game of a DB."""
    with GameDB(db, readonly=True) as g:
        return {(x.policy, x.seed, x.game_index): x.moves.tobytes() for x in g.iter_games()}


def targets(db: Path) -> dict:
    """The search's stored targets of every game of a DB (empty without a search)."""
    con = sqlite3.connect(db)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'search_targets'").fetchone():
            return {}
        return {r[:5]: r[5:] for r in con.execute("SELECT * FROM search_targets")}
    finally:
        con.close()


def local_games(tmp_path: Path, policy: str, n: int, seed: int, with_targets: bool = False):
    """The reference: the same run in this process (no pipeline, no worker)."""
    path = tmp_path / f"local_{abs(hash((policy, n, seed)))}.db"
    with GameDB(path) as db:
        r = run_selfplay(db, board="square8", num_games=n, seed=seed, policy=policy, threads=1, max_moves=MAX_MOVES)
    assert r.games == n
    return (games(path), targets(path)) if with_targets else games(path)


def log_text(cwd: Path) -> str:
    """The orchestrator's log: $RINGRIFT_LOG_DIR (conftest: tmp_path/logs), else logs/ under `cwd`."""
    logs = Path(os.environ.get("RINGRIFT_LOG_DIR") or cwd / "logs")
    return (logs / "pipeline_orchestrator.log").read_text()


# ---- ssh -----------------------------------------------------------------------------------------

@needs_sshd
def test_ssh_ships_the_net_once_checked_and_plays_the_local_games(tmp_path, tiny_net):
    (tmp_path / "c").mkdir()
    c = ssh.Cluster(tmp_path / "c", ["h1", "h2"])
    try:
        local_work = tmp_path / "local_work"  # `localhost` beside the sshd hosts: a subprocess, files copied
        cfg = c.write_config(games_per_worker=3, extra_hosts=(
            f"  localhost:\n    work_dir: {json.dumps(str(local_work))}\n    threads: 1\n"))
        work = tmp_path / "pipe"
        work.mkdir()
        sha = sha256(tiny_net)
        spec = f"onnx:{tiny_net}"
        r = ssh.pipeline(cfg, "run", "canonical_selfplay", "--board", "square8", "--num-games", "8", "--seed", "4",
                         "--policy", spec, "--temperature", "1", "--threads", "1", "--max-moves", str(MAX_MOVES),
                         "--output-db", str(tmp_path / "net.db"), "--quiet", cwd=work)
        assert r.returncode == 0, r.stderr
        got = games(tmp_path / "net.db")
        assert got == local_games(tmp_path, f"{spec}:temperature=1", 8, 4)  # the same games, the same net id
        assert {k[0] for k in got} == {f"onnx:square8-{_model_id(tiny_net)}:temperature=1"}
        for name, wd in (("h1", c.hosts["h1"].work), ("h2", c.hosts["h2"].work), ("localhost", local_work)):
            copy = wd / "models" / f"{sha}.onnx"
            assert copy.read_bytes() == tiny_net.read_bytes()
            assert f"{name}: shipped model {sha[:12]}" in log_text(work)
        with GameDB(tmp_path / "net.db", readonly=True) as g:
            hosts = {x.host for x in g.iter_games()}
        assert hosts == {"h1", "h2", "localhost"}, hosts  # one range each, recorded by its host's name
        assert not list((c.hosts["h1"].work / "models").glob(".*"))  # no part file left behind

        # Second run, the same net under search: h2 has it (not shipped again), h1's copy was
        # tampered with, so its probe's hash check fails and it gets a fresh, checked copy.
        (c.hosts["h1"].work / "models" / f"{sha}.onnx").write_bytes(b"not the model")
        stamp = (c.hosts["h2"].work / "models" / f"{sha}.onnx").stat().st_mtime_ns
        gspec = f"gumbel:onnx:{tiny_net}:sims=4,top_k=4"
        r = ssh.pipeline(cfg, "run", "canonical_selfplay", "--board", "square8", "--num-games", "4", "--seed", "6",
                         "--policy", gspec, "--threads", "1", "--max-moves", str(MAX_MOVES), "--games-per-worker", "2",
                         "--output-db", str(tmp_path / "search.db"), "--quiet", cwd=work)
        assert r.returncode == 0, r.stderr
        log = log_text(work)
        assert f"h2: has model {sha[:12]} already: not shipped" in log
        assert log.count(f"h1: shipped model {sha[:12]}") == 2 and log.count(f"h2: shipped model {sha[:12]}") == 1
        assert (c.hosts["h2"].work / "models" / f"{sha}.onnx").stat().st_mtime_ns == stamp
        assert (c.hosts["h1"].work / "models" / f"{sha}.onnx").read_bytes() == tiny_net.read_bytes()
        got = games(tmp_path / "search.db")
        want, want_targets = local_games(tmp_path, gspec, 4, 6, with_targets=True)
        assert got == want and len(want_targets) == 4
        assert targets(tmp_path / "search.db") == want_targets  # the search's targets came along, bit for bit
        assert all(k[0].startswith(f"gumbel:onnx:square8-{_model_id(tiny_net)}:") for k in got)
        assert ssh.parity(tmp_path / "search.db").returncode == 0
    finally:
        c.stop()


@needs_sshd
@pytest.mark.filterwarnings("ignore:.*DSA is deprecated")  # asyncssh, imported here by the loop's in-process executor
def test_ssh_host_without_onnxruntime_and_bad_models_fail_in_one_line(tmp_path, tiny_net):
    # h2's python cannot import onnxruntime (a real interpreter with a blocking module first on its path)
    block = tmp_path / "block"
    (block / "onnxruntime").mkdir(parents=True)
    (block / "onnxruntime" / "__init__.py").write_text("raise ImportError('onnxruntime is blocked on this host')\n")
    wrapper = tmp_path / "python-without-onnxruntime"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={block} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    (tmp_path / "c").mkdir()
    c = ssh.Cluster(tmp_path / "c", ["h1", "h2"])
    try:
        cfg = c.write_config(games_per_worker=2, per_host={"h2": {"python": str(wrapper)}})
        work = tmp_path / "pipe"
        work.mkdir()
        args = ["run", "canonical_selfplay", "--board", "square8", "--num-games", "4", "--threads", "1",
                "--max-moves", str(MAX_MOVES), "--output-db", str(tmp_path / "o.db"), "--quiet"]
        plan = ssh.pipeline(cfg, "--dry-run", *args, "--policy", f"onnx:{tiny_net}", cwd=work)
        assert plan.returncode == 0 and f"the net {tiny_net} (" in plan.stdout and "is shipped" in plan.stdout
        r = ssh.pipeline(cfg, *args, "--policy", f"onnx:{tiny_net}", cwd=work)
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stderr.splitlines() if "h2" in x)
        assert "onnxruntime is not installed" in line and str(wrapper) in line, r.stderr
        assert not (c.hosts["h2"].work / "models").exists()  # nothing was shipped to it
        assert len(games(tmp_path / "o.db")) == 4  # h1 played them all

        # the loop's self-play step on the same backend: the best net shipped like any net's policy
        _loop_selfplay_over_ssh(cfg, tmp_path, tiny_net)

        # before any host is contacted: a missing file, a file that is not a net
        for bad, why in ((tmp_path / "nope.onnx", "no such file"), (tmp_path / "junk.onnx", "not a loadable ONNX")):
            if bad.name == "junk.onnx":
                bad.write_bytes(b"\x08\x01junk")
            logins = c.hosts["h1"].accepted_logins()
            r = ssh.pipeline(cfg, *args, "--policy", f"onnx:{bad}", cwd=work)
            assert r.returncode != 0 and why in r.stderr and str(bad) in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert c.hosts["h1"].accepted_logins() == logins
    finally:
        c.stop()


def _loop_selfplay_over_ssh(cfg: Path, tmp_path: Path, tiny_net: Path) -> None:
    import argparse

    from ringrift.pipeline.api import backend_selfplay, open_context
    from ringrift.pipeline.loop import Loop, LoopOptions, search_spec

    ctx = open_context(argparse.Namespace(backend="ssh", config=str(cfg), state=str(tmp_path / "loop_state.json"),
                                          p2p_leader=None, p2p_auth_token=None, dry_run=False, ray_address=None))
    ctx.start()
    try:
        play = backend_selfplay(ctx)
        assert play is not None
        loop = Loop(LoopOptions(run_dir=str(tmp_path / "loop"), games=3, sims=4, top_k=4, seed=1, threads=1,
                                max_moves=MAX_MOVES), log=lambda line: None, selfplay=play)
        gdir = tmp_path / "loop" / "gen_002"
        gdir.mkdir(parents=True)
        res = loop._selfplay(2, gdir, {"best": {"model": str(tiny_net)}})
    finally:
        ctx.close()
    assert res["backend"] == "ssh" and res["played"] == 3 and res["policy"].startswith("gumbel:onnx:square8-")
    want, want_targets = local_games(tmp_path, search_spec({"model": str(tiny_net)}, 4, 4, 1.0), 3, 1002,
                                     with_targets=True)
    assert games(gdir / "games.db") == want and targets(gdir / "games.db") == want_targets


def test_a_corrupt_transfer_is_refused_and_deleted(tmp_path, tiny_net):
    """What a host runs after the copy (`model-install`), and the worker's own check."""
    sha = sha256(tiny_net)
    part = tmp_path / "models" / ".x.part"
    part.parent.mkdir()
    data = bytearray(tiny_net.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    part.write_bytes(bytes(data))
    cmd = [sys.executable, "-m", "ringrift.pipeline", "model-install", "--work-dir", str(tmp_path), "--sha256", sha,
           "--part", "models/.x.part"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "does not match its SHA-256" in json.loads(r.stdout)["error"]
    assert not part.exists() and not (tmp_path / "models" / f"{sha}.onnx").exists()
    part.write_bytes(tiny_net.read_bytes())
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    assert (tmp_path / "models" / f"{sha}.onnx").read_bytes() == tiny_net.read_bytes()
    # a worker whose copy differs from what the controller sent refuses to play
    (tmp_path / "models" / f"{sha}.onnx").write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "worker", "--board", "square8", "--policy",
                        f"onnx:models/{sha}.onnx:temperature=1", "--model-sha256", sha, "--start", "0", "--count",
                        "1", "--output-db", "w.db"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "does not match the SHA-256 the controller sent" in r.stderr, r.stderr
    assert not (tmp_path / "w.db").exists()


def _model_id(path: Path) -> str:
    from ringrift.train.onnx_export import model_id

    return model_id(path)


# ---- p2p -----------------------------------------------------------------------------------------

def _models(node) -> dict:
    s, body, _ = p2p.http("GET", f"{node.url}/models")
    assert s == 200, body
    return body


def test_p2p_ships_the_net_once_checked_and_plays_the_local_games(tmp_path, tiny_net):
    made = []
    try:
        a = p2p.Node(tmp_path / "nodes", "A", discovery_ports=None, priority=1, max_jobs=0)
        made.append(a.start())
        # C cannot import onnxruntime (a blocking module first on its path): it never gets a net's range
        block = tmp_path / "block"
        (block / "onnxruntime").mkdir(parents=True)
        (block / "onnxruntime" / "__init__.py").write_text("raise ImportError('blocked on this node')\n")
        c = p2p.Node(tmp_path / "nodes", "C", discovery_ports=None, peers=[a.url], max_jobs=2,
                     env={"PYTHONPATH": str(block)})
        made.append(c.start())
        p2p.wait_for(lambda: p2p.alive_view(a, "AC"), 15, "C to join A")
        work = tmp_path / "pipe"
        work.mkdir()
        sha = sha256(tiny_net)
        common = ["--backend", "p2p", "--p2p-leader", a.url, "run", "canonical_selfplay", "--board", "square8",
                  "--threads", "1", "--max-moves", str(MAX_MOVES), "--quiet"]
        spec = f"onnx:{tiny_net}:temperature=1"
        r = p2p.pipeline(*common, "--num-games", "2", "--policy", spec, "--output-db", str(tmp_path / "no.db"),
                         cwd=work)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "needs onnxruntime" in r.stderr and "nodes without onnxruntime: C" in r.stderr, r.stderr

        b = p2p.Node(tmp_path / "nodes", "B", discovery_ports=None, peers=[a.url], max_jobs=2,
                     env={"RINGRIFT_MAX_MODEL_BYTES": "1000000"})
        made.append(b.start())
        p2p.wait_for(lambda: p2p.alive_view(a, "ABC"), 15, "B to join A")
        r = p2p.pipeline(*common, "--num-games", "8", "--seed", "4", "--games-per-worker", "3", "--policy", spec,
                         "--output-db", str(tmp_path / "net.db"), cwd=work)
        assert r.returncode == 0, r.stderr
        assert games(tmp_path / "net.db") == local_games(tmp_path, spec, 8, 4)
        assert _models(a)["received"] == 1 and _models(b)["received"] == 1  # pipeline -> A, A -> B: once each
        assert (b.dir / "data" / "models" / f"{sha}.onnx").read_bytes() == tiny_net.read_bytes()
        p2p_log = work / "logs" / "pipeline_orchestrator.log"  # p2p.pipeline drops $RINGRIFT_LOG_DIR
        assert f"shipped model {sha[:12]}" in p2p_log.read_text()

        gspec = f"gumbel:onnx:{tiny_net}:sims=4,top_k=4"
        r = p2p.pipeline(*common, "--num-games", "4", "--seed", "6", "--games-per-worker", "2", "--policy", gspec,
                         "--output-db", str(tmp_path / "search.db"), cwd=work)
        assert r.returncode == 0, r.stderr
        want, want_targets = local_games(tmp_path, gspec, 4, 6, with_targets=True)
        assert games(tmp_path / "search.db") == want and targets(tmp_path / "search.db") == want_targets
        assert [_models(n)["uploads"] for n in (a, b, c)] == [1, 1, 0]  # nobody was sent it again; C never
        assert p2p.http("GET", f"{c.url}/jobs")[1]["jobs"] == []
        assert f"has model {sha[:12]} already: not shipped" in p2p_log.read_text()

        # the upload endpoint: token required, the hash checked, the size capped, nothing kept of a refusal
        other = "0" * 64
        assert p2p.http("PUT", f"{b.url}/models/{other}", raw=b"x", token=None,
                        content_type="application/octet-stream")[0] == 401
        s, body, _ = p2p.http("PUT", f"{b.url}/models/{other}", raw=tiny_net.read_bytes(),
                              content_type="application/octet-stream")
        assert s == 400 and "does not match its SHA-256" in body["error"]
        s, body, _ = p2p.http("PUT", f"{b.url}/models/{other}", raw=b"\0" * 1_100_000,
                              content_type="application/octet-stream")
        assert s == 413, body
        assert p2p.http("HEAD", f"{b.url}/models/{other}")[0] == 404
        assert sorted(p.name for p in (b.dir / "data" / "models").iterdir()) == [f"{sha}.onnx"]
        assert _models(b)["rejected"] == 2
        # a job naming a model file anywhere but models/<sha256>.onnx is refused
        s, body, _ = p2p.http("POST", f"{b.url}/pipeline/selfplay_worker",
                              {"board": "square8", "start": 0, "count": 1, "policy": "onnx:square8-x:temperature=1",
                               "model_sha256": sha, "play_policy": f"onnx:{tiny_net}:temperature=1"})
        assert s == 400 and f"models/{sha}.onnx" in body["error"], body
    finally:
        for n in made:
            n.kill()


# ---- ray -----------------------------------------------------------------------------------------

def test_ray_nodes_fetch_the_net_once_and_play_the_local_games(tmp_path_factory, tmp_path, tiny_net):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ringrift[ray]')")
    import test_ray_cluster as rc

    cluster = rc.LoopbackRay(tmp_path_factory.mktemp("ray"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        cluster.start_nodes(1, head=True)
        sha = sha256(tiny_net)
        copy = cluster.root / "tmp" / "ringrift-ray" / "models" / f"{sha}.onnx"  # the node's TMPDIR
        stamps = []
        for seed in (4, 5):
            spec = f"onnx:{tiny_net}:temperature=1"
            p = rc._pipeline(cluster, "--state", str(tmp_path / "st.json"), "run", "canonical_selfplay", "--board",
                             "square8", "--policy", spec, "--num-games", "4", "--games-per-worker", "2", "--seed",
                             str(seed), "--threads", "1", "--max-moves", str(MAX_MOVES), "--output-db",
                             str(tmp_path / f"ray{seed}.db"), "--quiet")
            out, _ = p.communicate(timeout=240)
            assert p.returncode == 0, out
            assert games(tmp_path / f"ray{seed}.db") == local_games(tmp_path, spec, 4, seed)
            assert copy.read_bytes() == tiny_net.read_bytes()
            stamps.append(copy.stat().st_mtime_ns)
        assert stamps[0] == stamps[1]  # the second run found the node's copy: not fetched again
    finally:
        left = cluster.stop()
        assert not left, "Ray processes left behind:\n" + "\n".join(left)
