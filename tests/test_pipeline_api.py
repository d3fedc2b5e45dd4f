"""The pipeline's Python API (what a notebook calls): self-play -> parity -> export in this
process, no subprocess, everything under tmp_path."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import ringrift.pipeline as pipeline
from ringrift.db import GameDB
from ringrift.engine.errors import RingRiftError
from ringrift.exitcodes import UsageError


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory with no config or hosts file, logs under it, no TS checkout, and any
    attempt to start a subprocess failing the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGRIFT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("RINGRIFT_TS_ROOT", raising=False)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"the Python API started a subprocess: {args[:1]}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_subprocess)
    return tmp_path


def test_api_is_exported_and_documented():
    for name in ("run_selfplay", "run_parity", "run_export", "run_all"):
        fn = getattr(pipeline, name)
        assert name in pipeline.__all__ and fn.__doc__ and len(fn.__doc__) > 100


def test_selfplay_parity_export_in_process(sandbox, capsys):
    db, npz, state = sandbox / "games.db", sandbox / "npz", sandbox / "state.json"
    assert pipeline.run_selfplay(20, board="square8", output_db=db, state=state) == 0
    with GameDB(db, create=False) as g:
        assert g.count_games(board="square8") == 20
    assert json.loads(state.read_text())["phase_status"] == {"canonical_selfplay": "done"}

    assert pipeline.run_parity(db, state=state) == 0
    assert "parity: 20/20 games match (self-verification" in capsys.readouterr().out

    assert pipeline.run_export(db, npz, state=state) == 0
    assert "exported 20 of 20 games" in capsys.readouterr().out
    games = 0
    for f in npz.glob("*.npz"):
        with np.load(f) as z:
            games += json.loads(str(z["metadata"]))["split_games"]
    assert games == 20
    assert json.loads(state.read_text())["phase_status"] == {"npz_export": "done"}
    log = (sandbox / "logs" / "pipeline_orchestrator.log").read_text()
    assert "ringrift.pipeline.run_export" in log and "running (in this process): ringrift-export" in log

    # a rerun resumes: nothing left to play
    assert pipeline.run_selfplay(20, board="square8", output_db=db, state=state) == 0
    with GameDB(db, create=False) as g:
        assert g.count_games(board="square8") == 20


def test_run_all_in_process(sandbox, capsys):
    state = sandbox / "state.json"
    assert pipeline.run_all(20, board="square8", output_db=sandbox / "all.db", output_dir=sandbox / "npz",
                            state=state) == 0
    assert json.loads(state.read_text())["phase_status"] == {
        "canonical_selfplay": "done", "parity_validation": "done", "npz_export": "done"}
    assert any((sandbox / "npz").glob("*.npz"))


def test_api_errors_are_exceptions_and_recorded(sandbox):
    state = sandbox / "state.json"
    with pytest.raises(UsageError, match="--num-games"):
        pipeline.run_selfplay(-1, board="square8", output_db=sandbox / "g.db", state=state)
    # Python values the flags cannot carry: a float count ran, and its state file broke every later run
    for n, kw, text in ((1.5, {}, "--num-games must be an integer, got 1.5"), (True, {}, "--num-games must be an integer"),
                        (2, {"players": 2.0}, "--players must be an integer"), (2, {"policy": 5}, "--policy must be a string"),
                        (2, {"board": "chess"}, "--board must be one of")):
        with pytest.raises(UsageError, match=text):
            pipeline.run_selfplay(n, output_db=sandbox / "g.db", state=state, **{"board": "square8", **kw})
    assert not (sandbox / "g.db").exists()
    with pytest.raises(UsageError, match="no such game database"):
        pipeline.run_parity(sandbox / "missing.db", state=state)
    assert json.loads(state.read_text())["phase_status"] == {"parity_validation": "failed"}
    with pytest.raises(RingRiftError, match="unknown backend"):
        pipeline.run_selfplay(5, backend="carrier-pigeon", state=state)
