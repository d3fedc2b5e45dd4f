"""The ssh executor (pipeline/backends/hosts.py) behind the scheduler, on two hosts that are
this machine (`localhost`-style handles: real worker subprocesses, no sshd): a host whose
workers keep failing is dropped after two failed attempts in a row, the range it failed is
played on the other host, the range waiting for it goes there too, every game is merged once,
and each merged range's worker DB is deleted where it was played."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

from ringrift.db import GameDB
from ringrift.pipeline.backends.local import LocalHost
from ringrift.pipeline.backends.hosts import HostsExecutor
from ringrift.pipeline.config import HostConfig
from ringrift.pipeline.orchestrator import SelfplaySpec
from ringrift.pipeline.scheduler import GameDBSink, RangeScheduler, run_scheduler
from ringrift.pipeline.state import PipelineState


def _host(name: str, work: Path, venv: Path | None = None) -> HostConfig:
    return HostConfig(name=name, ssh_host=None, ssh_port=22, ssh_user=None, ssh_key=None, known_hosts="",
                      python=sys.executable, venv=str(venv) if venv else None, work_dir=str(work), role="selfplay",
                      capabilities=["cpu"], max_parallel_jobs=1, threads=1, connect_timeout=10.0,
                      keepalive_interval=15.0, min_free_disk_gb=0.0, enabled=True)


def _run(tmp_path, host_failures: int):
    """Two hosts, 4 ranges of 5 games; the "bad" host's python answers the probe like this
    machine's, but its workers crash. Returns (summary, stderr text, state, spec, logs)."""
    venv = tmp_path / "bad_venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nif [ "$3" = worker ]; then echo "worker crashed on purpose"; exit 3; fi\n'
                  f'exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    hosts = [_host("good", tmp_path / "good"), _host("bad", tmp_path / "bad", venv)]
    out = tmp_path / "out.db"
    spec = SelfplaySpec(board="square8", players=2, policy="random", seed=11, num_games=20, max_moves=2000,
                        output_db=out, games_per_worker=5, timeout=60.0, default_threads=1)
    handles = {h.name: LocalHost(h) for h in hosts}
    logs = tmp_path / "logs"
    logs.mkdir()
    state = PipelineState.begin(tmp_path / "state.json", phase="canonical_selfplay", run=spec.run_key(),
                                target=spec.num_games, phases=("canonical_selfplay",))
    err = io.StringIO()
    ex = HostsExecutor(spec, handles, None, logs, host_failures=host_failures)
    summary = run_scheduler(RangeScheduler(spec, ex, GameDBSink(spec), state, logging.getLogger("test.hosts"),
                                           err=err, max_attempts=5))
    return summary, err.getvalue(), state, spec, logs


def test_a_failing_host_is_dropped_and_its_ranges_are_played_elsewhere(tmp_path):
    summary, text, state, spec, logs = _run(tmp_path, 2)
    out = spec.output_db
    # dealt good: [0,5), [10,15); bad: [5,10), [15,20): bad fails both, then is dropped
    assert summary["by_host"] == {"good": 4} and summary["new"] == 20, text
    assert "host bad failed on range [5, 10): worker for range [5, 10) exited with status 3" in text
    assert "host bad is dropped for the rest of the run after 2 failed attempts" in text
    assert "range [5, 10) of bad re-dispatched to good" in text and "of bad re-dispatched to good" in text
    with GameDB(out, create=False) as db:
        assert sorted(db.existing_indices(**spec.identity())) == list(range(20))
    assert state.data["workers"]["bad/1"]["status"] == "failed"
    assert all(e["status"] == "merged" and e["host"] == "good" for e in state.data["ranges"])
    # merged worker DBs are deleted on the host that played them, with the run's folder
    assert not list((tmp_path / "good").rglob("*.db*"))
    assert '"event": "done"' in next(logs.glob("selfplay_good_*.log")).read_text()


def test_a_range_that_failed_on_a_host_goes_to_another_one(tmp_path):
    # With 3 failures allowed, "bad" is never dropped: each of its two ranges fails there once
    # and is then offered to "good", not sent back to "bad".
    summary, text, state, spec, _ = _run(tmp_path, 3)
    assert summary["by_host"] == {"good": 4}, text
    assert text.count("host bad failed on range") == 2 and "is dropped" not in text
