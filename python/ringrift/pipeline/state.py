"""The orchestrator's resumable state file and the lock that keeps two orchestrators apart.

The state is one JSON document, `~/.ringrift/pipeline_state.json` by default:

    {"current_phase", "phase_status": {phase: status}, "games_completed", "games_target",
     "started_at", "updated_at", "pid", "run": {...}, "workers": {name: {status, games, range, ...}},
     "ranges": [{"start", "end", "status", "host"}]}

It is written atomically (a temporary file in the same folder, fsync, rename), so a reader or a
crash never sees half a file. It is a report, not the source of truth: what is finished is what
the output game database holds, so a resumed run trusts the database.

The lock is `fcntl.flock` on `<state>.lock`. The kernel drops it when the holder dies, so a
crashed or SIGKILLed orchestrator never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from ..engine.errors import RingRiftError

DEFAULT_STATE = Path("~/.ringrift/pipeline_state.json")
PHASES = ("canonical_selfplay", "parity_validation", "npz_export")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_path(arg: str | None) -> Path:
    return Path(os.path.expanduser(arg)) if arg else Path(os.path.expanduser(str(DEFAULT_STATE)))


class StateLock:
    """Exclusive lock of one state file for the lifetime of one orchestrator."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")
        self.fd: int | None = None

    def acquire(self, wait: float = 2.0) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RingRiftError(f"cannot create the state lock {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    who = f" (pid {holder})" if holder else ""
                    raise RingRiftError(
                        f"another orchestrator{who} is running with the state file {self.path.with_suffix('')}; "
                        f"wait for it to finish, or give this run its own --state PATH") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def holder_pid(path: Path) -> int | None:
    """The pid of the live orchestrator holding `path`'s lock, or None when nobody holds it."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_state(path: Path) -> dict | None:
    """The state document, or None when there is none. A corrupt file is an error naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RingRiftError(f"{path}: cannot read the pipeline state: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RingRiftError(f"{path}:{exc.lineno}: the pipeline state is not valid JSON ({exc.msg}); "
                            f"delete it to start afresh") from None
    if not isinstance(data, dict):
        raise RingRiftError(f"{path}: the pipeline state is not a JSON object")
    return data


class PipelineState:
    """The state document of the running orchestrator; `save()` writes it atomically."""

    def __init__(self, path: Path, data: dict | None = None):
        self.path = path
        self.data = data or {}
        self._last_save = 0.0

    @classmethod
    def begin(cls, path: Path, *, phase: str, run: dict, target: int | None, phases: tuple) -> "PipelineState":
        """Start (or resume) `phase` of `run`. A state of the same run keeps its start time and
        its finished phases; any other state is replaced."""
        old = read_state(path) or {}
        same = old.get("run") == run
        data = {
            "current_phase": phase,
            "phase_status": {p: (old.get("phase_status", {}).get(p, "pending") if same else "pending")
                             for p in phases},
            "games_completed": old.get("games_completed", 0) if same else 0,
            "games_target": target,
            "started_at": old.get("started_at") if same and old.get("started_at") else now_iso(),
            "updated_at": now_iso(),
            "resumed": bool(same),
            "pid": os.getpid(),
            "run": run,
            "workers": {},
            "ranges": [],
            "error": None,
        }
        data["phase_status"][phase] = "running"
        st = cls(path, data)
        st.save()
        return st

    def set_phase(self, phase: str, status: str) -> None:
        self.data["phase_status"][phase] = status
        if status == "running":
            self.data["current_phase"] = phase
        self.save()

    def worker(self, name: str) -> dict:
        return self.data["workers"].setdefault(name, {"status": "idle", "games": 0, "range": None})

    def save(self, *, throttle: float = 0.0) -> None:
        now = time.monotonic()
        if throttle and now - self._last_save < throttle:
            return
        self._last_save = now
        self.data["updated_at"] = now_iso()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(self.data, fh, indent=1, sort_keys=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise RingRiftError(f"{self.path}: cannot write the pipeline state: {exc.strerror}") from None
