"""The interface between the orchestrator and the hosts it drives."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from pathlib import Path
from typing import AsyncIterator

from ...engine.errors import RingRiftError


class BackendUnavailable(RingRiftError):
    """The selected backend cannot be used (not implemented yet, or not installed)."""


class HostError(RingRiftError):
    """A host failed: unreachable, refused, timed out, lost, or its command failed. The work it
    had can be given to another host."""

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message


class RemoteProcess(ABC):
    """A `python -m ringrift.pipeline ...` process running on a host."""

    pid: int | None = None

    @abstractmethod
    def lines(self) -> AsyncIterator[str]:
        """Its output (stdout and stderr), line by line, until it ends."""

    @abstractmethod
    async def wait(self) -> int | None:
        """Its exit status (None when it was lost with the connection)."""

    @abstractmethod
    async def kill(self) -> None:
        """Stop it (and everything it started); never raises."""


def shell_path(path: str) -> str:
    """A path for a POSIX shell on the host: `~` and `~/x` expand to the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class HostHandle(ABC):
    """One configured host. Paths called `rel` are relative to the host's work_dir."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.name

    @abstractmethod
    def command_line(self, argv: list[str]) -> str:
        """How `python -m ringrift.pipeline ARGV` is started there (for plans and logs)."""

    @abstractmethod
    def location(self, rel: str) -> str:
        """A file on the host, as printed in plans: `host:path`."""

    @abstractmethod
    async def probe(self, model: str | None = None) -> dict:
        """`probe` output of the host (raises HostError); with `model` (a SHA-256) it also says
        whether the host holds that model and has onnxruntime (info["model"])."""

    @abstractmethod
    def pipeline_argv(self, argv: list[str]) -> list[str]:
        """The argv of `python -m ringrift.pipeline ARGV` on the host (for `run`)."""

    @abstractmethod
    async def start(self, argv: list[str]) -> RemoteProcess:
        """Start `python -m ringrift.pipeline ARGV` in work_dir (raises HostError)."""

    @abstractmethod
    async def fetch(self, rel: str, local: Path) -> None:
        """Copy a game DB from the host (its -wal too when there is one)."""

    @abstractmethod
    async def put(self, local: Path, rel: str) -> None:
        """Copy a local file to the host."""

    @abstractmethod
    async def glob(self, pattern: str) -> list[str]:
        """Files under work_dir matching `pattern` (relative paths)."""

    @abstractmethod
    async def run(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        """Run a command (argv, quoted for the shell) in work_dir; (status, output)."""

    @abstractmethod
    async def remove_db(self, rel: str) -> None:
        """Delete a game DB and its -wal/-shm side files (missing files are fine; raises
        HostError when one cannot be deleted)."""

    @abstractmethod
    async def remove_dir_if_empty(self, rel: str) -> bool:
        """Remove a folder when it is empty; False (and nothing done) otherwise. Never raises."""

    async def close(self) -> None:
        return None


class Backend(ABC):
    name = "?"

    @abstractmethod
    def handle(self, cfg) -> HostHandle:
        """The handle of one host."""

    async def close(self) -> None:
        return None
