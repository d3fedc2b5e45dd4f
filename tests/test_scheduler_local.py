"""The scheduler with real game DBs: `--backend local` (a thread pool, each range its own part
DB merged as it finishes), the checks of scheduler.merge_range_db, and bench/scheduler_bench.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.engine.errors import RingRiftError
from ringrift.pipeline.cli import main
from ringrift.pipeline.ranges import Range
from ringrift.pipeline.scheduler import RangeLost, merge_range_db
from ringrift.pipeline.simulate import sim_spec
from ringrift.selfplay.runner import ENGINE_VERSION

ROOT = Path(__file__).resolve().parents[1]


def test_local_backend_plays_ranges_merges_them_and_resumes(tmp_path, capsys):
    db, state = tmp_path / "g.db", tmp_path / "st.json"
    run = ["--backend", "local", "--state", str(state), "run", "canonical_selfplay", "--board", "square8",
           "--policy", "random", "--games-per-worker", "300", "--threads", "1", "--output-db", str(db), "--quiet"]
    assert main(run + ["--num-games", "2000"]) == 0
    out = capsys.readouterr().out
    assert "2000 new games (0 already present, target 2000) on the local executor" in out
    with GameDB(db, readonly=True) as g:
        assert g.count_games() == 2000
        assert g.existing_indices(board="square8", num_players=2, seed=0, policy="random") == set(range(2000))
    st = json.loads(state.read_text())
    assert st["executor"] == "local" and len(st["ranges"]) == 7
    assert all(r["status"] == "merged" and r["host"] == "localhost" for r in st["ranges"])
    assert st["workers"]["localhost"]["ranges_done"] == 7 and st["workers"]["localhost"]["games_merged"] == 2000
    assert not (tmp_path / ".g.db.parts").exists()  # part DBs are deleted once merged
    assert main(["--state", str(state), "status"]) == 0
    status = capsys.readouterr().out
    assert "executor: local" in status and "ranges: 7 merged" in status
    assert main(run + ["--num-games", "2600"]) == 0  # resumes: only the missing 600
    assert "600 new games (2000 already present, target 2600)" in capsys.readouterr().out
    assert main(run + ["--num-games", "2600", "--dry-run"]) == 0
    assert "0 games to play in 0 of 9 ranges" in capsys.readouterr().out


def _part(path: Path, indices, *, seed=0, version=ENGINE_VERSION) -> Path:
    batch = _core.selfplay_batch("square8", 2, seed, list(indices), "random", threads=1, max_moves=2000, record=True)
    with GameDB(path) as db:
        db.insert_batch(batch, board="square8", num_players=2, seed=seed, policy="random", engine_version=version,
                        host="t", max_moves=2000)
    return path


def test_merge_range_db_checks_the_run_the_range_and_the_engine_version(tmp_path):
    spec = sim_spec(40, 10)._replace(output_db=tmp_path / "out.db")
    r = Range(10, 20)
    with pytest.raises(RingRiftError, match="refusing to merge mixed engine versions"):
        merge_range_db(spec, _part(tmp_path / "v.db", range(10, 20), version="ringrift-0.0.0"), r, "n1")
    with pytest.raises(RangeLost, match="holds 10 games of another run"):
        merge_range_db(spec, _part(tmp_path / "s.db", range(10, 20), seed=1), r, "n1")
    with pytest.raises(RangeLost, match="indices 15..24 outside the range"):
        merge_range_db(spec, _part(tmp_path / "o.db", range(15, 25)), r, "n1")
    with GameDB(spec.output_db) as db:
        assert db.count_games() == 0  # nothing of the refused DBs went in
    # A short DB: its games are kept (they are good games), the range is played again.
    with pytest.raises(RangeLost, match="lacks 3 games"):
        merge_range_db(spec, _part(tmp_path / "m.db", range(10, 17)), r, "n1")
    good = _part(tmp_path / "ok.db", range(10, 20))
    assert merge_range_db(spec, good, r, "n1") == 3
    assert merge_range_db(spec, good, r, "n2") == 0  # the same games again: nothing added
    with GameDB(spec.output_db, readonly=True) as db:
        assert db.count_games() == 10 and db.count_games(engine_version="ringrift-0.0.0") == 0


def test_scheduler_bench_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "scheduler_bench.py"), "--workers", "50",
                           "--ranges", "300", "--fail-rate", "0", "0.1", "--merge-ranges", "2", "--merge-games", "20",
                           "--json", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    sched = [r for r in rows if r["kind"] == "scheduler"]
    assert [r["fail_rate"] for r in sched] == [0, 0.1] and all(r["us_per_range"] > 0 for r in sched)
    assert sched[1]["attempts"] > 300
    merge = [r for r in rows if r["kind"] == "merge"]
    assert merge[0]["games"] == 40 and merge[0]["games_per_sec"] > 0
    assert "us/range" in proc.stdout and "games/s" in proc.stdout
