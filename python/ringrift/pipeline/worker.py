"""What the orchestrator runs on a host: `worker` plays one seed range into a game DB, `probe`
reports what the host has. Both are `python -m ringrift.pipeline worker|probe ...` on the host.

The worker prints one JSON object per line on stdout ({"event": "start" | "progress" | "done"
| "error", ...}) for the orchestrator to follow. With --exit-on-stdin-eof it exits as soon as
its standard input closes: when the orchestrator stops, dies or loses the SSH connection, the
channel (or pipe) closes and the worker goes with it, never outliving the job. A committed
batch is whole (one transaction each), so an exit at any moment leaves only complete games.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..engine.errors import RingRiftError
from ..exitcodes import UsageError
from .ranges import MAX_GAMES, MAX_GAMES_WHY, MAX_SEED, IndexSet

_SKIP_DIRS = {"__pycache__"}


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def parse_event(line: str) -> dict | None:
    """The event of one worker output line (as written by `emit`), or None for plain output."""
    if not line.startswith("{"):
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None


def build_id(package_dir: Path | None = None) -> str:
    """A digest of every file of the installed ringrift package (the compiled engine, the Python
    code, the shipped sources): equal on two machines exactly when both run the same build."""
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            h.update(rel.encode() + b"\0")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()[:16]


def engine_id() -> str:
    """A digest of the compiled engine extension alone."""
    from .. import _core

    with open(_core.__file__, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def selfplay_range(db, *, board: str, num_players: int, seed: int, policy: str, indices, threads: int = 0,
                   max_moves: int = 2000, batch_size: int | None = None, host: str | None = None,
                   progress=None, device: str = "cpu") -> dict:
    """Play the given game indices of (board, num_players, policy, seed) that `db` does not hold
    yet, committing batch by batch. `progress(done, total)` after every batch. Returns counts.
    device="cuda" plays them with the GPU kernel (the same games, batches sized for the GPU)."""
    from .. import _core
    from ..selfplay.runner import ENGINE_VERSION, stored_indices

    if policy.startswith(("onnx:", "heuristic:")):  # a net (or the mixed heuristic) in a BatchEnv
        return _selfplay_range_env(db, board=board, num_players=num_players, seed=seed, policy=policy,
                                   indices=indices, threads=threads, max_moves=max_moves, batch_size=batch_size,
                                   progress=progress, device=device, host=host)
    search = None  # a gumbel:... policy: games played by the search (ringrift.search.selfplay)
    if policy.startswith("gumbel:"):
        from ..search import selfplay as search

        search_spec = search.parse_policy(policy)  # gumbel:onnx:PATH plays from the file ...
        policy = search_spec.name  # ... and is stored by the net's id; the name lists every option
        if device != "cpu":
            raise ValueError(f"policy {policy}: search self-play runs on the CPU (device='cpu')")
    indices = IndexSet.from_indices(indices)
    have = stored_indices(db, board=board, num_players=num_players, seed=seed, policy=policy)
    todo = indices - have
    total = indices.count
    present = total - todo.count
    n_threads = threads if threads > 0 else _core.hardware_threads()
    if device == "cuda":
        from ..gpu import GPU_BATCH, require_gpu, selfplay_batch_gpu

        require_gpu(on=host or socket.gethostname())
        size = batch_size or GPU_BATCH[board]
    else:
        size = batch_size or max(16, min(1024, (64 if board in ("square8", "hex8") else 4) * n_threads))
    host = host or socket.gethostname()
    played = moves = 0
    t0 = time.perf_counter()
    if progress:
        progress(present, total)
    for chunk in todo.chunks(size):
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if device == "cuda":
            batch = selfplay_batch_gpu(board, num_players, seed, chunk, policy, max_moves)
        elif search is not None:
            batch = search.selfplay_search_batch(board, num_players, seed, list(chunk), search_spec, max_moves=max_moves,
                                                 threads=n_threads)
        else:
            batch = _core.selfplay_batch(board, num_players, seed, chunk, policy, threads=n_threads,
                                         max_moves=max_moves, record=True)
        db.insert_batch(batch, board=board, num_players=num_players, seed=seed, policy=policy,
                        engine_version=ENGINE_VERSION, host=host, max_moves=max_moves, started_at=started)
        if search is not None:  # the search's targets, beside the games (their own table)
            search.store_targets(db.path, batch, board=board, num_players=num_players, policy=policy, seed=seed)
        played += len(chunk)
        moves += int(batch["total_moves"])
        if progress:
            progress(present + played, total)
    return {"games": played, "present": present, "total": total, "moves": moves,
            "seconds": time.perf_counter() - t0, "engine_version": ENGINE_VERSION}


def _selfplay_range_env(db, *, board, num_players, seed, policy, indices, threads, max_moves, batch_size, progress,
                        device, host) -> dict:
    """selfplay_range for ``onnx:PATH`` and ``heuristic:random=P``: the games advance in a BatchEnv
    (ringrift.train.games), stored under the player's name (a net's id, not its path), each game
    keyed by (seed, index) alone, so the same games as a local ``run_onnx_selfplay``."""
    from ..selfplay.runner import ENGINE_VERSION, stored_indices
    from ..train.games import play_games
    from ..train.players import make_player

    player = make_player(policy, device=device, threads=threads)
    indices = IndexSet.from_indices(indices)
    have = stored_indices(db, board=board, num_players=num_players, seed=seed, policy=player.name)
    todo = indices - have
    total, present = indices.count, indices.count - todo.count
    counts = {"games": 0, "moves": 0}
    t0 = time.perf_counter()
    if progress:
        progress(present, total)

    def on_game(i, winner, reason, capped, moves):
        counts["games"] += 1
        counts["moves"] += moves
        if progress:
            progress(present + counts["games"], total)

    if todo:
        play_games(board, num_players, [player], iter(todo), lambda i: [0] * num_players, seed=seed,
                   batch_size=max(1, min(batch_size or 256, todo.count)), max_moves=max_moves, threads=threads,
                   db=db, policy_name=player.name, on_game=on_game, device=device, host=host)
    return {"games": counts["games"], "present": present, "total": total, "moves": counts["moves"],
            "seconds": time.perf_counter() - t0, "engine_version": ENGINE_VERSION}


def _stdin_watchdog() -> None:
    """Exit the process when stdin reaches EOF (the orchestrator's channel or pipe closed)."""
    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(143)

    threading.Thread(target=watch, name="stdin-watchdog", daemon=True).start()


def worker_main(args) -> int:
    from .. import _core
    from ..db import GameDB

    if args.exit_on_stdin_eof:
        _stdin_watchdog()
    if args.indices is not None:
        try:
            indices = IndexSet.parse(args.indices, max_index=MAX_GAMES - 1)
        except ValueError as exc:
            raise UsageError(f"--indices: {exc}") from None
    else:
        if args.start is None or args.count is None:
            raise UsageError("give --start and --count, or --indices")
        if args.start < 0 or args.count < 0:
            raise UsageError("--start and --count must be >= 0")
        if args.start + args.count > MAX_GAMES:
            raise UsageError(f"--start + --count must be at most {MAX_GAMES} ({MAX_GAMES_WHY})")
        indices = IndexSet.interval(args.start, args.start + args.count)
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be 0..{MAX_SEED}")
    threads = args.threads
    if threads == 0:
        threads = max(1, _core.hardware_threads() // max(1, args.parallel_jobs))
    out = Path(args.output_db)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RingRiftError(f"cannot create directory {out.parent}: {exc.strerror}") from None
    if args.model_sha256:  # a shipped net: the file the controller sent, byte for byte
        from .models import check_model, model_of_policy

        parts = model_of_policy(args.policy)
        if parts is None:
            raise UsageError("--model-sha256 goes with an onnx:PATH or gumbel:onnx:PATH policy")
        check_model(parts[1], args.model_sha256)
    emit("start", pid=os.getpid(), host=socket.gethostname(), db=str(out), threads=threads,
         version=__version__, build=build_id(), device=args.device)
    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if done >= total or now - last[0] >= args.progress_interval:
            last[0] = now
            emit("progress", done=done, total=total)

    with GameDB(out) as db:
        res = selfplay_range(db, board=args.board, num_players=args.players, seed=args.seed, policy=args.policy,
                             indices=indices, threads=threads, max_moves=args.max_moves,
                             batch_size=args.batch_size, host=args.host_name, progress=progress,
                             device=args.device)
    emit("done", db=str(out), **res)
    return 0


def _gpu_info() -> str:
    try:
        import cupy  # noqa: F401  (optional)

        n = cupy.cuda.runtime.getDeviceCount()
        names = []
        for i in range(n):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"]
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        if names:
            return f"{len(names)} x {names[0]} (cupy)"
    except Exception:  # noqa: BLE001  (no cupy, no driver, no device: try nvidia-smi)
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10)
            names = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
            if r.returncode == 0 and names:
                return f"{len(names)} x {names[0]} (nvidia-smi)"
        except (OSError, subprocess.SubprocessError):
            pass
    return "none"


def probe_info(work_dir: str | None = None, model: str | None = None) -> dict:
    from .. import _core

    where = Path(os.path.expanduser(work_dir or "."))
    probe_dir = where
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    du = shutil.disk_usage(probe_dir)
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    info = {
        "hostname": socket.gethostname(),
        "version": __version__,
        "build": build_id(),
        "engine": engine_id(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "cores": os.cpu_count() or 1,
        "threads": _core.hardware_threads(),
        "gpu": _gpu_info(),
        "work_dir": str(where),
        "disk_free_gb": round(du.free / 2**30, 2),
        "load": [round(x, 2) for x in load],
    }
    if model:  # a net to ship: is it here already, and can this host play it
        from .models import have_model, onnxruntime_version

        info["model"] = {"sha256": model, "present": have_model(where, model), "onnxruntime": onnxruntime_version()}
    return info


def probe_main(args) -> int:
    print(json.dumps(probe_info(args.work_dir, getattr(args, "model", None))), flush=True)
    return 0
