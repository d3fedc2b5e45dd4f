"""Errors of the game database layer."""

from __future__ import annotations

from ..engine.errors import RingRiftError


class DBError(RingRiftError):
    """A game database that cannot be opened, read or written (missing, corrupt, not ours...).

    The message always names the file.  ``path`` holds it as a string.
    """

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class DBSchemaError(DBError):
    """A game database written with another schema version than this library's."""

    def __init__(self, path: str, found, expected: int, *, what: str = "game database"):
        super().__init__(
            f"{path}: {what} has schema version {found}, this ringrift expects {expected}",
            path=path,
        )
        self.found = found
        self.expected = expected


class DBNotWritableError(DBError):
    """A game database opened for writing where this process may not write: the file, or its
    folder (where SQLite keeps the -wal and -shm), is read-only. Opened read-only it may read."""


class DBWriteError(DBError):
    """Storing into a usable database failed part-way (disk full, an I/O error): the work ran and
    failed (exit status 1), unlike a database that cannot be used at all (2)."""
