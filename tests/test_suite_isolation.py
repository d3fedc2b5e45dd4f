"""The suite stays out of the user's home and the repository (see the end of conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REAL_HOME, REPO_ROOT, footprint, footprint_changes


def test_footprint_names_every_write_outside_the_allowed_caches(tmp_path):
    home, repo = tmp_path / "home", tmp_path / "repo"
    (home / ".ringrift").mkdir(parents=True)
    (home / "other").mkdir()
    (home / "other" / "deep.txt").write_text("not watched: only home's top level and ringrift folders")
    (repo / "python").mkdir(parents=True)
    (repo / "python" / "a.py").write_text("x = 1\n")
    before = footprint(home, repo)
    (home / ".ringrift" / "pipeline_state.json").write_text("{}")
    (home / "stray.txt").write_text("")
    (repo / "logs").mkdir()
    (repo / "logs" / "pipeline_orchestrator.log").write_text("")
    (repo / "python" / "a.py").write_text("x = 22\n")
    (repo / "build").mkdir()
    (repo / "build" / "cache.o").write_text("")  # allowed: a build folder
    (repo / ".hypothesis").mkdir()
    changes = footprint_changes(before, footprint(home, repo))
    assert f"created {home / '.ringrift' / 'pipeline_state.json'}" in changes
    assert f"created {home / 'stray.txt'}" in changes
    assert f"created {repo / 'logs' / 'pipeline_orchestrator.log'}" in changes
    assert f"changed {repo / 'python' / 'a.py'}" in changes
    assert not any("build" in c or ".hypothesis" in c for c in changes)


def test_every_test_has_its_own_home_and_log_dir(tmp_path):
    assert Path(os.environ["HOME"]) == tmp_path / ".home" != REAL_HOME
    assert Path(os.path.expanduser("~/.ringrift/pipeline_state.json")).is_relative_to(tmp_path)
    assert Path(os.environ["RINGRIFT_LOG_DIR"]) == tmp_path / "logs"


def test_the_pipeline_run_from_the_repository_writes_only_temporary_files(tmp_path):
    """The way the suite used to run the pipeline (cwd: the repository, no --state): the state
    and the logs land in this test's folders, nothing in the repository or the real home."""
    before = footprint(REAL_HOME, REPO_ROOT)
    db = tmp_path / "g.db"
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "run", "canonical_selfplay", "--num-games", "2",
                        "--output-db", str(db), "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / ".home" / ".ringrift" / "pipeline_state.json").is_file()
    assert (tmp_path / "logs" / "pipeline_orchestrator.log").is_file()
    assert len(list((tmp_path / "logs").glob("selfplay_localhost_*.log"))) == 1
    assert footprint_changes(before, footprint(REAL_HOME, REPO_ROOT)) == []


def test_ci_runs_the_readme_test_command_verbatim_with_skip_reasons():
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    command = block[1]
    assert command == "pip install torch==2.13.0 '.[test,train]' && python -m pytest -q -rs"
    assert command in (REPO_ROOT / ".ci" / "run").read_text().splitlines()


def test_a_pipeline_state_of_another_process_is_told_apart(tmp_path, monkeypatch):
    import conftest

    home = tmp_path / "realhome"
    (home / ".ringrift").mkdir(parents=True)
    monkeypatch.setattr(conftest, "REAL_HOME", home)
    state = home / ".ringrift" / "pipeline_state.json"
    base = tmp_path / "basetemp"
    state.write_text(json.dumps({"run": {"output_db": "/tmp/pytest-of-someone/pytest-1/x/g.db"}}))
    assert conftest._foreign_state_write(f"changed {state}", base)
    state.write_text(json.dumps({"run": {"output_db": str(base / "test_x0" / "g.db")}}))
    assert not conftest._foreign_state_write(f"changed {state}", base)
    assert not conftest._foreign_state_write(f"created {home / 'stray.txt'}", base)
