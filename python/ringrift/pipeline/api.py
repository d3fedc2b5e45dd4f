"""The pipeline's phases as Python functions: what `ringrift-pipeline` calls, and what a notebook
can call (run_selfplay, run_parity, run_export, run_all). The CLI only parses arguments, calls
open_context / run_in_context with a phase from here, and prints its errors; every phase's logic
lives here and in orchestrator.py / phases.py / backends/. Nothing here imports the CLI."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from pathlib import Path

from .. import BOARDS, POLICIES
from ..p2p import TOKEN_ENV
from ..engine.errors import RingRiftError
from ..exitcodes import UsageError
from ..logfiles import LogFile, LogFileHandler
from .config import load_config, load_hosts
from .progress import Progress
from .ranges import MAX_GAMES, MAX_GAMES_WHY, MAX_INDEX, MAX_SEED, check_range_count
from .state import PHASES, PipelineState, StateLock, read_state, state_path
from .train_phase import check_train_available, onnx_policy_spec, train_after_export

LOG_DIR_ENV = "RINGRIFT_LOG_DIR"  # where the pipeline's logs go (default: logs/ under the working directory)
ORCHESTRATOR_LOG = "pipeline_orchestrator.log"
DEFAULT_NPZ_DIR = "data/training"  # ringrift-export's default too


def check_writable(path: Path) -> None:
    """Create the output's folder, or fail with one line when the output cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RingRiftError(f"cannot create directory {parent}: {exc.strerror}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise RingRiftError(f"output database {path} is not writable")
    if not os.access(parent, os.W_OK):
        raise RingRiftError(f"directory {parent} is not writable")


