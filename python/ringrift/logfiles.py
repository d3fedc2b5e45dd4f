"""Log files that cannot fail a run. A log is a record of the work, not its result (the games
are in the DB, progress in the state file): when its disk fills up or turns read-only, the
first write that fails prints one warning line, the file is dropped, and the work goes on.
Python's own FileHandler printed a "--- Logging error ---" traceback for every record instead,
and its close() raised the error, which ended a run whose games were all stored.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def _warn(prog: str, path, exc: BaseException) -> None:
    why = getattr(exc, "strerror", None) or exc
    print(f"{prog}: warning: cannot write {path} ({why}); going on without this log", file=sys.stderr, flush=True)


class LogFileHandler(logging.FileHandler):
    """A logging.FileHandler that drops its file at the first write that fails (one warning)."""

    def __init__(self, path, prog: str):
        super().__init__(path)
        self.prog = prog
        self.failed = False

    def emit(self, record):
        if not self.failed:
            super().emit(record)

    def handleError(self, record):  # called by emit() with the write's exception being handled
        exc = sys.exc_info()[1]
        if self.failed or not isinstance(exc, OSError):
            return super().handleError(record)
        self.failed = True
        _warn(self.prog, self.baseFilename, exc)
        self._close_quietly()

    def close(self):
        self._close_quietly()

    def _close_quietly(self):
        try:
            super().close()  # its flush fails on a full disk; it closes and drops the stream anyway
        except OSError:
            pass


class LogFile:
    """A line-buffered text log (a host's self-play log): write() and close() never raise."""

    def __init__(self, fh, path: Path, prog: str):
        self.fh, self.path, self.prog = fh, path, prog

    @classmethod
    def open(cls, path: Path, prog: str) -> "LogFile":
        """The log at ``path`` (appended to); one that writes nothing, after a warning, when it
        cannot be opened."""
        try:
            return cls(open(path, "a", buffering=1), path, prog)
        except OSError as exc:
            _warn(prog, path, exc)
            return cls(None, path, prog)

    def write(self, text: str) -> None:
        if self.fh is None:
            return
        try:
            self.fh.write(text)
        except OSError as exc:
            _warn(self.prog, self.path, exc)
            self.close()

    def close(self) -> None:
        fh, self.fh = self.fh, None
        if fh is not None:
            try:
                fh.close()  # its flush fails on a full disk; the descriptor is closed anyway
            except OSError:
                pass
