"""The SSH backend against real OpenSSH servers.

Each "host" is its own sshd on 127.0.0.1 (its own port, config, host key, authorized keys and
work dir), started by these tests as root with `sshd -D`; the machine gets sshd from
scripts/setup_sshd.sh (which .ci/run calls). Host keys are pinned in a known_hosts file of the
test, the client key is generated per test. The hosts run the same installed ringrift
(`sys.executable`). Only 127.0.0.1 is contacted; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.p2p.jobs import _cmdline  # the nodes' own /proc reader

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and os.path.exists(KEYGEN) and hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="needs root and OpenSSH's sshd and ssh-keygen (run: bash scripts/setup_sshd.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return path


def _children() -> dict:
    kids: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def worker_pids(marker: str) -> list[int]:
    """Live worker processes of a host: run in `marker` (the host's work dir; a worker's command
    line names only paths relative to it) or naming it on their command line."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = _cmdline(int(entry))  # empty for a zombie
            if "ringrift.pipeline worker" in cmd and (marker in cmd or _cwd(int(entry)).startswith(marker)):
                out.append(int(entry))
    return out


class Host:
    def __init__(self, root: Path, name: str, client_pub: Path):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.work = self.dir / "work"
        self.port = _free_port()
        self.host_key = _keygen(self.dir / "host_ed25519")
        shutil.copy(client_pub, self.dir / "authorized_keys")
        self.config = self.dir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "Subsystem sftp internal-sftp",
            "MaxSessions 20", "MaxStartups 50", "LogLevel VERBOSE", ""]))
        self.log = self.dir / "sshd.log"
        self.proc = None
        self.start()

    def start(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {self.log.read_text()[-2000:]}")
            if f"listening on 127.0.0.1 port {self.port}" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not start listening on {self.port}")

    def known_hosts_line(self) -> str:
        kind, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def kill(self) -> None:
        """Kill this host: its sshd, every session it serves and the workers they run."""
        if self.proc is None:
            return
        victims = [self.proc.pid] + _descendants(self.proc.pid)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


class Cluster:
    """Several sshd hosts on 127.0.0.1 plus the files a pipeline run needs."""

    def __init__(self, root: Path, names):
        self.root = root
        self.client_key = _keygen(root / "client_key")
        self.hosts = {n: Host(root / "hosts", n, Path(f"{self.client_key}.pub")) for n in names}
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("".join(h.known_hosts_line() for h in self.hosts.values()))

    def write_config(self, *, names=None, games_per_worker=50, timeout=120, defaults=None, extra_hosts="",
                     per_host=None, keep_worker_dbs=None) -> Path:
        names = list(self.hosts) if names is None else names
        d = {"ssh_user": "root", "ssh_key": str(self.client_key), "known_hosts": str(self.known_hosts),
             "python": sys.executable, "threads": 1, "connect_timeout": 5, "keepalive_interval": 2,
             "min_free_disk_gb": 0}
        d.update(defaults or {})
        lines = ["defaults:"] + [f"  {k}: {json.dumps(v)}" for k, v in d.items()] + ["hosts:"]
        for n in names:
            h = self.hosts[n]
            lines += [f"  {n}:", "    ssh_host: 127.0.0.1", f"    ssh_port: {h.port}", f"    work_dir: {json.dumps(str(h.work))}"]
            for k, v in ((per_host or {}).get(n) or {}).items():
                lines.append(f"    {k}: {json.dumps(v)}")
        hosts_file = self.root / "hosts.yaml"
        hosts_file.write_text("\n".join(lines) + "\n" + extra_hosts)
        cfg = self.root / "pipeline.yaml"
        keep = "" if keep_worker_dbs is None else f"  keep_worker_dbs: {json.dumps(keep_worker_dbs)}\n"
        cfg.write_text(f"hosts_file: hosts.yaml\nselfplay:\n  games_per_worker: {games_per_worker}\n"
                       f"  timeout_seconds: {timeout}\n{keep}parity:\n  sample_size: 0\n")
        return cfg

    def stop(self) -> None:
        for h in self.hosts.values():
            h.kill()


@pytest.fixture
def cluster_factory(tmp_path):
    made = []

    def make(*names):
        c = Cluster(tmp_path, names)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def pipeline(cfg: Path, *args, cwd: Path, timeout=180, state=None):
    state = state or (cwd / "state.json")
    return subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--config", str(cfg), "--state", str(state),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_pipeline(cfg: Path, *args, cwd: Path, state=None):
    state = state or (cwd / "state.json")
    return subprocess.Popen([sys.executable, "-m", "ringrift.pipeline", "--config", str(cfg), "--state", str(state),
                             *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def parity(db: Path):
    """Every game of the DB through `ringrift-parity --db` (self-verification against the stored
    hashes; a TS checkout in the environment would make it slow, so it is left out)."""
    env = {k: v for k, v in os.environ.items() if k != "RINGRIFT_TS_ROOT"}
    return subprocess.run([sys.executable, "-m", "ringrift.parity", "--db", str(db), "--sample", "0"],
                          capture_output=True, text=True, timeout=300, env=env)


def indices(db: Path) -> list[int]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT game_index FROM games ORDER BY game_index")]
    finally:
        con.close()


def worker_files(work: Path) -> list[str]:
    """Every file under a host's work_dir/runs (worker DBs and their -wal/-shm)."""
    runs = work / "runs"
    return sorted(str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file()) if runs.exists() else []


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_for(pred, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the orchestrator ended (status {proc.returncode}) before {what}: {err[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


# ---- the tests -------------------------------------------------------------------------------

def test_multi_host_selfplay_merges_exactly_and_resumes_nothing(cluster_factory, tmp_path):
    c = cluster_factory("h1", "h2")
    local_work = tmp_path / "local_work"
    cfg = c.write_config(games_per_worker=40, extra_hosts=(
        f"  localhost:\n    work_dir: {json.dumps(str(local_work))}\n    threads: 1\n"))
    out = tmp_path / "data" / "merged.db"
    args = ["run", "canonical_selfplay", "--board", "square8", "--num-games", "240", "--seed", "3",
            "--output-db", str(out)]
    r = pipeline(cfg, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "240 new games (0 already present, target 240) on 3 hosts" in r.stdout
    assert "ranges played by host: h1: 2, h2: 2, localhost: 2" in r.stdout
    assert indices(out) == list(range(240))
    with GameDB(out, create=False) as db:
        assert db.count_games(board="square8", seed=3) == 240
        hosts = {row[0] for row in db.conn.execute("SELECT DISTINCT host FROM games")}
    assert hosts == {"h1", "h2", "localhost"}
    v = parity(out)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "parity: 240/240 games match" in v.stdout
    assert not (out.parent / f".{out.name}.parts").exists()
    # each worker DB was deleted on its host once merged, with its side files and the run's folder
    for work in (c.hosts["h1"].work, c.hosts["h2"].work, local_work):
        assert (work / "runs").is_dir() and worker_files(work) == [] and not any((work / "runs").iterdir())
    # logs and state
    logs = tmp_path / "logs"
    assert (logs / "pipeline_orchestrator.log").read_text().count(") merged, 40 new games") == 6
    assert (logs / "pipeline_orchestrator.log").read_text().count(" is merged)") == 6  # "deleted h1:... (range"
    for name in ("h1", "h2", "localhost"):
        (log,) = logs.glob(f"selfplay_{name}_*.log")
        assert '"event": "done"' in log.read_text()
    st = read_state(tmp_path / "state.json")
    assert st["phase_status"]["canonical_selfplay"] == "done"
    assert st["games_completed"] == st["games_target"] == 240
    assert {w.split("/")[0] for w in st["workers"]} == {"h1", "h2", "localhost"}
    assert all(rg["status"] == "merged" for rg in st["ranges"])
    s = pipeline(cfg, "status", cwd=tmp_path)
    assert s.returncode == 0 and "games: 240/240 (100%)" in s.stdout and "h2/1" in s.stdout
    # the same command again: nothing is replayed, no worker is started
    logins = c.hosts["h1"].accepted_logins()
    r2 = pipeline(cfg, *args, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert "0 new games (240 already present" in r2.stdout
    assert c.hosts["h1"].accepted_logins() == logins
    # cluster list / health / sync
    lst = pipeline(cfg, "cluster", "list", cwd=tmp_path)
    assert lst.returncode == 0 and f"root@127.0.0.1:{c.hosts['h2'].port}" in lst.stdout
    h = pipeline(cfg, "cluster", "health", cwd=tmp_path)
    assert h.returncode == 0, h.stdout + h.stderr
    assert "3/3 hosts healthy" in h.stdout and h.stdout.count("(same)") == 3
    assert "Warning" not in h.stderr, h.stderr  # asyncssh's import warned about DSA ten times a command
    # nothing is left to sync, and that is no error
    synced = tmp_path / "synced.db"
    sy = pipeline(cfg, "cluster", "sync", "--output-db", str(synced), cwd=tmp_path)
    assert sy.returncode == 0, sy.stdout + sy.stderr
    assert "h1: 0 game DBs pulled" in sy.stdout and indices(synced) == []
    assert not [p.name for p in tmp_path.glob("synced.db-*")]  # the WAL folded in, not left beside it


def test_keep_worker_dbs_keeps_them_and_cluster_sync_deletes_nothing(cluster_factory, tmp_path):
    c = cluster_factory("h1", "h2")
    cfg = c.write_config(games_per_worker=40, keep_worker_dbs=True)
    out = tmp_path / "kept.db"
    args = ["run", "canonical_selfplay", "--board", "square8", "--num-games", "160", "--seed", "6",
            "--output-db", str(out), "--quiet"]
    plan = pipeline(cfg, "--dry-run", *args, cwd=tmp_path)
    assert plan.returncode == 0 and "worker DBs stay on the hosts" in plan.stdout and "clean:" not in plan.stdout
    r = pipeline(cfg, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert indices(out) == list(range(160))
    kept = {n: worker_files(h.work) for n, h in c.hosts.items()}
    assert kept == {n: [f"square8_2p_random_s6/range_{a:09d}_{a + 40:09d}.db" for a in starts]
                    for n, starts in (("h1", (0, 80)), ("h2", (40, 120)))}
    synced = tmp_path / "synced.db"
    sy = pipeline(cfg, "cluster", "sync", "--output-db", str(synced), cwd=tmp_path)
    assert sy.returncode == 0, sy.stdout + sy.stderr
    assert indices(synced) == list(range(160))
    assert {n: worker_files(h.work) for n, h in c.hosts.items()} == kept  # sync pulled, and deleted nothing


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_a_worker_db_that_cannot_be_deleted_only_warns(cluster_factory, tmp_path):
    c = cluster_factory("h1")
    cfg = c.write_config(games_per_worker=150)
    out = tmp_path / "w.db"
    run_dir = c.hosts["h1"].work / "runs" / "square19_2p_random_s2"
    proc = start_pipeline(cfg, "run", "canonical_selfplay", "--board", "square19", "--num-games", "150", "--seed",
                          "2", "--batch-size", "5", "--threads", "1", "--output-db", str(out), "--quiet",
                          cwd=tmp_path)
    locked = False
    try:
        db = run_dir / "range_000000000_000000150.db"

        def some_games():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as con:
                    return con.execute("SELECT count(*) FROM games").fetchone()[0] > 0
            except sqlite3.Error:
                return False

        wait_for(some_games, 60, "the worker to commit games", proc)
        # An immutable folder: even root cannot delete the files in it (the worker can still write).
        lock = subprocess.run(["chattr", "+i", str(run_dir)], capture_output=True, text=True)
        if lock.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {lock.stderr.strip()}")
        locked = True
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if locked:
            subprocess.run(["chattr", "-i", str(run_dir)], check=True)
    assert proc.returncode == 0, stderr
    assert "150 new games" in stdout
    assert indices(out) == list(range(150))
    assert "h1: could not delete the worker DB of range [0, 150)" in stderr and "deleted by hand" in stderr
    assert db.exists()  # still there, and its games are all merged


def test_killed_host_has_its_ranges_redispatched(cluster_factory, tmp_path):
    c = cluster_factory("h1", "h2", "h3")
    cfg = c.write_config(games_per_worker=100)
    out = tmp_path / "out.db"
    target = 600
    proc = start_pipeline(cfg, "run", "canonical_selfplay", "--board", "square19", "--num-games", str(target),
                          "--seed", "4", "--batch-size", "5", "--output-db", str(out), "--quiet", cwd=tmp_path)
    victim = c.hosts["h2"]

    def victim_mid_range():
        if not worker_pids(str(victim.work)):
            return False
        for db in victim.work.glob("runs/*/*.db"):
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as con:
                    if con.execute("SELECT count(*) FROM games").fetchone()[0] > 0:
                        return True
            except sqlite3.Error:
                pass
        return False

    try:
        wait_for(victim_mid_range, 60, "h2 to be part-way through a range", proc)
        victim.kill()  # its sshd, its sessions and its worker
        wait_for(lambda: not worker_pids(str(victim.work)), 10, "h2's worker to be gone")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "host h2 failed on range" in stderr and "re-dispatched to" in stderr
    assert f"{target} new games" in stdout or "already present" in stdout
    idx = indices(out)
    assert idx == list(range(target))  # none lost, none duplicated
    v = parity(out)
    assert v.returncode == 0 and f"parity: {target}/{target} games match" in v.stdout, v.stdout + v.stderr
    st = read_state(tmp_path / "state.json")
    assert st["workers"]["h2/1"]["status"] == "failed"
    assert all(rg["status"] == "merged" for rg in st["ranges"])
    # h2 was dealt ranges [100, 200) and [400, 500); the one it was playing and the one it had
    # queued were finished elsewhere
    assert [rg["host"] for rg in st["ranges"] if rg["start"] == 400] != ["h2"]
    failed_on = stderr.split("host h2 failed on range [", 1)[1].split(")")[0]
    (entry,) = [rg for rg in st["ranges"] if rg["start"] == int(failed_on.split(",")[0])]
    assert entry["host"] != "h2"
    with GameDB(out, create=False) as db:
        hosts = {row[0] for row in db.conn.execute("SELECT DISTINCT host FROM games WHERE game_index >= ? AND "
                                                   "game_index < ?", (entry["start"], entry["end"]))}
    assert hosts == {entry["host"]}
    # the hosts that finished kept no worker DB; the killed one still holds its partial DB of the
    # range it was playing (it could not be reached; its games were replayed elsewhere)
    assert worker_files(c.hosts["h1"].work) == [] and worker_files(c.hosts["h3"].work) == []
    assert [f for f in worker_files(victim.work) if f.endswith(".db")] == [
        f"square19_2p_random_s4/range_{entry['start']:09d}_{entry['end']:09d}.db"]
    print(stderr)
    print(pipeline(cfg, "status", cwd=tmp_path).stdout)


def test_first_contact_host_key_is_refused(cluster_factory, tmp_path):
    c = cluster_factory("h1")
    c.known_hosts.write_text("")  # nothing pinned: first contact
    cfg = c.write_config()
    h = pipeline(cfg, "cluster", "health", cwd=tmp_path)
    assert h.returncode == 1
    port = c.hosts["h1"].port
    assert "not in" in h.stdout and f"ssh-keyscan -p {port} 127.0.0.1 >> {c.known_hosts}" in h.stdout
    # a pinned key that does not match (another host's key) is refused the same way
    other = _keygen(tmp_path / "other_host_key")
    kind, key = Path(f"{other}.pub").read_text().split()[:2]
    c.known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    r = pipeline(cfg, "run", "canonical_selfplay", "--board", "square8", "--num-games", "10",
                 "--output-db", str(tmp_path / "x.db"), "--quiet", cwd=tmp_path)
    assert r.returncode == 1
    assert "host h1 is unavailable" in r.stderr and "ssh-keyscan" in r.stderr
    assert "no healthy host" in r.stderr.strip().splitlines()[-1]
    assert c.hosts["h1"].accepted_logins() == 0


def test_wrong_client_key_is_refused(cluster_factory, tmp_path):
    c = cluster_factory("h1")
    wrong = _keygen(tmp_path / "wrong_key")
    cfg = c.write_config(defaults={"ssh_key": str(wrong)})
    h = pipeline(cfg, "cluster", "health", cwd=tmp_path)
    assert h.returncode == 1
    assert "authentication refused" in h.stdout and str(wrong) in h.stdout
    assert c.hosts["h1"].accepted_logins() == 0


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def test_dry_run_prints_the_plan_and_touches_nothing(cluster_factory, tmp_path):
    c = cluster_factory("h1", "h2")
    cfg = c.write_config(games_per_worker=30, per_host={"h2": {"max_parallel_jobs": 2}})
    out = tmp_path / "data" / "plan.db"
    state = tmp_path / "state" / "pipeline_state.json"
    before = _snapshot(tmp_path)
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--config", str(cfg), "--state", str(state),
                        "--dry-run", "run", "canonical_selfplay", "--board", "hex8", "--num-games", "100",
                        "--output-db", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    # 4 ranges dealt over the job slots h1, h2, h2 (one pass per slot level)
    assert "[0, 30)  30 games on h1" in text and "[30, 60)  30 games on h2" in text
    assert "[60, 90)  30 games on h2" in text and "[90, 100)  10 games on h1" in text
    assert f"ssh -p {c.hosts['h1'].port} root@127.0.0.1" in text and "--indices 0-29" in text
    assert f"pull:  h2:{c.hosts['h2'].work}/runs/hex8_2p_random_s0/range_000000030_000000060.db" in text
    assert "merge: " in text and str(out) in text
    assert (f"clean: h2:{c.hosts['h2'].work}/runs/hex8_2p_random_s0/range_000000030_000000060.db (and its -wal, "
            f"-shm) is deleted on h2 once the merge has committed") in text
    assert "worker DBs are deleted on the hosts after their merge (selfplay.keep_worker_dbs: false)" in text
    assert "nothing was changed (--dry-run)" in text
    for extra in (["cluster", "sync"], ["cluster", "update"], ["--dry-run", "run", "parity_validation", "--db",
                                                                 str(out)]):
        e = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--config", str(cfg), "--state", str(state),
                            "--dry-run", *extra], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert e.returncode == 0, e.stderr
        assert "plan:" in e.stdout
    assert _snapshot(tmp_path) == before  # no file created, changed or removed (sshd logs included)
    assert not out.exists() and not state.exists() and not (tmp_path / "logs").exists()
    assert all(h.accepted_logins() == 0 for h in c.hosts.values())
    assert not any(h.work.exists() for h in c.hosts.values())


def test_resume_after_the_orchestrator_is_sigkilled(cluster_factory, tmp_path):
    c = cluster_factory("h1", "h2")
    cfg = c.write_config(games_per_worker=100)
    out = tmp_path / "out.db"
    target = 800
    args = ["run", "canonical_selfplay", "--board", "square19", "--num-games", str(target), "--seed", "8",
            "--batch-size", "5", "--output-db", str(out), "--quiet"]
    proc = start_pipeline(cfg, *args, cwd=tmp_path)
    state_file = tmp_path / "state.json"

    def some_merged_some_running():
        st = read_state(state_file)
        statuses = [rg["status"] for rg in st.get("ranges", [])]
        return statuses.count("merged") >= 2 and "running" in statuses and st

    try:
        wait_for(some_merged_some_running, 90, "two merged ranges while others run", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the remote workers go with the orchestrator's connections
    wait_for(lambda: not any(worker_pids(str(h.work)) for h in c.hosts.values()), 30, "remote workers to exit")
    merged = sorted(set(indices(out)))
    done_ranges = [a for a in range(0, target, 100) if all(i in merged for i in range(a, a + 100))]
    assert len(done_ranges) >= 2
    # status tells the run stopped; the plan skips what is merged
    s = pipeline(cfg, "status", cwd=tmp_path)
    assert "no orchestrator is running" in s.stdout and "rerun the same command to resume" in s.stdout
    plan = pipeline(cfg, "--dry-run", *args, cwd=tmp_path)
    for a in done_ranges:
        assert f"[{a}, {a + 100})  complete, skipped" in plan.stdout
    # merged ranges lost their worker DBs on the hosts (but for one per job slot the kill may have
    # caught between its merge and its delete); the ranges in flight keep their partial DBs
    left = [f for h in c.hosts.values() for f in worker_files(h.work) if f.endswith(".db")]
    left_merged = [f for f in left if any(f.endswith(f"range_{a:09d}_{a + 100:09d}.db") for a in done_ranges)]
    assert len(left_merged) <= len(c.hosts), left
    r = pipeline(cfg, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"({len(merged)} already present, target {target})" in r.stdout
    assert indices(out) == list(range(target))
    # finished ranges were not replayed: the rerun merged only the others
    st = read_state(tmp_path / "state.json")
    assert sum(w.get("ranges_done", 0) for w in st["workers"].values()) == target // 100 - len(done_ranges)
    # and nothing is left on the hosts: the rerun's sweep also took a DB the kill left behind
    assert all(worker_files(h.work) == [] for h in c.hosts.values())
    v = parity(out)
    assert v.returncode == 0, v.stdout + v.stderr


def test_cluster_update_installs_this_build_and_health_sees_a_different_one(cluster_factory, tmp_path):
    c = cluster_factory("h1")
    venv = tmp_path / "hosts" / "h1" / "venv"
    cfg = c.write_config(per_host={"h1": {"venv": str(venv)}})
    u = pipeline(cfg, "cluster", "update", cwd=tmp_path, timeout=600)
    assert u.returncode == 0, u.stdout + u.stderr
    assert "1/1 hosts run this machine's build" in u.stdout and "(matches)" in u.stdout
    site = list(venv.glob("lib/python*/site-packages/ringrift"))
    assert len(site) == 1 and (site[0] / "__init__.py").exists()
    assert list(site[0].glob("_core*.so"))
    h = pipeline(cfg, "cluster", "health", cwd=tmp_path)
    assert h.returncode == 0 and "(same)" in h.stdout, h.stdout
    # a host whose build differs is unhealthy and gets no self-play work
    with open(site[0] / "__init__.py", "a") as fh:
        fh.write("\n# changed on the host\n")
    h = pipeline(cfg, "cluster", "health", cwd=tmp_path)
    assert h.returncode == 1 and "(DIFFERS)" in h.stdout and "cluster update" in h.stdout
    r = pipeline(cfg, "run", "canonical_selfplay", "--board", "square8", "--num-games", "10",
                 "--output-db", str(tmp_path / "x.db"), "--quiet", cwd=tmp_path)
    assert r.returncode == 1 and "gets no work" in r.stderr and "no healthy host" in r.stderr


def test_a_range_over_its_timeout_is_stopped_on_the_host(cluster_factory, tmp_path):
    c = cluster_factory("h1")
    cfg = c.write_config(games_per_worker=5000, timeout=1.5)
    r = pipeline(cfg, "run", "canonical_selfplay", "--board", "hexagonal", "--num-games", "5000", "--batch-size", "4",
                 "--output-db", str(tmp_path / "t.db"), "--quiet", cwd=tmp_path, timeout=120)
    assert r.returncode == 1
    assert "did not finish within timeout_seconds=1.5" in r.stderr
    assert "no healthy host left: 5000 games in 1 ranges are unfinished" in r.stderr.strip().splitlines()[-1]
    # the orchestrator killed the worker on the host, over the still-open connection
    wait_for(lambda: not worker_pids(str(c.hosts["h1"].work)), 10, "the timed-out worker to be gone")
    st = read_state(tmp_path / "state.json")
    assert st["phase_status"]["canonical_selfplay"] == "failed" and st["ranges"][0]["status"] == "orphaned"


def test_device_cuda_dispatches_only_to_gpu_hosts_which_play_the_cpu_games(cluster_factory, tmp_path):
    """--device cuda: ranges go to the hosts declaring capability gpu, whose workers play them
    with the GPU path. No GPU here, so h1's python sees the stand-in cupy of tests/standin_gpu
    (kernel launches checked against the shipped sources, run as the host twin)."""
    standin = Path(__file__).resolve().parent / "standin_gpu"
    gpu_python = tmp_path / "gpu_python"
    gpu_python.write_text(f"#!/bin/sh\nPYTHONPATH={standin}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} \"$@\"\n")
    gpu_python.chmod(0o755)
    c = cluster_factory("h1", "h2")
    cfg = c.write_config(games_per_worker=30, per_host={"h1": {"capabilities": ["cpu", "gpu"],
                                                                "python": str(gpu_python)}})
    out = tmp_path / "gpu.db"
    r = pipeline(cfg, "run", "canonical_selfplay", "--board", "hex8", "--num-games", "60", "--seed", "5",
                 "--device", "cuda", "--output-db", str(out), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ranges played by host: h1: 2" in r.stdout and "h2" not in r.stdout.split("ranges played by host:")[1]
    assert c.hosts["h2"].accepted_logins() == 0 or not (c.hosts["h2"].work / "runs").exists()
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("selfplay_h1_*.log"))
    assert '"device": "cuda"' in log
    cpu = _core.selfplay_batch("hex8", 2, 5, list(range(60)), "random", threads=1, max_moves=2000)
    with GameDB(out, create=False) as db:
        rows = sorted(db.iter_games(), key=lambda g: g.game_index)
    assert [g.game_index for g in rows] == list(range(60))
    stored = np.concatenate([np.frombuffer(g.move_records().tobytes(), np.uint8).reshape(-1, 16) for g in rows])
    assert np.array_equal(stored, cpu["moves"])
    # With no host declaring gpu, the run stops before contacting anyone, in one line.
    cfg2 = c.write_config(games_per_worker=30)
    r2 = pipeline(cfg2, "run", "canonical_selfplay", "--board", "hex8", "--num-games", "10", "--device", "cuda",
                  "--output-db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert r2.returncode != 0 and "no selfplay host declares capability gpu" in r2.stderr
    assert len(r2.stderr.strip().splitlines()) == 1


def test_a_cuda_worker_without_a_gpu_fails_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "worker", "--board", "square8", "--start", "0",
                        "--count", "4", "--device", "cuda", "--output-db", str(tmp_path / "w.db")],
                       capture_output=True, text=True, timeout=60, env=env)
    from ringrift.gpu import gpu_status

    if gpu_status()[0]:
        pytest.skip("a GPU is present here")
    assert r.returncode != 0 and "--device cuda needs a CUDA GPU and cupy on" in r.stderr