def would_be_writable(path: Path) -> None:
    """check_writable without creating anything (for --dry-run)."""
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise RingRiftError(f"cannot create directory {path.parent}: {probe} is not a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise RingRiftError(f"output database {path} is not writable")


class Context:
    """What one invocation shares: args, config, hosts, state, logger."""

    def __init__(self, args, cfg):
        self.args = args
        self.cfg = cfg
        self.dry_run = bool(getattr(args, "dry_run", False))
        self.state_path = state_path(args.state)
        self.lock: StateLock | None = None
        self.state: PipelineState | None = None
        self.logger = _LOGGER
        self._handlers: list = []
        self._hosts = None

    @property
    def hosts(self):
        if self._hosts is None:
            self._hosts = load_hosts(self.cfg)
        return self._hosts

    def start(self) -> None:
        """Take the state lock and open the orchestrator log (never in a dry run)."""
        assert not self.dry_run
        self.lock = StateLock(self.state_path)
        self.lock.acquire()
        self._handlers = _setup_logging(self.logger)
        called = getattr(self.args, "called_as", None) or f"ringrift-pipeline {' '.join(sys.argv[1:])}"
        self.logger.info(f"pid {os.getpid()}: {called}")

    def enter_phase(self, phase: str, run: dict, *, begin: bool) -> None:
        """Start `phase`: as a run of its own (``begin``: lock, log, a fresh state naming `run`) or
        as the next phase of the run already in progress (``run all``)."""
        if begin:
            self.start()
            self.state = PipelineState.begin(self.state_path, phase=phase, run={"phase": phase, **run},
                                             target=None, phases=(phase,))
        else:
            self.state.set_phase(phase, "running")

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        for h in self._handlers:
            h.close()
            self.logger.removeHandler(h)
            logging.getLogger("asyncssh").removeHandler(h)
        self._handlers = []


_LOGGER = logging.getLogger("ringrift.pipeline")
_LOGGER.addHandler(logging.NullHandler())  # nothing reaches stderr unless a run opened its log file
_LOGGER.propagate = False
logging.getLogger("asyncssh").addHandler(logging.NullHandler())
logging.getLogger("asyncssh").propagate = False


def logs_dir() -> Path:
    """The log folder: $RINGRIFT_LOG_DIR, else logs/ under the working directory."""
    return Path(os.path.expanduser(os.environ.get(LOG_DIR_ENV) or "logs"))


def _setup_logging(logger: logging.Logger) -> list:
    logger.setLevel(logging.INFO)
    logs = logs_dir()
    try:
        logs.mkdir(parents=True, exist_ok=True)
        handler = LogFileHandler(logs / ORCHESTRATOR_LOG, "ringrift-pipeline")  # a full disk: one warning
    except OSError as exc:
        print(f"ringrift-pipeline: warning: cannot write {logs / ORCHESTRATOR_LOG} "
              f"({exc.strerror}); logging to stderr only", file=sys.stderr)
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    ssh_logger = logging.getLogger("asyncssh")
    ssh_logger.setLevel(logging.WARNING)
    ssh_logger.propagate = False
    ssh_logger.addHandler(handler)
    return [handler]


# ---- canonical_selfplay ----------------------------------------------------------------------

def selfplay_spec(args, cfg):
    from .orchestrator import SelfplaySpec

    sc = cfg["selfplay"]
    # The Python API (ringrift.pipeline.run_selfplay) hands these over as given: a float or bool
    # count once ran, and wrote a state file that every later run refused
    for name, flag in (("num_games", "--num-games"), ("players", "--players"), ("seed", "--seed"),
                       ("threads", "--threads"), ("max_moves", "--max-moves"), ("batch_size", "--batch-size"),
                       ("games_per_worker", "--games-per-worker")):
        value = getattr(args, name, None)
        if value is not None and (type(value) is bool or not isinstance(value, int)):
            raise UsageError(f"{flag} must be an integer, got {value!r}")
    for name, flag in (("board", "--board"), ("policy", "--policy")):
        value = getattr(args, name, None)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{flag} must be a string, got {value!r}")
    board = args.board or cfg["default_board"]
    if board not in BOARDS:
        raise UsageError(f"--board must be one of {', '.join(BOARDS)}, got {board!r}")
    if not 0 <= args.num_games <= MAX_GAMES:
        raise UsageError(f"--num-games must be 0..{MAX_GAMES} ({MAX_GAMES_WHY})")
    players = args.players or sc["num_players"]
    if players not in (2, 3, 4):
        raise UsageError(f"--players must be 2, 3 or 4, got {players!r}")
    seed = sc["seed"] if args.seed is None else args.seed
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be 0..{MAX_SEED}")
    policy = onnx_policy_spec(args.policy or sc["policy"], getattr(args, "temperature", None))
    if policy not in POLICIES and not policy.startswith("onnx:"):
        try:  # gumbel:... specs normalised (the stored policy names every option), others as they are
            from ..search.spec import check_policy

            policy = check_policy(policy)
        except ValueError as exc:
            raise UsageError(f"--policy: {exc}") from None
    if args.threads is not None and not 0 <= args.threads <= 1024:
        raise UsageError("--threads must be 0..1024")
    max_moves = args.max_moves if args.max_moves is not None else sc["max_moves"][board]
    if not 1 <= max_moves <= 1_000_000:
        raise UsageError("--max-moves must be 1..1000000")
    gpw = args.games_per_worker if args.games_per_worker is not None else sc["games_per_worker"]
    if not 1 <= gpw <= MAX_INDEX:
        raise UsageError("--games-per-worker must be >= 1")
    if args.batch_size is not None and not 1 <= args.batch_size <= 100_000:
        raise UsageError("--batch-size must be 1..100000")
    out = Path(args.output_db or f"data/games/canonical_{board}.db")
    # A net's policy: the file is checked here (exists, loads, fits the board), before any game,
    # and the games are stored under its id; the workers get the file (models.py).
    play_policy, model = policy, None
    if policy not in POLICIES:  # random and heuristic have no model file (and skip models.py's import)
        from .models import resolve_policy

        policy, model = resolve_policy(policy, board)
    return SelfplaySpec(board=board, players=players, policy=policy, seed=seed, num_games=args.num_games,
                        max_moves=max_moves, output_db=out, games_per_worker=gpw,
                        timeout=float(sc["timeout_seconds"]), threads=args.threads, default_threads=sc["threads"],
                        batch_size=args.batch_size, keep_worker_dbs=sc["keep_worker_dbs"],
                        device=getattr(args, "device", "cpu"), play_policy=play_policy if model else None,
                        model=model)


def state_note(ctx: Context) -> str:
    return (f"state: {ctx.state_path}; logs: {logs_dir() / ORCHESTRATOR_LOG}, "
            f"{logs_dir()}/selfplay_<host>_<timestamp>.log")


def selfplay_phase(ctx: Context, *, phases=("canonical_selfplay",), run_key=None) -> int:
    spec = selfplay_spec(ctx.args, ctx.cfg)
    if ctx.args.backend in SCHEDULED_BACKENDS:
        check_ranges(spec)
        return _selfplay_scheduled(ctx, spec, phases, run_key)
    if ctx.args.backend == "p2p":
        from .backends.p2p import selfplay_p2p

        return selfplay_p2p(ctx, spec, phases, run_key)
    hosts = ctx.hosts
    if hosts.all_local:
        return _selfplay_local(ctx, spec, phases, run_key)
    check_ranges(spec)
    return _selfplay_hosts(ctx, spec, phases, run_key)


def check_ranges(spec) -> None:
    """A distributed run is cut into at most MAX_RANGES seed ranges (one line error otherwise)."""
    try:
        check_range_count(spec.num_games, spec.games_per_worker, "--games-per-worker (config: "
                                                                 "selfplay.games_per_worker)")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _selfplay_local(ctx: Context, spec, phases, run_key) -> int:
    from .. import _core
    from ..db import GameDB
    from ..selfplay import run_selfplay
    from .orchestrator import present_indices
    from .ranges import IndexSet

    args = ctx.args
    threads = spec.threads if spec.threads is not None else spec.default_threads
    where = f" in {ctx.hosts.path}" if ctx.hosts.path else ""
    if ctx.dry_run:
        would_be_writable(spec.output_db)
        present = present_indices(spec.output_db, spec, create=False)
        todo = IndexSet.interval(0, spec.num_games) - present
        n_threads = threads or _core.hardware_threads()
        print(f"plan: canonical_selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}, "
              f"{spec.num_games} games into {spec.output_db}")
        print(f"  on this machine, in-process, {n_threads} threads (no remote hosts configured{where})")
        runs = todo.runs
        shown = str(IndexSet(runs[:20])) + (f",... ({len(runs) - 20} more runs)" if len(runs) > 20 else "")
        print(f"  {spec.num_games - todo.count} games already in the output DB; {todo.count} to play"
              + (f": indices {shown}" if todo else ""))
        print(f"  writes {spec.output_db}{'' if spec.output_db.exists() else ' (created)'}, committing whole "
              f"batches; no files move")
        print(f"  {state_note(ctx)}")
        return 0
    device = getattr(args, "device", "cpu")
    if device == "cuda":
        from ..gpu import require_gpu

        require_gpu()  # before any state is written
    check_writable(spec.output_db)
    ctx.start()  # the state lock first: a run that cannot take it leaves no new DB behind
    present_indices(spec.output_db, spec, create=True)  # refuses another engine version's games
    say_no_hosts(ctx)
    ctx.state = st = PipelineState.begin(ctx.state_path, phase="canonical_selfplay", run=run_key or spec.run_key(),
                                         target=spec.num_games, phases=phases)
    w = st.worker("localhost/1")
    w.update(status="running", host="localhost", range=[0, spec.num_games], games=0)
    st.data["ranges"] = [{"start": 0, "end": spec.num_games, "host": "localhost", "status": "running"}]
    st.save()
    log = ctx.logger
    log.info(f"canonical_selfplay {spec.run_id}: {spec.num_games} games into {spec.output_db}, on this machine")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = logs_dir()
    host_log = LogFile.open(logs / f"selfplay_localhost_{stamp}.log", "ringrift-pipeline") if logs.is_dir() else None
    bar = None if args.quiet else Progress(f"selfplay {spec.board} {spec.players}p")

    def progress(done, total, rate):
        if bar:
            bar(done, total, rate)
        w["games"] = done
        st.data["games_completed"] = done
        st.save(throttle=0.5)
        if host_log:
            host_log.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} "
                           f"{done}/{total} games, {rate:.1f} games/s\n")

    try:
        with GameDB(spec.output_db) as db:
            result = run_selfplay(db, board=spec.board, num_games=spec.num_games, num_players=spec.players,
                                  seed=spec.seed, policy=spec.local_policy, threads=threads, max_moves=spec.max_moves,
                                  batch_size=spec.batch_size, progress=progress, device=device)
            if bar:
                bar.close()
            total = db.count_games(board=spec.board, num_players=spec.players, seed=spec.seed, policy=result.policy)
    except BaseException as exc:
        # nothing plays on once this process stops: the status must not say "running" (the
        # phase and the error are recorded by run_in_context, which saves this too)
        stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        w["status"] = st.data["ranges"][0]["status"] = stopped
        raise
    finally:
        if host_log:
            host_log.close()
    for line in result.summary_lines():
        print(line)
        log.info(line)
    print(f"  database: {spec.output_db} ({total} games of this run)")
    w.update(status="done", games=spec.num_games)
    st.data["ranges"][0]["status"] = "merged"
    st.data["games_completed"] = min(total, spec.num_games)
    st.set_phase("canonical_selfplay", "done")
    return 0


