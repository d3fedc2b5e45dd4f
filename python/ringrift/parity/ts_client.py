"""Client of the Node bridge (``ts_bridge/bridge.mjs``) that replays games through the reference
TypeScript engine of a RingRift checkout.

One long-lived ``node`` process; line-based JSON over its stdin/stdout (the protocol is described
at the top of ``bridge.mjs``).  Requests may be pipelined: :meth:`TSBridge.submit` queues a game,
:meth:`TSBridge.receive` returns the oldest outstanding answer.  Every wait is bounded: the bridge
is killed and :class:`BridgeError` raised when it does not start, dies, answers garbage or takes
longer than the timeout.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

from ..engine.errors import RingRiftError

BRIDGE_JS = Path(__file__).resolve().parent / "ts_bridge" / "bridge.mjs"
PROTOCOL = 1
ENV_ROOT = "RINGRIFT_TS_ROOT"


class BridgeError(RingRiftError):
    """The TS bridge could not be used (not started, died, malformed answer, timeout)."""


class BridgeTimeout(BridgeError):
    pass


class BridgeCrashed(BridgeError):
    pass


class BridgeProtocolError(BridgeError):
    pass


def ts_root_from(arg: str | os.PathLike | None) -> str | None:
    """The TS checkout named on the command line, else in ``RINGRIFT_TS_ROOT``, else None."""
    value = arg if arg else os.environ.get(ENV_ROOT)
    return str(value) if value else None


def check_ts_root(root: str | os.PathLike) -> Path:
    """Raise BridgeError unless ``root`` looks like a RingRift checkout with its npm install done."""
    p = Path(root)
    if not p.is_dir():
        raise BridgeError(f"TS checkout {p}: no such directory")
    for rel in ("package.json", "src/shared/engine/orchestration/turnOrchestrator.ts"):
        if not (p / rel).is_file():
            raise BridgeError(f"TS checkout {p}: not a RingRift checkout ({rel} is missing)")
    if not (p / "node_modules").is_dir():
        raise BridgeError(f"TS checkout {p}: node_modules is missing (run 'npm ci' there)")
    return p


def node_executable() -> str:
    node = os.environ.get("RINGRIFT_NODE") or shutil.which("node")
    if not node:
        raise BridgeError("node was not found on PATH (needed for the TS bridge; or set RINGRIFT_NODE)")
    return node


_EOF = object()


class TSBridge:
    """A running bridge process.

    ``command`` replaces the default ``node bridge.mjs --ts-root ROOT`` (tests use a stub that
    speaks the same protocol).  ``game_timeout`` + ``step_timeout`` * moves bounds the wait for
    one game's answer; ``start_timeout`` the wait for the ready line.
    """

    def __init__(self, ts_root: str | os.PathLike | None = None, *, command: list[str] | None = None,
                 start_timeout: float = 120.0, game_timeout: float = 60.0, step_timeout: float = 0.05,
                 cache_dir: str | None = None, env: dict | None = None):
        if command is None:
            if ts_root is None:
                raise BridgeError("no TS checkout given")
            command = [node_executable(), str(BRIDGE_JS), "--ts-root", str(ts_root)]
            if cache_dir:
                command += ["--cache-dir", str(cache_dir)]
        self.command = list(command)
        self.start_timeout = start_timeout
        self.game_timeout = game_timeout
        self.step_timeout = step_timeout
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None
        self._ids = itertools.count(1)
        self._pending: collections.deque = collections.deque()  # (id, moves) in submission order
        self._stderr: collections.deque = collections.deque(maxlen=40)

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> dict:
        """Start the process and wait for its ready line; returns that line."""
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=self.env, bufsize=0)
        except OSError as exc:
            raise BridgeError(f"cannot start the TS bridge ({self.command[0]}): {exc}") from None
        self._out: queue.Queue = queue.Queue()
        self._in: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        threading.Thread(target=self._write_stdin, daemon=True).start()
        msg = self._next(self.start_timeout, "starting")
        if msg.get("type") == "fatal":
            self.kill()
            raise BridgeError(f"the TS bridge could not start: {msg.get('error')}")
        if msg.get("type") != "ready":
            self.kill()
            raise BridgeProtocolError(f"the TS bridge did not announce itself (got {_short(msg)})")
        if msg.get("protocol") != PROTOCOL:
            self.kill()
            raise BridgeProtocolError(f"TS bridge speaks protocol {msg.get('protocol')!r}, expected {PROTOCOL}")
        self.ready = msg
        return msg

    def close(self, timeout: float = 5.0) -> None:
        """Ask the bridge to quit; kill it when it does not within ``timeout``."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._in.put(b'{"type":"quit"}\n')
            self._in.put(None)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._in.put(None)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        self._pending.clear()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests -----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, request: dict) -> int:
        """Queue one game request (``type`` and ``id`` are filled in); returns its id.

        A bridge that has died is noticed by :meth:`receive`, after the answers it gave before
        dying, so that the failure is charged to the game it was working on."""
        if self.proc is None:
            raise BridgeError("the TS bridge is not running")
        rid = next(self._ids)
        req = dict(request, type="game", id=rid)
        self._in.put((json.dumps(req, separators=(",", ":")) + "\n").encode("utf-8"))
        self._pending.append((rid, len(request.get("moves") or ())))
        return rid

    def receive(self, timeout: float | None = None) -> dict:
        """The answer to the oldest outstanding request."""
        if not self._pending:
            raise BridgeError("no request is outstanding")
        rid, moves = self._pending[0]
        if timeout is None:
            timeout = self.game_timeout + self.step_timeout * moves
        msg = self._next(timeout, f"replaying request {rid} ({moves} moves)")
        if msg.get("type") == "error":
            self.kill()
            raise BridgeProtocolError(f"the TS bridge refused request {rid}: {msg.get('error')}")
        if msg.get("type") != "result" or msg.get("id") != rid:
            self.kill()
            raise BridgeProtocolError(f"unexpected answer from the TS bridge to request {rid}: {_short(msg)}")
        if not isinstance(msg.get("ok"), bool) or not isinstance(msg.get("steps"), int):
            self.kill()
            raise BridgeProtocolError(f"malformed answer from the TS bridge to request {rid}: {_short(msg)}")
        self._pending.popleft()
        return msg

    def replay(self, request: dict, timeout: float | None = None) -> dict:
        """Submit one game and wait for its answer."""
        if self._pending:
            raise BridgeError("replay() needs an idle bridge; use submit()/receive() when pipelining")
        self.submit(request)
        return self.receive(timeout)

    def play(self, board: str, num_players: int, games: int, seed: int, *, warmup: int = 0,
             max_moves: int | None = None, moves: bool = False, timeout: float | None = None) -> dict:
        """Random play on the TS engine: ``games`` games, each move drawn uniformly from the host
        layer's legal surface by a PRNG seeded from (``seed``, game index); ``warmup`` more games
        first, off the clock.  Returns the bridge's ``played`` answer: ``games``, ``moves``,
        ``completed``, ``capped``, ``cpuUser``/``cpuSystem`` (the Node process's CPU time over the
        counted games, microseconds), ``wallMs`` and per-game ``results`` (with ``moveList``, the
        moves as Move JSON, when ``moves``).  ``timeout`` (default: ``game_timeout`` per game)
        bounds the wait."""
        if self.proc is None:
            raise BridgeError("the TS bridge is not running")
        if self._pending:
            raise BridgeError("play() needs an idle bridge")
        rid = next(self._ids)
        req = {"type": "play", "id": rid, "board": board, "numPlayers": num_players, "games": games, "seed": seed,
               "warmup": warmup, "moves": bool(moves)}
        if max_moves is not None:
            req["maxMoves"] = max_moves
        self._in.put((json.dumps(req, separators=(",", ":")) + "\n").encode("utf-8"))
        if timeout is None:
            timeout = self.game_timeout * (games + warmup)
        msg = self._next(timeout, f"playing {games} random {board} {num_players}p games (request {rid})")
        if msg.get("type") == "error" and msg.get("id") == rid:
            raise BridgeError(f"the TS bridge could not play: {msg.get('error')}")
        if msg.get("type") != "played" or msg.get("id") != rid:
            self.kill()
            hint = " (a bridge older than the 'play' request?)" if msg.get("type") == "error" else ""
            raise BridgeProtocolError(f"unexpected answer from the TS bridge to play request {rid}{hint}: "
                                      f"{_short(msg)}")
        fields = ("games", "moves", "completed", "capped", "cpuUser", "cpuSystem", "wallMs")
        if any(not isinstance(msg.get(k), int) or msg[k] < 0 for k in fields) or msg["games"] != games \
                or not isinstance(msg.get("results"), list) or len(msg["results"]) != games:
            self.kill()
            raise BridgeProtocolError(f"malformed answer from the TS bridge to play request {rid}: {_short(msg)}")
        return msg

    # -- plumbing -----------------------------------------------------------------------------
    def _next(self, timeout: float, doing: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._out.get(timeout=max(left, 0.0))
            except queue.Empty:
                self.kill()
                raise BridgeTimeout(f"the TS bridge gave no answer within {timeout:g} s while {doing}; "
                                    f"it was stopped{self._stderr_tail()}") from None
            if line is _EOF:
                raise BridgeCrashed(self._died(f"while {doing}"))
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                msg = json.loads(text)
            except ValueError:
                self.kill()
                raise BridgeProtocolError(f"malformed line from the TS bridge while {doing}: "
                                          f"{text[:200]!r}{self._stderr_tail()}") from None
            if not isinstance(msg, dict):
                self.kill()
                raise BridgeProtocolError(f"malformed line from the TS bridge while {doing}: {text[:200]!r}")
            return msg

    def _died(self, when: str) -> str:
        proc = self.proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            self._stderr_thread.join(1.0)   # its last words
        self.kill()
        status = f"exit status {code}" if code is not None else "no exit status"
        return f"the TS bridge died {when} ({status}){self._stderr_tail()}"

    def _stderr_tail(self) -> str:
        time.sleep(0.05)  # let the stderr reader catch the last lines
        tail = [line for line in list(self._stderr)[-8:] if line.strip()]
        return ("; its stderr ends: " + " | ".join(tail)) if tail else ""

    def _read_stdout(self) -> None:
        proc, q = self.proc, self._out
        try:
            for line in iter(proc.stdout.readline, b""):
                q.put(line)
        except (OSError, ValueError):
            pass
        q.put(_EOF)

    def _read_stderr(self) -> None:
        proc, buf = self.proc, self._stderr
        try:
            for line in iter(proc.stderr.readline, b""):
                buf.append(line.decode("utf-8", "replace").rstrip()[:300])
        except (OSError, ValueError):
            pass

    def _write_stdin(self) -> None:
        proc, q = self.proc, self._in
        while True:
            data = q.get()
            if data is None:
                break
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (OSError, ValueError):
                break
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass


def _short(msg) -> str:
    text = json.dumps(msg)
    return text if len(text) <= 200 else text[:200] + "..."
