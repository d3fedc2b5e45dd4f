"""The export's hidden working folders, `.<name>.export-XXXX` beside its output, and the removal
of those that killed exports left behind.

An export writes its archives into such a folder and renames them into place at the end; any
normal end (success, error, Ctrl-C) removes the folder. A SIGKILL cannot, so every export first
removes the folders of exports that are gone. Ownership is an `flock` that the exporting
process holds on `owner.lock` inside its folder for as long as it runs: the kernel drops it when
the process dies, however it dies, so a folder whose lock can be taken has no live owner. A
folder without that file (made by an older version, or caught in the instant between its
creation and its lock) is removed only once it has not been touched for STALE_UNLOCKED_S.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

LOCK_NAME = "owner.lock"
MARK = ".export-"
STALE_UNLOCKED_S = 3600.0


class ExportTmpDir:
    """A working folder beside `base` (the output's path without .npz), locked by this process."""

    def __init__(self, base: Path):
        self.removed = remove_stale(base.parent)
        self.path = Path(tempfile.mkdtemp(prefix=f".{base.name}{MARK}", dir=base.parent))
        # The lock file gets its name only once it is locked, so another export never sees an
        # unlocked owner.lock of a live export.
        pending = self.path / f".{LOCK_NAME}.new"
        self._fd = os.open(pending, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        os.rename(pending, self.path / LOCK_NAME)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _owner_gone(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime > STALE_UNLOCKED_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its export is running
    finally:
        os.close(fd)  # (closing drops the lock if we took it)
    return True


def remove_stale(directory: Path) -> list[Path]:
    """Remove the export working folders in `directory` whose exporting process is gone;
    returns them. Folders of live exports, and anything else, are left alone."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for e in entries:
        if e.name.startswith(".") and MARK in e.name and e.is_dir(follow_symlinks=False):
            folder = Path(e.path)
            if _owner_gone(folder):
                shutil.rmtree(folder, ignore_errors=True)
                if not folder.exists():
                    out.append(folder)
    return out