def begin_distributed_selfplay(ctx: Context, spec, phases, run_key):
    """The start shared by the self-play runs through the scheduler (every executor): a writable
    output DB, the run's state record and a progress bar (None with --quiet). Returns (state, bar)."""
    check_writable(spec.output_db)
    ctx.start()
    ctx.state = st = PipelineState.begin(ctx.state_path, phase="canonical_selfplay", run=run_key or spec.run_key(),
                                         target=spec.num_games, phases=phases)
    return st, None if ctx.args.quiet else Progress(f"selfplay {spec.board} {spec.players}p")


SCHEDULED_BACKENDS = ("ray", "local")  # no hosts file, no leader: the executor is all there is (ssh, p2p below)


def executor_for(ctx: Context, spec):
    """The executor of --backend ray|local for `spec`."""
    if ctx.args.backend == "ray":
        from .backends.ray_backend import RayExecutor

        return RayExecutor(spec, getattr(ctx.args, "ray_address", None))
    from .backends.pool import LocalPoolExecutor

    return LocalPoolExecutor(spec)


def _selfplay_scheduled(ctx: Context, spec, phases, run_key) -> int:
    """canonical_selfplay through the scheduler and one executor (ray, local)."""
    from .orchestrator import present_indices, report_selfplay
    from .ranges import split
    from .scheduler import GameDBSink, RangeScheduler, run_scheduler

    backend = ctx.args.backend
    if ctx.dry_run:
        would_be_writable(spec.output_db)
        present = present_indices(spec.output_db, spec, create=False)
        ranges = split(spec.num_games, spec.games_per_worker)
        todo = [r for r in ranges if not present.covers(r.start, r.end)]
        print(f"plan: canonical_selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}, "
              f"{spec.num_games} games into {spec.output_db}")
        if backend == "ray":
            from .backends.ray_backend import ray_address

            where = f"the Ray cluster at {ray_address(getattr(ctx.args, 'ray_address', None))!r}"
            each = ("num_gpus=1" if spec.device == "cuda" else f"num_cpus={max(1, spec.threads or spec.default_threads or 1)}")
            print(f"  executor: ray, one task per range ({each}) on {where}; each range DB comes back through "
                  f"the object store and is merged as it arrives")
        else:
            print("  executor: local, a thread pool in this process; each range into its own part DB, merged as "
                  "it finishes")
        if spec.model and backend == "ray":
            from .orchestrator import model_plan

            print(f"  {model_plan(spec)} through Ray's object store: a node fetches it once into its "
                  f"ringrift-ray/models/ (in its temporary folder) and checks its SHA-256")
        print(f"  {spec.num_games - present.within(0, spec.num_games).count} games to play in {len(todo)} of "
              f"{len(ranges)} ranges of up to {spec.games_per_worker}; part DBs in {spec.parts_dir()}")
        print(f"  {state_note(ctx)}")
        return 0
    if spec.device == "cuda" and backend == "local":
        from ..gpu import require_gpu

        require_gpu()
    executor = executor_for(ctx, spec)
    check_writable(spec.output_db)
    st, bar = begin_distributed_selfplay(ctx, spec, phases, run_key)
    sched = RangeScheduler(spec, executor, GameDBSink(spec), st, ctx.logger, progress=bar, err=sys.stderr)
    summary = run_scheduler(sched)
    if bar:
        bar.close()
    workers = f"the {backend} executor ({len(summary['by_host'])} node{'s' if len(summary['by_host']) != 1 else ''})"
    return report_selfplay(ctx, spec, st, summary, workers=workers, unit="node")


