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

from .. import atomic
from ..engine.errors import RingRiftError
from ..exitcodes import UsageError

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


MAX_STATE_BYTES = 64 << 20  # far beyond any real state (at most MAX_RANGES ranges)

_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
# Top-level fields of the state document and the JSON types each may hold.
_FIELDS = {
    "current_phase": _OPT_STR, "phase_status": dict, "games_completed": int, "games_target": _OPT_INT,
    "games_in_flight": int, "started_at": _OPT_STR, "updated_at": _OPT_STR, "resumed": bool, "pid": _OPT_INT,
    "run": (dict, type(None)), "workers": dict, "ranges": list, "error": _OPT_STR, "backend": dict,
}
_WORKER_FIELDS = {"status": _OPT_STR, "games": _OPT_INT, "todo": _OPT_INT, "ranges_done": _OPT_INT,
                  "error": _OPT_STR, "host": _OPT_STR, "pid": _OPT_INT, "range": (list, type(None))}
_RANGE_FIELDS = {"start": int, "end": int, "status": str, "host": _OPT_STR}


def _type_name(types) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "an array", bool: "true or false",
             type(None): "null"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names[t] for t in types)


def _check(path: Path, where: str, value, types) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in
                                           (types if isinstance(types, tuple) else (types,)))
    if not ok:
        raise UsageError(f"{path}: the pipeline state's {where} must be {_type_name(types)}, got "
                         f"{json.dumps(value)[:40]}; delete the file to start afresh")


def validate_state(path: Path, data) -> dict:
    """The state document if every field it has holds the type this module writes; a
    UsageError naming the file and field otherwise (a hand-edited or foreign file)."""
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the pipeline state is not a JSON object; delete the file to start afresh")
    for key, types in _FIELDS.items():
        if key in data:
            _check(path, f"field {key!r}", data[key], types)
    for phase, status in data.get("phase_status", {}).items():
        _check(path, f"phase_status[{phase!r}]", status, str)
    for name, w in data.get("workers", {}).items():
        _check(path, f"workers[{name!r}]", w, dict)
        for key, types in _WORKER_FIELDS.items():
            if key in w:
                _check(path, f"workers[{name!r}].{key}", w[key], types)
        rng = w.get("range")
        if rng is not None and (len(rng) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                         for v in rng)):
            _check(path, f"workers[{name!r}].range", rng, type(None))
    for k, r in enumerate(data.get("ranges", [])):
        _check(path, f"ranges[{k}]", r, dict)
        for key, types in _RANGE_FIELDS.items():
            if key in r:
                _check(path, f"ranges[{k}].{key}", r[key], types)
    return data


def read_state(path: Path) -> dict | None:
    """The state document, or None when there is none. A file that cannot be read, is not
    UTF-8 JSON or holds fields of the wrong type is a UsageError naming it."""
    try:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory, not a pipeline state file")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the pipeline state: {exc.strerror}") from None
    if len(raw) > MAX_STATE_BYTES:
        raise UsageError(f"{path}: the pipeline state is over {MAX_STATE_BYTES >> 20} MiB; not a state file "
                         f"of this pipeline (delete it to start afresh)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the pipeline state is not UTF-8 text (byte {exc.start}); delete it to start "
                         f"afresh") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: the pipeline state is not valid JSON ({exc.msg}); "
                         f"delete it to start afresh") from None
    except (RecursionError, ValueError) as exc:  # nested too deeply, a number too long to convert
        raise UsageError(f"{path}: the pipeline state is not usable JSON ({type(exc).__name__}); delete it to "
                         f"start afresh") from None
    return validate_state(path, data)


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
        try:
            # json.dumps without indent runs in C: a state of 10,000 ranges and 1,000 workers is
            # written in milliseconds, not the ~0.2 s of the pure-Python indenting encoder
            # (`ringrift-pipeline status --json` prints it indented).
            atomic.write_text(self.path, json.dumps(self.data, separators=(",", ":")) + "\n")
        except OSError as exc:
            raise RingRiftError(f"{self.path}: cannot write the pipeline state: {exc.strerror}") from None
