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
import json
import os
import sqlite3
import sys
from pathlib import Path

from .. import BOARDS, POLICIES
from ..engine.errors import RingRiftError
from ..exitcodes import EXIT_OK, EXIT_USAGE, OneLineParser, exit_status
from .api import (DEFAULT_NPZ_DIR, TOKEN_ENV, Context, all_phases, check_writable, export_phase, open_context,
                  os_error_message, parity_phase, record_failure, run_in_context, selfplay_command)
from .config import load_config
from .train_phase import add_train_flags, add_train_parser, train_phase
from .state import holder_pid, read_state, state_path


def policy_arg(value: str) -> str:
    """random, heuristic or onnx:PATH (the net's file is checked when self-play starts)."""
    if value in POLICIES or (value.startswith("onnx:") and len(value) > 5):
        return value
    raise argparse.ArgumentTypeError(f"invalid policy {value!r} (random, heuristic or onnx:PATH)")


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
    sp.add_argument("--policy", type=policy_arg, metavar="{random,heuristic,onnx:PATH}",
                    help="config: selfplay.policy; onnx:PATH plays a trained net (docs/training.md)")
    sp.add_argument("--temperature", type=float, help="sampling temperature of an onnx:PATH policy (default 1)")
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
    al.add_argument("--train", action="store_true", help="end with the train phase on the export")
    add_train_flags(al)
    add_train_parser(phases, _dry)

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
        check_writable(out)
        ctx.start()
        return cluster.cmd_sync(handles, out, ctx.logger, sys.stdout, sys.stderr)
    if sub == "update":
        if not ctx.dry_run:
            ctx.start()
        return cluster.cmd_update(handles, ctx.logger, sys.stdout, dry_run=ctx.dry_run)
    return 2


# ---- main ------------------------------------------------------------------------------------

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
        if args.command == "run":
            run = open_context(args)  # run_in_context records a failure in the state file and closes it
            if args.phase == "canonical_selfplay":
                return run_in_context(run, selfplay_command)
            if args.phase == "parity_validation":
                return run_in_context(run, parity_phase, Path(args.db))
            if args.phase == "npz_export":
                return run_in_context(run, export_phase, Path(args.db), Path(args.output_dir))
            if args.phase == "train":
                return run_in_context(run, train_phase)
            if args.phase == "all":
                return run_in_context(run, all_phases)
        if args.command == "cluster":
            ctx = Context(args, load_config(args.config))
            return cmd_cluster(ctx)
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited: not an error
        _quiet_stdout()
        return EXIT_OK
    except RingRiftError as exc:
        record_failure(ctx, "failed", str(exc))
        if ctx is not None:
            ctx.logger.error(str(exc))
        print(f"ringrift-pipeline: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except sqlite3.Error as exc:  # a database damaged where no check of ours looked
        message = f"a game database is not usable ({exc})"
        record_failure(ctx, "failed", message)
        print(f"ringrift-pipeline: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        message = os_error_message(exc)
        record_failure(ctx, "failed", message)
        print(f"ringrift-pipeline: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        record_failure(ctx, "interrupted", "interrupted")
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