def _selfplay_hosts(ctx: Context, spec, phases, run_key) -> int:
    """canonical_selfplay on the hosts of the hosts file: the scheduler and the ssh executor."""
    from .backends import get_backend
    from .backends.hosts import HOST_FAILURES, HostsExecutor
    from .orchestrator import plan_ranges, present_indices, print_plan, report_selfplay, selfplay_hosts
    from .scheduler import MAX_ATTEMPTS, GameDBSink, RangeScheduler, run_scheduler

    args = ctx.args
    workers = selfplay_hosts(ctx.hosts.hosts, spec.device)
    backend = get_backend(args.backend)
    handles = {h.name: backend.handle(h) for h in workers}
    if ctx.dry_run:
        would_be_writable(spec.output_db)
        present = present_indices(spec.output_db, spec, create=False)
        print_plan(spec, handles, plan_ranges(spec, workers, present), sys.stdout)
        print(f"  {state_note(ctx)}")
        return 0
    st, bar = begin_distributed_selfplay(ctx, spec, phases, run_key)
    executor = HostsExecutor(spec, handles, backend, logs_dir())
    # A range may fail on every host before the last one is dropped (NoWorkersLeft stops the run then).
    attempts = max(MAX_ATTEMPTS, HOST_FAILURES * len(handles) + 1)
    sched = RangeScheduler(spec, executor, GameDBSink(spec), st, ctx.logger, progress=bar, err=sys.stderr,
                           max_attempts=attempts)
    summary = run_scheduler(sched)
    if bar:
        bar.close()
    return report_selfplay(ctx, spec, st, summary, workers=f"{len(handles)} hosts", unit="host")


