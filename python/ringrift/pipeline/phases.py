"""The phases after self-play. The orchestrator runs the project's own tools for them and never
re-implements them: parity_validation is `ringrift-parity --db`, npz_export is `ringrift-export`.
Both run as subprocesses of this Python, their output passed through and logged."""

from __future__ import annotations

import importlib.util
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ..engine.errors import RingRiftError
from ..exitcodes import UsageError

_SUMMARY = re.compile(r"^parity: (\d+)/(\d+) games match")
EXPORT_MISSING = ("the npz_export phase is not installed: this ringrift has no ringrift.export module "
                  "(install a ringrift build that includes it)")


def _config_args(cfg: dict) -> list[str]:
    """The pipeline config the orchestrator loaded, handed on so the phase reads the same one."""
    return ["--config", str(cfg["_source"])] if cfg.get("_source") else []


def parity_argv(db: Path, cfg: dict) -> list[str]:
    return [sys.executable, "-m", "ringrift.parity", "--db", str(db), "--sample", str(cfg["parity"]["sample_size"]),
            *_config_args(cfg)]


def export_available() -> bool:
    try:
        return importlib.util.find_spec("ringrift.export.cli") is not None
    except ModuleNotFoundError:
        return False


def export_argv(db: Path, output_dir: Path, cfg: dict, *, board: str | None = None,
                players: int | None = None) -> list[str]:
    argv = [sys.executable, "-c", "import sys; from ringrift.export.cli import main; sys.exit(main(sys.argv[1:]))",
            "--db", str(db), "--output-dir", str(output_dir), *_config_args(cfg)]
    if board:
        argv += ["--board", board]
    if players:
        argv += ["--players", str(players)]
    return argv


def printable(argv: list[str]) -> str:
    if argv[:3] == [sys.executable, "-m", "ringrift.parity"]:
        return shlex.join(["ringrift-parity", *argv[3:]])
    if argv[:2] == [sys.executable, "-c"] and "ringrift.export" in argv[2]:
        return shlex.join(["ringrift-export", *argv[3:]])
    return shlex.join(argv)


def _stream(argv: list[str], logger: logging.Logger, out) -> tuple[int, list[str]]:
    logger.info(f"running: {printable(argv)}")
    lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        for line in proc.stdout:
            out.write(line)
            out.flush()
            logger.info(line.rstrip("\n"))
            lines.append(line.rstrip("\n"))
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    logger.info(f"{printable(argv)} exited with status {rc}")
    return rc, lines


def sample_note(cfg: dict) -> str:
    """What parity.sample_size means for the export, in words."""
    n = cfg["parity"]["sample_size"]
    if not n:
        return "every game is checked (parity.sample_size 0)"
    return (f"only a sample of {n} games per DB is checked (parity.sample_size {n}), and npz_export exports only "
            f"checked games; set it to 0 to check every game")


def run_parity(db: Path, cfg: dict, logger: logging.Logger, out=None) -> int:
    """0 when the checked games match within fail_threshold, else 1."""
    out = out or sys.stdout
    if not db.exists():
        raise UsageError(f"{db}: no such game database")
    if cfg["parity"]["sample_size"]:
        out.write(f"parity_validation: {sample_note(cfg)}\n")
        logger.info(sample_note(cfg))
    rc, lines = _stream(parity_argv(db, cfg), logger, out)
    summary = next((m for m in map(_SUMMARY.match, reversed(lines)) if m), None)
    if rc == 0:
        return 0
    if summary is None:
        raise RingRiftError(f"parity_validation failed (ringrift-parity exited with status {rc})")
    matched, checked = int(summary.group(1)), int(summary.group(2))
    threshold = cfg["parity"]["fail_threshold"]
    if checked and (checked - matched) / checked <= threshold:
        out.write(f"parity_validation: {checked - matched}/{checked} games diverge, within fail_threshold "
                  f"{threshold:g}\n")
        return 0
    raise RingRiftError(f"parity_validation failed: {checked - matched} of {checked} games diverge "
                        f"(fail_threshold {threshold:g})")


def run_export(argv: list[str], db: Path, logger: logging.Logger, out=None) -> int:
    out = out or sys.stdout
    if not export_available():
        raise RingRiftError(EXPORT_MISSING)
    if not db.exists():
        raise UsageError(f"{db}: no such game database")
    rc, _ = _stream(argv, logger, out)
    if rc != 0:
        raise RingRiftError(f"npz_export failed (ringrift-export exited with status {rc})")
    return 0
