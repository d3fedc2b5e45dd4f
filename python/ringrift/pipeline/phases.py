"""The phases after self-play. The orchestrator runs the project's own code for them and never
re-implements them: parity_validation is what `ringrift-parity --db` does, npz_export is what
`ringrift-export` does. Both run in this process (through the same functions those tools call),
their output passed through and logged, so a notebook can run them with no subprocess. The one
exception is parity against the TypeScript engine (RINGRIFT_TS_ROOT set), see run_parity."""

from __future__ import annotations

import importlib.util
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ..engine.errors import RingRiftError
from ..exitcodes import EXIT_USAGE, UsageError, exit_status

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
        return importlib.util.find_spec("ringrift.export.exporter") is not None
    except ModuleNotFoundError:
        return False


def export_argv(db: Path, output_dir: Path, cfg: dict, *, board: str | None = None,
                players: int | None = None) -> list[str]:
    """The ringrift-export command line equivalent to what run_export does (for plans and logs)."""
    argv = ["ringrift-export", "--db", str(db), "--output-dir", str(output_dir), *_config_args(cfg)]
    if board:
        argv += ["--board", board]
    if players:
        argv += ["--players", str(players)]
    return argv


def printable(argv: list[str]) -> str:
    if argv[:3] == [sys.executable, "-m", "ringrift.parity"]:
        return shlex.join(["ringrift-parity", *argv[3:]])
    return shlex.join(argv)


class _Tee:
    """A text stream that writes to `out` and logs every whole line (what the subprocess's output got)."""

    def __init__(self, out, logger: logging.Logger):
        self.out, self.logger, self._partial = out, logger, ""

    def write(self, text: str) -> int:
        self.out.write(text)
        self.out.flush()
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return False


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


def _self_verify(db: Path, cfg: dict, out) -> tuple[int, int | None, int | None]:
    """`ringrift-parity --db DB --sample N` without a TS checkout, in this process: the same lines,
    the same exit status. Returns (status, matched, checked); matched/checked are None when the DB
    could not be read."""
    from ..parity.db_check import verify_db

    out.write("ringrift-parity: no TypeScript checkout given (--ts-root PATH or RINGRIFT_TS_ROOT): "
              "falling back to self-verification (our engine against the stored hashes)\n")
    try:
        matched, checked, steps = verify_db(db, sample=cfg["parity"]["sample_size"], out=out)
    except RingRiftError as exc:  # an unusable DB: the phase's one error line, exit status 2
        raise UsageError(f"parity_validation: {exc}") from None
    out.write(f"parity: {matched}/{checked} games match (self-verification, {steps} steps)\n")
    failed = checked - matched
    threshold = float(cfg["parity"]["fail_threshold"])
    if checked == 0:
        out.write("Error: no games were checked\n")
        return 1, matched, checked
    rate = failed / checked
    if rate > threshold:
        out.write(f"Error: {failed} games failed parity check (rate {rate:.4f} > fail_threshold {threshold:g})\n")
        return 1, matched, checked
    if failed:
        out.write(f"ringrift-parity: warning: {failed} games failed parity check (rate {rate:.4f} within "
                  f"fail_threshold {threshold:g})\n")
    return 0, matched, checked


def run_parity(db: Path, cfg: dict, logger: logging.Logger, out=None) -> int:
    """0 when the checked games match within fail_threshold, else a RingRiftError."""
    from ..parity.ts_client import ts_root_from

    out = out or sys.stdout
    if not db.exists():
        raise UsageError(f"{db}: no such game database")
    if cfg["parity"]["sample_size"]:
        out.write(f"parity_validation: {sample_note(cfg)}\n")
        logger.info(sample_note(cfg))
    argv = parity_argv(db, cfg)
    if ts_root_from(None) is not None:
        # Against the TypeScript engine ringrift-parity drives a pool of Node bridge processes and
        # owns their start-up, timeouts and shutdown; it stays a subprocess of its own so that an
        # interrupted or hung bridge can never be left behind in this (possibly long-lived) process.
        rc, lines = _stream(argv, logger, out)
        summary = next((m for m in map(_SUMMARY.match, reversed(lines)) if m), None)
        matched, checked = (int(summary.group(1)), int(summary.group(2))) if summary else (None, None)
    else:
        logger.info(f"running (in this process): {printable(argv)}")
        rc, matched, checked = _self_verify(db, cfg, _Tee(out, logger))
        logger.info(f"{printable(argv)} exited with status {rc}")
    if rc == 0:
        return 0
    if checked is None:
        error = UsageError if rc == EXIT_USAGE else RingRiftError  # the tool's status carries through
        raise error(f"parity_validation failed (ringrift-parity exited with status {rc})")
    threshold = cfg["parity"]["fail_threshold"]
    if checked and (checked - matched) / checked <= threshold:
        out.write(f"parity_validation: {checked - matched}/{checked} games diverge, within fail_threshold "
                  f"{threshold:g}\n")
        return 0
    raise RingRiftError(f"parity_validation failed: {checked - matched} of {checked} games diverge "
                        f"(fail_threshold {threshold:g})")


def _export(db: Path, output_dir: Path, cfg: dict, board: str | None, players: int | None):
    """What `ringrift-export --db DB --output-dir DIR [--board B] [--players P]` does with the
    pipeline's config: its export section picks split ratio, compression, symmetries, encoding."""
    from ..export.exporter import export_db
    from ..export.upstream import export_upstream

    ex = cfg["export"]
    split_ratio = ex["split_ratio"]
    if not 0 < split_ratio <= 1:
        raise UsageError(f"split ratio must be in (0, 1] (1 = one file, no validation split), got {split_ratio:g} "
                         f"(--split-ratio or the config's export.split_ratio)")
    if ex.get("encoding", "native") == "upstream":
        return export_upstream(db, None, output_dir=str(output_dir), board=board, players=players,
                               split_ratio=split_ratio, seed=0, compression=ex["compression"], threads=0)
    return export_db(db, None, output_dir=str(output_dir), board=board, players=players, split_ratio=split_ratio,
                     seed=0, compression=ex["compression"], threads=0, with_symmetries=ex["symmetries"])


def run_export(db: Path, output_dir: Path, cfg: dict, logger: logging.Logger, *, board: str | None = None,
               players: int | None = None, out=None) -> int:
    """Export the DB's checked games to NPZ files in output_dir, in this process; 0, else a RingRiftError."""
    out = _Tee(out or sys.stdout, logger)
    if not export_available():
        raise RingRiftError(EXPORT_MISSING)
    if not db.exists():
        raise UsageError(f"{db}: no such game database")
    shown = printable(export_argv(db, output_dir, cfg, board=board, players=players))
    logger.info(f"running (in this process): {shown}")
    try:
        result = _export(db, output_dir, cfg, board, players)
    except RingRiftError as exc:  # one error line, with the status ringrift-export would give
        logger.info(f"{shown} failed: {exc}")
        error = UsageError if exit_status(exc) == EXIT_USAGE else RingRiftError
        raise error(f"npz_export: {exc}") from None
    except OSError as exc:
        logger.info(f"{shown} failed: {exc}")
        where = exc.filename or output_dir  # a failed write() names no file: the folder written into
        raise RingRiftError(f"npz_export: {where}: {exc.strerror or exc}; no output file was changed") from None
    for line in result.summary_lines():
        out.write(line + "\n")
    logger.info(f"{shown} exited with status 0")
    return 0