def say_no_hosts(ctx: Context) -> None:
    """An explicit --backend ssh with no remote host plays here: say so on stderr rather than
    quietly (the default backend is ssh too, and then nothing is said)."""
    if getattr(ctx.args, "backend_given", False) and ctx.args.backend == "ssh" and ctx.hosts.all_local:
        print(f"note: --backend ssh, but no remote hosts are configured ({ctx.hosts.path or 'no hosts file'}): "
              f"playing on this machine", file=sys.stderr)


def backend_selfplay(ctx: Context):
    """The loop's self-play through the run's backend: None when it plays in this process (no
    --backend, no hosts), else ``play(board, players, policy, seed, num_games, output_db, threads,
    max_moves) -> dict`` that fills the DB through the scheduler and that backend's executor (a
    net's policy shipped to the workers, as for canonical_selfplay), with no run record of its
    own (the loop keeps its own)."""
    backend = ctx.args.backend
    if backend == "ssh" and ctx.hosts.all_local:
        return None

    def play(*, board, players, policy, seed, num_games, output_db, threads, max_moves) -> dict:
        from .scheduler import MAX_ATTEMPTS, GameDBSink, RangeScheduler, run_scheduler

        args = argparse.Namespace(num_games=num_games, board=board, players=players, seed=seed, policy=policy,
                                  threads=threads, max_moves=max_moves, games_per_worker=None, batch_size=None,
                                  output_db=str(output_db), device="cpu", temperature=None)
        spec = selfplay_spec(args, ctx.cfg)
        check_ranges(spec)
        attempts = MAX_ATTEMPTS
        if backend in SCHEDULED_BACKENDS:
            executor = executor_for(ctx, spec)
        elif backend == "p2p":
            from .backends.p2p import P2PBackend, P2PExecutor, _token

            executor = P2PExecutor(P2PBackend(leader=ctx.args.p2p_leader, auth_token=_token(ctx.args)), spec)
        else:
            from .backends import get_backend
            from .backends.hosts import HOST_FAILURES, HostsExecutor
            from .orchestrator import selfplay_hosts

            b = get_backend(backend)
            handles = {h.name: b.handle(h) for h in selfplay_hosts(ctx.hosts.hosts, "cpu")}
            executor = HostsExecutor(spec, handles, b, logs_dir())
            attempts = max(MAX_ATTEMPTS, HOST_FAILURES * len(handles) + 1)
        summary = run_scheduler(RangeScheduler(spec, executor, GameDBSink(spec), None, ctx.logger, err=sys.stderr,
                                               max_attempts=attempts))
        return {"policy": spec.policy, "played": summary["new"], "already_present": summary["already"],
                "seconds": summary["seconds"], "backend": backend}

    return play


# ---- parity_validation, npz_export, all ------------------------------------------------------

def parity_phase(ctx: Context, db: Path, *, begin=True) -> int:
    from .phases import parity_argv, printable, run_parity, sample_note

    if ctx.dry_run:
        print(f"plan: parity_validation: {printable(parity_argv(db, ctx.cfg))} (on this machine; "
              f"{sample_note(ctx.cfg)}; fail_threshold {ctx.cfg['parity']['fail_threshold']:g})")
        return 0
    ctx.enter_phase("parity_validation", {"db": str(db.resolve())}, begin=begin)
    rc = run_parity(db, ctx.cfg, ctx.logger)
    ctx.state.set_phase("parity_validation", "done")
    return rc


def export_phase(ctx: Context, db: Path, output_dir: Path, *, begin=True, board=None, players=None) -> int:
    from .phases import EXPORT_MISSING, export_argv, export_available, printable, run_export

    if not export_available():
        raise RingRiftError(EXPORT_MISSING)
    argv = export_argv(db, output_dir, ctx.cfg, board=board, players=players)
    if ctx.dry_run:
        print(f"plan: npz_export: {printable(argv)} (on this machine)")
        return 0
    ctx.enter_phase("npz_export", {"db": str(db.resolve()), "output_dir": str(output_dir.resolve())}, begin=begin)
    rc = run_export(db, output_dir, ctx.cfg, ctx.logger, board=board, players=players)
    ctx.state.set_phase("npz_export", "done")
    return rc


def all_phases(ctx: Context) -> int:
    from .phases import EXPORT_MISSING, export_available

    if not export_available():  # fail before hours of self-play, not after
        raise RingRiftError(EXPORT_MISSING)
    if getattr(ctx.args, "train", False):
        check_train_available()
    spec = selfplay_spec(ctx.args, ctx.cfg)
    output_dir = Path(ctx.args.output_dir)
    key = dict(spec.run_key(), phase="all", output_dir=str(output_dir.resolve()))
    rc = selfplay_phase(ctx, phases=PHASES, run_key=key)
    if rc:
        return rc
    rc = parity_phase(ctx, spec.output_db, begin=ctx.dry_run)
    if rc:
        return rc
    rc = export_phase(ctx, spec.output_db, output_dir, begin=ctx.dry_run, board=spec.board, players=spec.players)
    if not rc and getattr(ctx.args, "train", False):
        rc = train_after_export(ctx, output_dir, spec.board)
    if ctx.dry_run:
        print("nothing was changed (--dry-run)")
    return rc


