"""ringrift.logfiles: a log on a full disk costs one warning line, never the run. /dev/full stands
in for the full disk: every write to it fails with ENOSPC."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from ringrift.db import GameDB
from ringrift.logfiles import LogFile, LogFileHandler

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def test_a_handler_on_a_full_disk_warns_once_and_closes_quietly(capsys):
    log = logging.getLogger("ringrift.test.logfiles")
    log.propagate = False
    h = LogFileHandler("/dev/full", "tool")
    log.addHandler(h)
    try:
        for i in range(3):
            log.warning("record %d", i)
    finally:
        log.removeHandler(h)
    h.close()
    err = capsys.readouterr().err
    assert err == "tool: warning: cannot write /dev/full (No space left on device); going on without this log\n"


def test_a_log_file_on_a_full_disk_warns_once_and_closes_quietly(tmp_path, capsys):
    f = LogFile.open("/dev/full", "tool")
    for i in range(3):
        f.write(f"line {i}\n")
    f.close()
    f.close()
    missing = LogFile.open(tmp_path / "absent" / "x.log", "tool")  # cannot be opened: writes nothing
    missing.write("x\n")
    missing.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tool: warning: cannot write /dev/full (No space left on device); going on without this log"
    assert len(err) == 2 and "absent/x.log (No such file or directory)" in err[1]


def test_a_run_whose_log_folder_is_full_stores_its_games_and_succeeds(tmp_path):
    """The orchestrator log printed a '--- Logging error ---' traceback for every record, and the
    run ended with 'error: No space left on device' (status 1) although every game was stored."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pipeline_orchestrator.log").symlink_to("/dev/full")
    env = dict(os.environ, RINGRIFT_LOG_DIR=str(logs))
    db = tmp_path / "g.db"
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--state", str(tmp_path / "s.json"), "run",
                        "canonical_selfplay", "--num-games", "30", "--output-db", str(db), "--quiet"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"ringrift-pipeline: warning: cannot write {logs / 'pipeline_orchestrator.log'} "
                        f"(No space left on device); going on without this log\n")
    with GameDB(db, readonly=True) as g:
        assert g.count_games() == 30
