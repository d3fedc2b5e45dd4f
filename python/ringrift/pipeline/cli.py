"""`ringrift-pipeline`: run the pipeline's phases here or across hosts, follow them, manage hosts.

    ringrift-pipeline run canonical_selfplay --board square8 --num-games 1000 \\
        --output-db data/games/canonical_square8.db
    ringrift-pipeline run parity_validation --db data/games/canonical_square8.db
    ringrift-pipeline run npz_export --db data/games/canonical_square8.db --output-dir data/training
    ringrift-pipeline run all --board square8 --num-games 1000 --output-db ... --output-dir ...
    ringrift-pipeline status
    ringrift-pipeline cluster list|health|sync|update

With no hosts configured (or only `localhost`) every phase runs on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

from .. import BOARDS, POLICIES
from ..engine.errors import RingRiftError
from ..exitcodes import EXIT_OK, EXIT_USAGE, OneLineParser, UsageError, exit_status
from .config import load_config, load_hosts
from .progress import Progress
from .ranges import MAX_INDEX, MAX_SEED, check_range_count
from .state import PHASES, PipelineState, StateLock, holder_pid, read_state, state_path

LOG_DIR_ENV = "RINGRIFT_LOG_DIR"  # where the pipeline's logs go (default: logs/ under the working directory)
ORCHESTRATOR_LOG = "pipeline_orchestrator.log"
TOKEN_ENV = "RINGRIFT_CLUSTER_AUTH_TOKEN"
DEFAULT_NPZ_DIR = "data/training"  # ringrift-export's default too


def _dry(p: argparse.ArgumentParser) -> None:
    """--dry-run is global, and also accepted after the command."""
    p.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                   help="print the plan and change nothing")


def _selfplay_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--board", choices=BOARDS, help="board (default: config default_board)")
    sp.add_argument("--num-games", type=int, required=True, help="target number of games in the DB")
    sp.add_argument("--output-db", metavar="PATH", help="default: data/games/canonical_<board>.db")
    sp.add_argument("--players", type=int, choices=(2, 3, 4), help="players per game (config: selfplay.num_players)")
    sp.add_argument("--seed", type=int, help="run seed (config: selfplay.seed)")
    sp.add_argument("--policy", choices=POLICIES, help="config: selfplay.policy")
    sp.add_argument("--threads", type=int, help="native threads per worker, 0 = all cores (config: selfplay.threads)")
    sp.add_argument("--max-moves", type=int, help="move cap per game (config: selfplay.max_moves.<board>)")
    sp.add_argument("--games-per-worker", type=int, help="games per dispatched seed range (config: "
                                                         "selfplay.games_per_worker)")
    sp.add_argument("--batch-size", type=int, help="games per committed batch (default: automatic)")
    sp.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: native thread pool; cuda: the same rules as a CUDA kernel (needs a GPU and "
                         "ringrift[gpu]; with hosts, only those declaring capability gpu play); the games are "
                         "identical either way")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    _dry(sp)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="ringrift-pipeline", description="Run the ringrift training-data pipeline: self-play, "
                 "parity validation and NPZ export, on this machine or across SSH hosts.")
    ap.add_argument("--backend", choices=("ssh", "p2p"), default="ssh",
                    help="how hosts are driven (default: ssh; p2p: through a ringrift-p2p leader, see docs/p2p.md)")
    ap.add_argument("--p2p-leader", metavar="URL", help="leader node of the p2p backend")
    ap.add_argument("--p2p-auth-token", metavar="TOKEN", help=f"p2p cluster token (default: ${TOKEN_ENV})")
    ap.add_argument("--config", metavar="PATH", help="pipeline config (default: config/pipeline_config.yaml)")
    ap.add_argument("--state", metavar="PATH", help="state file (default: ~/.ringrift/pipeline_state.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the exact plan and change nothing")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="{run,status,cluster}")

    run = sub.add_parser("run", help="run a phase of the pipeline (or all of them)",
                         description="Run one phase of the pipeline, or all three in order.")
    phases = run.add_subparsers(dest="phase", required=True, parser_class=OneLineParser)
    sp = phases.add_parser("canonical_selfplay", help="self-play games into a game database",
                           description="Self-play games into a game database, here or on the configured hosts; "
                                       "a rerun resumes.")
    _selfplay_args(sp)
    pv = phases.add_parser("parity_validation", help="replay the games of a DB and check every hash",
                           description="Self-verify a game DB with ringrift-parity --db (sample and threshold "
                                       "from the config's parity section).")
    pv.add_argument("--db", metavar="PATH", required=True, help="game database")
    _dry(pv)
    ex = phases.add_parser("npz_export", help="export a game DB to NPZ training files",
                           description="Export a game DB to NPZ training files with ringrift-export.")
    ex.add_argument("--db", metavar="PATH", required=True, help="game database")
    ex.add_argument("--output-dir", metavar="DIR", default=DEFAULT_NPZ_DIR,
                    help=f"folder for the NPZ files (default: {DEFAULT_NPZ_DIR}, as ringrift-export)")
    _dry(ex)
    al = phases.add_parser("all", help="canonical_selfplay, parity_validation, npz_export in order",
                           description="canonical_selfplay, then parity_validation and npz_export of its DB.")
    _selfplay_args(al)
    al.add_argument("--output-dir", metavar="DIR", default=DEFAULT_NPZ_DIR,
                    help=f"NPZ folder (default: {DEFAULT_NPZ_DIR})")

    st = sub.add_parser("status", help="progress of the current or last run, per worker",
                        description="Show the pipeline state: phase, progress, each worker's range and games.")
    st.add_argument("--json", action="store_true", help="print the raw state document")

    cl = sub.add_parser("cluster", help="list, check, sync or update the configured hosts",
                        description="Manage the hosts of the hosts file (config hosts_file).")
    cs = cl.add_subparsers(dest="cluster_command", required=True, parser_class=OneLineParser)
    c = cs.add_parser("list", help="the configured hosts", description="List the configured hosts.")
    _dry(c)
    c = cs.add_parser("health", help="reachability, ringrift version and build, cores, GPU, disk, load",
                      description="Check every host; exit status 1 when any host is unhealthy.")
    _dry(c)
    c = cs.add_parser("sync", help="pull every host's game DBs and merge them here",
                      description="Pull every game DB under each host's work_dir/runs and merge it into one "
                                  "local DB (duplicates skipped, other engine versions refused). Nothing is "
                                  "deleted on the hosts (self-play deletes each worker DB once merged, unless "
                                  "selfplay.keep_worker_dbs).")
    c.add_argument("--output-db", metavar="PATH", default="data/games/cluster_sync.db",
                   help="local DB to merge into (default: data/games/cluster_sync.db)")
    _dry(c)
    c = cs.add_parser("update", help="install this machine's exact ringrift build on every host",
                      description="Pack the installed ringrift as a wheel, pip install it on every host, then "
                                  "check that every host runs this machine's build.")
    _dry(c)

    # Internal: what the orchestrator runs on hosts (python -m ringrift.pipeline worker|probe).
    wk = sub.add_parser("worker", description="Internal: play a seed range into a game DB (run by the "
                                              "orchestrator on a host); JSON events on stdout.")
    wk.add_argument("--board", choices=BOARDS, required=True)
    wk.add_argument("--players", type=int, choices=(2, 3, 4), default=2)
    wk.add_argument("--policy", choices=POLICIES, default="random")
    wk.add_argument("--seed", type=int, default=0)
    wk.add_argument("--start", type=int, help="first game index")
    wk.add_argument("--count", type=int, help="number of game indices from --start")
    wk.add_argument("--indices", metavar="SPEC", help="game indices, e.g. 0-99,150-199 (instead of --start/--count)")
    wk.add_argument("--max-moves", type=int, default=2000)
    wk.add_argument("--threads", type=int, default=0, help="0 = this host's cores / --parallel-jobs")
    wk.add_argument("--parallel-jobs", type=int, default=1)
    wk.add_argument("--batch-size", type=int)
    wk.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: play on this host's GPU (the same games as on its CPU)")
    wk.add_argument("--output-db", metavar="PATH", required=True)
    wk.add_argument("--host-name", help="host name recorded with each game")
    wk.add_argument("--progress-interval", type=float, default=0.5)
    wk.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when standard input closes")
    pr = sub.add_parser("probe", description="Internal: print this host's ringrift version, build, cores, GPU, "
                                             "disk and load as JSON.")
    pr.add_argument("--work-dir", default=".")
    return ap


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RingRiftError(f"cannot create directory {parent}: {exc.strerror}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise RingRiftError(f"output database {path} is not writable")
    if not os.access(parent, os.W_OK):
        raise RingRiftError(f"directory {parent} is not writable")


def _would_be_writable(path: Path) -> None:
    """_check_writable without creating anything (for --dry-run)."""
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
        self.logger.info(f"pid {os.getpid()}: ringrift-pipeline {' '.join(sys.argv[1:])}")

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
        handler = logging.FileHandler(logs / ORCHESTRATOR_LOG)
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

def _selfplay_spec(args, cfg):
    from .orchestrator import SelfplaySpec

    sc = cfg["selfplay"]
    board = args.board or cfg["default_board"]
    if not 0 <= args.num_games <= MAX_INDEX + 1:
        raise UsageError(f"--num-games must be 0..{MAX_INDEX + 1} (game indices are 64-bit integers)")
    players = args.players or sc["num_players"]
    seed = sc["seed"] if args.seed is None else args.seed
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be 0..{MAX_SEED}")
    policy = args.policy or sc["policy"]
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
    return SelfplaySpec(board=board, players=players, policy=policy, seed=seed, num_games=args.num_games,
                        max_moves=max_moves, output_db=out, games_per_worker=gpw,
                        timeout=float(sc["timeout_seconds"]), threads=args.threads, default_threads=sc["threads"],
                        batch_size=args.batch_size, keep_worker_dbs=sc["keep_worker_dbs"],
                        device=getattr(args, "device", "cpu"))


def _state_note(ctx: Context) -> str:
    return (f"state: {ctx.state_path}; logs: {logs_dir() / ORCHESTRATOR_LOG}, "
            f"{logs_dir()}/selfplay_<host>_<timestamp>.log")


def cmd_selfplay(ctx: Context, *, phases=("canonical_selfplay",), run_key=None) -> int:
    spec = _selfplay_spec(ctx.args, ctx.cfg)
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
        _would_be_writable(spec.output_db)
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
        print(f"  {_state_note(ctx)}")
        return 0
    device = getattr(args, "device", "cpu")
    if device == "cuda":
        from ..gpu import require_gpu

        require_gpu()  # before any state is written
    _check_writable(spec.output_db)
    present_indices(spec.output_db, spec, create=True)  # refuses another engine version's games
    ctx.start()
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
    host_log = open(logs / f"selfplay_localhost_{stamp}.log", "a", buffering=1) if logs.is_dir() else None
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
                                  seed=spec.seed, policy=spec.policy, threads=threads, max_moves=spec.max_moves,
                                  batch_size=spec.batch_size, progress=progress, device=device)
            if bar:
                bar.close()
            total = db.count_games(board=spec.board, num_players=spec.players, seed=spec.seed, policy=spec.policy)
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
    """The start shared by the SSH and P2P self-play drivers: a writable output DB, the run's
    state record and a progress bar (None with --quiet). Returns (state, bar)."""
    _check_writable(spec.output_db)
    ctx.start()
    ctx.state = st = PipelineState.begin(ctx.state_path, phase="canonical_selfplay", run=run_key or spec.run_key(),
                                         target=spec.num_games, phases=phases)
    return st, None if ctx.args.quiet else Progress(f"selfplay {spec.board} {spec.players}p")


def _selfplay_hosts(ctx: Context, spec, phases, run_key) -> int:
    from .backends import get_backend
    from .orchestrator import (Orchestrator, plan_ranges, present_indices, print_plan, report_selfplay,
                               run_orchestrator, selfplay_hosts)

    args = ctx.args
    workers = selfplay_hosts(ctx.hosts.hosts, spec.device)
    backend = get_backend(args.backend)
    handles = {h.name: backend.handle(h) for h in workers}
    if ctx.dry_run:
        _would_be_writable(spec.output_db)
        present = present_indices(spec.output_db, spec, create=False)
        print_plan(spec, handles, plan_ranges(spec, workers, present), sys.stdout)
        print(f"  {_state_note(ctx)}")
        return 0
    st, bar = begin_distributed_selfplay(ctx, spec, phases, run_key)
    orch = Orchestrator(spec, handles, st, ctx.logger, logs_dir(), progress=bar, err=sys.stderr)
    orch.backend = backend
    summary = run_orchestrator(orch)
    if bar:
        bar.close()
    return report_selfplay(ctx, spec, st, summary, workers=f"{len(handles)} hosts", unit="host")


# ---- parity_validation, npz_export, all ------------------------------------------------------

def cmd_parity(ctx: Context, db: Path, *, begin=True) -> int:
    from .phases import parity_argv, printable, run_parity, sample_note

    if ctx.dry_run:
        print(f"plan: parity_validation: {printable(parity_argv(db, ctx.cfg))} (on this machine; "
              f"{sample_note(ctx.cfg)}; fail_threshold {ctx.cfg['parity']['fail_threshold']:g})")
        return 0
    if begin:
        ctx.start()
        ctx.state = PipelineState.begin(ctx.state_path, phase="parity_validation",
                                        run={"phase": "parity_validation", "db": str(db.resolve())}, target=None,
                                        phases=("parity_validation",))
    else:
        ctx.state.set_phase("parity_validation", "running")
    rc = run_parity(db, ctx.cfg, ctx.logger)
    ctx.state.set_phase("parity_validation", "done")
    return rc


def cmd_export(ctx: Context, db: Path, output_dir: Path, *, begin=True, board=None, players=None) -> int:
    from .phases import EXPORT_MISSING, export_argv, export_available, printable, run_export

    if not export_available():
        raise RingRiftError(EXPORT_MISSING)
    argv = export_argv(db, output_dir, ctx.cfg, board=board, players=players)
    if ctx.dry_run:
        print(f"plan: npz_export: {printable(argv)} (on this machine)")
        return 0
    if begin:
        ctx.start()
        ctx.state = PipelineState.begin(ctx.state_path, phase="npz_export",
                                        run={"phase": "npz_export", "db": str(db.resolve()),
                                             "output_dir": str(output_dir.resolve())},
                                        target=None, phases=("npz_export",))
    else:
        ctx.state.set_phase("npz_export", "running")
    rc = run_export(argv, db, ctx.logger)
    ctx.state.set_phase("npz_export", "done")
    return rc


def cmd_all(ctx: Context) -> int:
    from .phases import EXPORT_MISSING, export_available

    if not export_available():  # fail before hours of self-play, not after
        raise RingRiftError(EXPORT_MISSING)
    spec = _selfplay_spec(ctx.args, ctx.cfg)
    output_dir = Path(ctx.args.output_dir)
    key = dict(spec.run_key(), phase="all", output_dir=str(output_dir.resolve()))
    rc = cmd_selfplay(ctx, phases=PHASES, run_key=key)
    if rc:
        return rc
    rc = cmd_parity(ctx, spec.output_db, begin=ctx.dry_run)
    if rc:
        return rc
    rc = cmd_export(ctx, spec.output_db, output_dir, begin=ctx.dry_run, board=spec.board, players=spec.players)
    if ctx.dry_run:
        print("nothing was changed (--dry-run)")
    return rc


# ---- status ----------------------------------------------------------------------------------

def cmd_status(args) -> int:
    path = state_path(args.state)
    data = read_state(path)
    if data is None:
        print(f"no pipeline state at {path}: nothing has run yet (or it ran with another --state)")
        return 0
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    pid = holder_pid(path)
    if pid:
        live = f"an orchestrator is running (pid {pid})" if pid > 0 else "an orchestrator is running"
    else:
        live = "no orchestrator is running"
        if any(v == "running" for v in data.get("phase_status", {}).values()):
            live += "; the last run stopped before finishing (rerun the same command to resume)"
    print(f"state: {path} ({live})")
    run = data.get("run") or {}
    phase = data.get("current_phase")
    print(f"phase: {phase} ({data.get('phase_status', {}).get(phase, '?')}), started {data.get('started_at')}, "
          f"updated {data.get('updated_at')}")
    if data.get("phase_status"):
        print("phases: " + ", ".join(f"{p} {s}" for p, s in data["phase_status"].items()))
    if "board" in run:
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
        rows = [("worker", "status", "range", "games", "ranges done", "note")]
        for name, w in sorted(workers.items()):
            rng = w.get("range")
            rng_s = f"[{rng[0]}, {rng[1]})" if rng else "-"
            todo = w.get("todo")
            games = f"{w.get('games', 0)}/{todo}" if todo else str(w.get("games", 0))
            rows.append((name, str(w.get("status")), rng_s, games, str(w.get("ranges_done", "-")),
                         (w.get("error") or "")[:100]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    if data.get("error"):
        print(f"last error: {data['error']}")
    return 0


# ---- cluster ---------------------------------------------------------------------------------

def cmd_cluster(ctx: Context) -> int:
    from . import cluster
    from .backends import get_backend

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
        _check_writable(out)
        ctx.start()
        return cluster.cmd_sync(handles, out, ctx.logger, sys.stdout, sys.stderr)
    if sub == "update":
        if not ctx.dry_run:
            ctx.start()
        return cluster.cmd_update(handles, ctx.logger, sys.stdout, dry_run=ctx.dry_run)
    return 2


# ---- main ------------------------------------------------------------------------------------

def _record_failure(ctx: Context | None, status: str, message: str) -> None:
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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush into a closed pipe
    prints no 'Exception ignored ... BrokenPipeError'."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = None
    try:
        if args.command == "worker":
            from .worker import worker_main

            return worker_main(args)
        if args.command == "probe":
            from .worker import probe_main

            return probe_main(args)
        if args.command == "status":
            return cmd_status(args)
        token = args.p2p_auth_token or os.environ.get(TOKEN_ENV)
        if args.backend == "p2p":
            from .backends import get_backend

            get_backend("p2p", p2p_leader=args.p2p_leader, p2p_auth_token=token)
        elif args.p2p_leader or args.p2p_auth_token:
            parser.error("--p2p-leader and --p2p-auth-token need --backend p2p")
        ctx = Context(args, load_config(args.config))
        if args.command == "run":
            read_state(ctx.state_path)  # an unusable state file fails here, before anything is written
            if args.phase == "canonical_selfplay":
                rc = cmd_selfplay(ctx)
                if ctx.dry_run:
                    print("nothing was changed (--dry-run)")
                return rc
            if args.phase == "parity_validation":
                return cmd_parity(ctx, Path(args.db))
            if args.phase == "npz_export":
                return cmd_export(ctx, Path(args.db), Path(args.output_dir))
            if args.phase == "all":
                return cmd_all(ctx)
        if args.command == "cluster":
            return cmd_cluster(ctx)
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited: not an error
        _quiet_stdout()
        return EXIT_OK
    except RingRiftError as exc:
        _record_failure(ctx, "failed", str(exc))
        if ctx is not None:
            ctx.logger.error(str(exc))
        print(f"ringrift-pipeline: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except sqlite3.Error as exc:  # a database damaged where no check of ours looked
        message = f"a game database is not usable ({exc})"
        _record_failure(ctx, "failed", message)
        print(f"ringrift-pipeline: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        message = f"{where}{exc.strerror or exc}"
        _record_failure(ctx, "failed", message)
        print(f"ringrift-pipeline: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _record_failure(ctx, "interrupted", "interrupted")
        if ctx is not None:
            ctx.logger.warning("interrupted")
        print("ringrift-pipeline: interrupted; committed games are kept, rerun to resume", file=sys.stderr)
        if ctx is not None:
            ctx.close()
            ctx = None
        return 130
    finally:
        if ctx is not None:
            ctx.close()
    return 2