def record_failure(ctx: Context | None, status: str, message: str) -> None:
    if ctx is None or ctx.state is None:
        return
    st = ctx.state
    phase = st.data.get("current_phase")
    if phase:
        st.data["phase_status"][phase] = status
    st.data["error"] = message
    try:
        st.save()
    except RingRiftError:
        pass


# ---- status ----------------------------------------------------------------------------------

def show_status(state=None, *, as_json: bool = False) -> int:
    """Print the pipeline state `state` (default ~/.ringrift/pipeline_state.json): phase,
    progress, every range's status and every worker's (node's, host's) progress."""
    import json

    from .state import holder_pid

    path = state_path(None if state is None else str(state))
    data = read_state(path)
    if data is None:
        note = f"no pipeline state at {path}: nothing has run yet (or it ran with another --state)"
        if as_json:  # stdout stays JSON for a pipe into jq: null, and the note on stderr
            print("null")
            print(note, file=sys.stderr)
        else:
            print(note)
        return 0
    if as_json:
        print(json.dumps(data, indent=1))
        return 0
    pid = holder_pid(path)
    if pid:
        live = f"an orchestrator is running (pid {pid})" if pid > 0 else "an orchestrator is running"
    else:
        live = "no orchestrator is running"
        if any(v == "running" for v in data.get("phase_status", {}).values()):
            live += "; the last run stopped before finishing (rerun the same command to resume)"
    print(f"state: {path} ({live})" + (f"; executor: {data['executor']}" if data.get("executor") else ""))
    run = data.get("run") or {}
    phase = data.get("current_phase")
    print(f"phase: {phase} ({data.get('phase_status', {}).get(phase, '?')}), started {data.get('started_at')}, "
          f"updated {data.get('updated_at')}")
    if data.get("phase_status"):
        print("phases: " + ", ".join(f"{p} {s}" for p, s in data["phase_status"].items()))
    if run.get("phase") == "loop" and run.get("loop_dir"):  # the generations (pipeline/loop.py)
        from .loop import status_lines

        for line in status_lines(run["loop_dir"]):
            print(line)
    elif "board" in run:
        print(f"run: {run['board']} {run.get('players')}p policy={run.get('policy')} seed={run.get('seed')} -> "
              f"{run.get('output_db')}")
    target = data.get("games_target")
    if target:
        done = data.get("games_completed", 0)
        flight = data.get("games_in_flight", 0)
        extra = f", {flight} more in flight" if flight else ""
        print(f"games: {done}/{target} ({100.0 * done / target:.0f}%) stored{extra}")
    ranges = data.get("ranges") or []
    if ranges:
        counts: dict = {}
        for r in ranges:
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        print("ranges: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    workers = data.get("workers") or {}
    if workers:
        rows = [("worker", "status", "range", "games", "ranges done", "games merged", "note")]
        for name, w in sorted(workers.items()):
            rng = w.get("range")
            rng_s = f"[{rng[0]}, {rng[1]})" if rng else "-"
            todo = w.get("todo")
            games = f"{w.get('games', 0)}/{todo}" if todo else str(w.get("games", 0))
            rows.append((name, str(w.get("status")), rng_s, games, str(w.get("ranges_done", "-")),
                         str(w.get("games_merged", "-")), (w.get("error") or "")[:100]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    if data.get("error"):
        print(f"last error: {data['error']}")
    return 0


# ---- cluster ---------------------------------------------------------------------------------

def cluster_command(ctx: Context) -> int:
    """`cluster list|health|sync|update` (ctx.args.cluster_command) for the backend of ctx.args."""
    from . import cluster
    from .backends import get_backend

    if ctx.args.backend == "ray":
        from .backends.ray_backend import cluster_ray, ray_address

        sub = ctx.args.cluster_command
        if sub not in ("list", "health"):
            raise UsageError(f"cluster {sub} is for the hosts file (--backend ssh); a Ray cluster gets this "
                             f"package with its image or pip (see docs/scaling.md)")
        if ctx.dry_run:
            print(f"plan: list the nodes of the Ray cluster at {ray_address(getattr(ctx.args, 'ray_address', None))!r}"
                  + (" and run a task on each for this package's version and build" if sub == "health" else ""))
            print("nothing was changed (--dry-run)")
            return 0
        return cluster_ray(sub, getattr(ctx.args, "ray_address", None), sys.stdout)
    if ctx.args.backend == "local":
        raise UsageError("--backend local plays on this machine: it has no cluster (cluster commands take "
                         "--backend ssh, p2p or ray)")
    if ctx.args.backend == "p2p":
        from .backends.p2p import cluster_p2p

        return cluster_p2p(ctx)
    hosts = ctx.hosts
    sub = ctx.args.cluster_command
    if sub == "list":
        return cluster.cmd_list(hosts, sys.stdout)
    entries = hosts.hosts or [cluster.local_entry()]
    backend = get_backend(ctx.args.backend)
    handles = [backend.handle(h) for h in entries]
    if sub == "health":
        if ctx.dry_run:
            print("plan: probe every host (reachability, ringrift version and build, cores, GPU, disk, load):")
            for h in handles:
                print(f"  {h.name}: {h.command_line(['probe', '--work-dir', '.'])}")
            print("nothing was changed (--dry-run)")
            return 0
        return cluster.cmd_health(handles, sys.stdout)
    if sub == "sync":
        out = Path(ctx.args.output_db)
        if ctx.dry_run:
            print(f"plan: pull every runs/*/*.db under each host's work_dir and merge it into {out}:")
            for h in handles:
                print(f"  {h.location('runs/*/*.db')} -> {out.parent / f'.{out.name}.parts'} -> {out}")
            print("nothing was changed (--dry-run)")
            return 0
        check_writable(out)
        ctx.start()
        return cluster.cmd_sync(handles, out, ctx.logger, sys.stdout, sys.stderr)
    if sub == "update":
        if not ctx.dry_run:
            ctx.start()
        return cluster.cmd_update(handles, ctx.logger, sys.stdout, dry_run=ctx.dry_run)
    return 2


# ---- the Python API --------------------------------------------------------------------------

def os_error_message(exc: OSError) -> str:
    """An OSError as one line: the file it is about, then what went wrong."""
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return f"{where}{exc.strerror or exc}"


def open_context(args) -> Context:
    """Check the backend options and load the config named by `args` (an argparse namespace or
    the keyword arguments of run_*); an unusable state file fails here, before anything is written."""
    backend = getattr(args, "backend", "ssh")
    token = getattr(args, "p2p_auth_token", None) or os.environ.get(TOKEN_ENV)
    if backend == "p2p":
        from .backends import get_backend

        get_backend("p2p", p2p_leader=getattr(args, "p2p_leader", None), p2p_auth_token=token)
    elif backend == "ray":
        from .backends.ray_backend import import_ray

        import_ray()  # one line saying how to install it, before anything is written
    elif backend not in ("ssh", "local"):
        from .backends import BACKENDS, BackendUnavailable

        raise BackendUnavailable(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    ctx = Context(args, load_config(getattr(args, "config", None)))
    read_state(ctx.state_path)
    return ctx


def run_in_context(ctx: Context, phase, *args, **kwargs) -> int:
    """Run `phase(ctx, ...)`; on failure record it in the state file and the log, then re-raise.
    The context is closed (state lock released, log closed) either way."""
    import sqlite3

    try:
        return phase(ctx, *args, **kwargs)
    except RingRiftError as exc:
        record_failure(ctx, "failed", str(exc))
        ctx.logger.error(str(exc))
        raise
    except sqlite3.Error as exc:  # a database damaged where no check of ours looked
        message = f"a game database is not usable ({exc})"
        record_failure(ctx, "failed", message)
        raise UsageError(message) from exc
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited: not a failure of the run
        raise
    except OSError as exc:
        record_failure(ctx, "failed", os_error_message(exc))
        raise
    except KeyboardInterrupt:
        record_failure(ctx, "interrupted", "interrupted")
        ctx.logger.warning("interrupted")
        raise
    finally:
        ctx.close()


def _namespace(called_as: str, **kwargs) -> argparse.Namespace:
    return argparse.Namespace(called_as=called_as, **kwargs)


def _selfplay_args(num_games, board, output_db, players, seed, policy, threads, max_moves, games_per_worker,
                   batch_size, device, quiet) -> dict:
    return dict(num_games=num_games, board=board, output_db=None if output_db is None else str(output_db),
                players=players, seed=seed, policy=policy, threads=threads, max_moves=max_moves,
                games_per_worker=games_per_worker, batch_size=batch_size, device=device, quiet=quiet)


def _common_args(config, state, backend, p2p_leader, p2p_auth_token, dry_run, ray_address=None) -> dict:
    return dict(config=None if config is None else str(config), state=None if state is None else str(state),
                backend=backend, p2p_leader=p2p_leader, p2p_auth_token=p2p_auth_token, dry_run=dry_run,
                ray_address=ray_address)


def selfplay_command(ctx: Context) -> int:
    """`run canonical_selfplay`: the phase, then the dry run's closing line."""
    rc = selfplay_phase(ctx)
    if ctx.dry_run:
        print("nothing was changed (--dry-run)")
    return rc


def run_selfplay(num_games: int, *, board: str | None = None, output_db=None, players: int | None = None,
                 seed: int | None = None, policy: str | None = None, threads: int | None = None,
                 max_moves: int | None = None, games_per_worker: int | None = None, batch_size: int | None = None,
                 device: str = "cpu", quiet: bool = True, config=None, state=None, backend: str = "ssh",
                 p2p_leader: str | None = None, p2p_auth_token: str | None = None, ray_address: str | None = None,
                 dry_run: bool = False) -> int:
    """Self-play games until the output DB holds `num_games` games of this run (a rerun resumes).

    The same as `ringrift-pipeline run canonical_selfplay`: every argument left None comes from the
    pipeline config (`config`, default config/pipeline_config.yaml when present); `output_db`
    defaults to data/games/canonical_<board>.db. With hosts in the config's hosts file the seed
    ranges are played on them (`backend` "ssh", or "p2p" through `p2p_leader`), else in this
    process. `backend="ray"` plays every seed range as a task on the Ray cluster at `ray_address`
    (auto, HOST:PORT, ray://HOST:10001; default $RAY_ADDRESS, else auto); `backend="local"` on a
    thread pool here, each range merged as it finishes. The run's progress goes to the state file `state` (default
    ~/.ringrift/pipeline_state.json) and its summary to stdout; `quiet=False` shows a progress bar.
    Returns 0; raises ringrift.engine.errors.RingRiftError (UsageError for bad arguments) on failure.
    """
    args = _namespace("ringrift.pipeline.run_selfplay", command="run", phase="canonical_selfplay",
                      **_selfplay_args(num_games, board, output_db, players, seed, policy, threads, max_moves,
                                       games_per_worker, batch_size, device, quiet),
                      **_common_args(config, state, backend, p2p_leader, p2p_auth_token, dry_run, ray_address))
    return run_in_context(open_context(args), selfplay_command)


def run_parity(db, *, config=None, state=None, dry_run: bool = False) -> int:
    """Check the games of the game DB `db` by replaying them (`ringrift-pipeline run parity_validation`).

    Without a TypeScript checkout (RINGRIFT_TS_ROOT) our engine replays them against the stored
    hashes, in this process; with one, ringrift-parity replays them through the TS engine. The
    config's parity section sets the sample size and the fail threshold; checked games are tagged
    in the DB (npz_export exports only those). Returns 0 when the failures are within the
    threshold; raises RingRiftError otherwise.
    """
    args = _namespace("ringrift.pipeline.run_parity", command="run", phase="parity_validation", db=str(db),
                      **_common_args(config, state, "ssh", None, None, dry_run))
    return run_in_context(open_context(args), parity_phase, Path(db))


def run_export(db, output_dir=DEFAULT_NPZ_DIR, *, config=None, state=None, dry_run: bool = False) -> int:
    """Export the checked games of the game DB `db` as NPZ training files into `output_dir`
    (`ringrift-pipeline run npz_export`), in this process, with the config's export section
    (split ratio, compression, symmetries, encoding). Returns 0; raises RingRiftError on failure.
    """
    args = _namespace("ringrift.pipeline.run_export", command="run", phase="npz_export", db=str(db),
                      output_dir=str(output_dir), **_common_args(config, state, "ssh", None, None, dry_run))
    return run_in_context(open_context(args), export_phase, Path(db), Path(output_dir))


def run_all(num_games: int, *, board: str | None = None, output_db=None, output_dir=DEFAULT_NPZ_DIR,
            players: int | None = None, seed: int | None = None, policy: str | None = None,
            threads: int | None = None, max_moves: int | None = None, games_per_worker: int | None = None,
            batch_size: int | None = None, device: str = "cpu", quiet: bool = True, config=None, state=None,
            backend: str = "ssh", p2p_leader: str | None = None, p2p_auth_token: str | None = None,
            ray_address: str | None = None, dry_run: bool = False) -> int:
    """run_selfplay, then run_parity and run_export of its DB into `output_dir`
    (`ringrift-pipeline run all`), recorded as one run in the state file. The arguments are those
    of run_selfplay plus `output_dir`. Returns 0; raises RingRiftError at the first failing phase.
    """
    args = _namespace("ringrift.pipeline.run_all", command="run", phase="all", output_dir=str(output_dir),
                      **_selfplay_args(num_games, board, output_db, players, seed, policy, threads, max_moves,
                                       games_per_worker, batch_size, device, quiet),
                      **_common_args(config, state, backend, p2p_leader, p2p_auth_token, dry_run, ray_address))
    return run_in_context(open_context(args), all_phases)
