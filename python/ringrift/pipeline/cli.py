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
import os
import signal
import sqlite3
import sys
from pathlib import Path

from .. import BOARDS, POLICIES
from ..engine.errors import RingRiftError
from ..exitcodes import EXIT_OK, EXIT_USAGE, LazySubcommands, OneLineParser, exit_status
from .api import (DEFAULT_NPZ_DIR, TOKEN_ENV, Context, all_phases, cluster_command, export_phase, open_context,
                  os_error_message, parity_phase, record_failure, run_in_context, selfplay_command, show_status)
from .config import load_config
from .loop import add_loop_parser, loop_phase
from .train_phase import add_train_flags, add_train_parser, train_phase


def _dry(p: argparse.ArgumentParser) -> None:
    """--dry-run is global, and also accepted after the command."""
    p.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                   help="print the plan and change nothing")


def _policy(value: str) -> str:
    """random, heuristic, onnx:PATH (the net's file is checked when self-play starts) or gumbel:..."""
    if value in POLICIES or (value.startswith("onnx:") and len(value) > 5):
        return value
    from ..search.spec import check_policy

    try:
        return check_policy(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _selfplay_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--board", choices=BOARDS, help="board (default: config default_board)")
    sp.add_argument("--num-games", type=int, required=True, help="target number of games in the DB")
    sp.add_argument("--output-db", metavar="PATH", help="default: data/games/canonical_<board>.db")
    sp.add_argument("--players", type=int, choices=(2, 3, 4), help="players per game (config: selfplay.num_players)")
    sp.add_argument("--seed", type=int, help="run seed (config: selfplay.seed)")
    sp.add_argument("--policy", type=_policy, help="random, heuristic, onnx:PATH (a trained net, docs/training.md) or "
                    "gumbel:EVALUATOR[:key=value,...] (docs/search.md; config: selfplay.policy)")
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
    """The whole command line; each subcommand's parser is made only when a command line names it
    (LazySubcommands: a run needs 3 of the 17 parsers)."""
    ap = OneLineParser(prog="ringrift-pipeline", description="Run the ringrift training-data pipeline: self-play, "
                 "parity validation and NPZ export, on this machine or across SSH hosts.")
    ap.add_argument("--backend", choices=("ssh", "p2p", "ray", "local"), default=None,
                    help="where seed ranges run (default: ssh, the hosts file; p2p: through a ringrift-p2p leader, "
                         "see docs/p2p.md; ray: as tasks on a Ray cluster, see docs/scaling.md; local: a thread "
                         "pool here)")
    ap.add_argument("--ray-address", metavar="ADDR", help="Ray cluster of --backend ray: auto, HOST:PORT or "
                                                          "ray://HOST:10001 (default: $RAY_ADDRESS, else auto)")
    ap.add_argument("--p2p-leader", metavar="URL", help="leader node of the p2p backend")
    ap.add_argument("--p2p-auth-token", metavar="TOKEN", help=f"p2p cluster token (default: ${TOKEN_ENV})")
    ap.add_argument("--config", metavar="PATH", help="pipeline config (default: config/pipeline_config.yaml)")
    ap.add_argument("--state", metavar="PATH", help="state file (default: ~/.ringrift/pipeline_state.json)")
    ap.add_argument("--dry-run", action="store_true", help="print the exact plan and change nothing")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser, action=LazySubcommands,
                            metavar="{run,status,cluster}")
    sub.add_parser("run", help="run a phase of the pipeline (or all of them)",
                   description="Run one phase of the pipeline, or all three in order.", fill=_run_parser)
    sub.add_parser("status", help="progress of the current or last run, per worker",
                   description="Show the pipeline state: phase, progress, each worker's range and games.",
                   fill=lambda st: st.add_argument("--json", action="store_true", help="print the raw state document"))
    sub.add_parser("cluster", help="list, check, sync or update the configured hosts",
                   description="Manage the hosts of the hosts file (config hosts_file).", fill=_cluster_parser)
    # Internal: what the orchestrator runs on hosts (python -m ringrift.pipeline worker|probe).
    sub.add_parser("worker", description="Internal: play a seed range into a game DB (run by the orchestrator on a "
                                         "host); JSON events on stdout.", fill=_worker_args)
    sub.add_parser("model-install", description="Internal: check a model file received by a host against its "
                                                "SHA-256 and move it to models/<sha256>.onnx (JSON line).",
                   fill=_model_install_args)
    sub.add_parser("probe", description="Internal: print this host's ringrift version, build, cores, GPU, disk and "
                                        "load as JSON.", fill=_probe_args)
    return ap


def _run_parser(run: argparse.ArgumentParser) -> None:
    phases = run.add_subparsers(dest="phase", required=True, parser_class=OneLineParser, action=LazySubcommands)
    phases.add_parser("canonical_selfplay", help="self-play games into a game database",
                      description="Self-play games into a game database, here or on the configured hosts; "
                                  "a rerun resumes.", fill=_selfplay_args)
    phases.add_parser("parity_validation", help="replay the games of a DB and check every hash",
                      description="Self-verify a game DB with ringrift-parity --db (sample and threshold from the "
                                  "config's parity section).", fill=_parity_args)
    phases.add_parser("npz_export", help="export a game DB to NPZ training files",
                      description="Export a game DB to NPZ training files with ringrift-export.", fill=_export_args)
    phases.add_parser("all", help="canonical_selfplay, parity_validation, npz_export in order",
                      description="canonical_selfplay, then parity_validation and npz_export of its DB.",
                      fill=_all_args)
    add_train_parser(phases, _dry)
    add_loop_parser(phases, _dry)


def _parity_args(pv: argparse.ArgumentParser) -> None:
    pv.add_argument("--db", metavar="PATH", required=True, help="game database")
    _dry(pv)


def _export_args(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("--db", metavar="PATH", required=True, help="game database")
    ex.add_argument("--output-dir", metavar="DIR", default=DEFAULT_NPZ_DIR,
                    help=f"folder for the NPZ files (default: {DEFAULT_NPZ_DIR}, as ringrift-export)")
    _dry(ex)


def _all_args(al: argparse.ArgumentParser) -> None:
    _selfplay_args(al)
    al.add_argument("--output-dir", metavar="DIR", default=DEFAULT_NPZ_DIR,
                    help=f"NPZ folder (default: {DEFAULT_NPZ_DIR})")
    al.add_argument("--train", action="store_true", help="end with the train phase on the export")
    add_train_flags(al)


def _cluster_parser(cl: argparse.ArgumentParser) -> None:
    cs = cl.add_subparsers(dest="cluster_command", required=True, parser_class=OneLineParser, action=LazySubcommands)
    cs.add_parser("list", help="the configured hosts", description="List the configured hosts.", fill=_dry)
    cs.add_parser("health", help="reachability, ringrift version and build, cores, GPU, disk, load",
                  description="Check every host; exit status 1 when any host is unhealthy.", fill=_dry)
    cs.add_parser("sync", help="pull every host's game DBs and merge them here",
                  description="Pull every game DB under each host's work_dir/runs and merge it into one local DB "
                              "(duplicates skipped, other engine versions refused). Nothing is deleted on the hosts "
                              "(self-play deletes each worker DB once merged, unless selfplay.keep_worker_dbs).",
                  fill=_sync_args)
    cs.add_parser("update", help="install this machine's exact ringrift build on every host",
                  description="Pack the installed ringrift as a wheel, pip install it on every host, then check "
                              "that every host runs this machine's build.", fill=_dry)


def _sync_args(c: argparse.ArgumentParser) -> None:
    c.add_argument("--output-db", metavar="PATH", default="data/games/cluster_sync.db",
                   help="local DB to merge into (default: data/games/cluster_sync.db)")
    _dry(c)


def _worker_args(wk: argparse.ArgumentParser) -> None:
    wk.add_argument("--board", choices=BOARDS, required=True)
    wk.add_argument("--players", type=int, choices=(2, 3, 4), default=2)
    wk.add_argument("--policy", type=_policy, default="random")
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
    wk.add_argument("--model-sha256", metavar="HEX", help="the SHA-256 the policy's model file must have")


def _model_install_args(mi: argparse.ArgumentParser) -> None:
    mi.add_argument("--work-dir", default=".")
    mi.add_argument("--sha256", required=True)
    mi.add_argument("--part", required=True, help="the received file, relative to --work-dir")


def _probe_args(pr: argparse.ArgumentParser) -> None:
    pr.add_argument("--work-dir", default=".")
    pr.add_argument("--model", metavar="SHA256", help="also say whether models/SHA256.onnx is here and whether "
                                                      "onnxruntime is installed")


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


def _sigterm_interrupts() -> None:
    """SIGTERM (kill, a batch scheduler's stop, systemd) ends a run as Ctrl-C does: the state file
    says interrupted, committed games are kept, exit status 130 (docs/cli.md). Without this the
    process died by the signal and left its state saying "running". The scheduled backends
    replace it with their own cancel while their event loop runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for dest in ("state", "config", "output_db", "db", "output_dir", "loop_dir", "train_out", "data"):
        if getattr(args, dest, None) == "":  # else read as "not given": the default file, unasked
            parser.error(f"--{dest.replace('_', '-')}: the path is empty")
    # ssh is the default; whether it was asked for decides only a note when no hosts are configured
    args.backend_given = args.backend is not None
    args.backend = args.backend or "ssh"
    ctx = None
    try:
        if args.command == "worker":
            from .worker import worker_main

            return worker_main(args)
        if args.command == "probe":
            from .worker import probe_main

            return probe_main(args)
        if args.command == "model-install":
            from .models import install_main

            return install_main(args)
        if args.command == "status":
            return show_status(args.state, as_json=args.json)
        token = args.p2p_auth_token or os.environ.get(TOKEN_ENV)
        if args.backend == "p2p":
            from .backends import get_backend

            get_backend("p2p", p2p_leader=args.p2p_leader, p2p_auth_token=token)
        elif args.p2p_leader or args.p2p_auth_token:
            parser.error("--p2p-leader and --p2p-auth-token need --backend p2p")
        if args.ray_address and args.backend != "ray":
            parser.error("--ray-address needs --backend ray")
        if args.command == "run":
            _sigterm_interrupts()
            run = open_context(args)  # run_in_context records a failure in the state file and closes it
            if args.phase == "canonical_selfplay":
                return run_in_context(run, selfplay_command)
            if args.phase == "parity_validation":
                return run_in_context(run, parity_phase, Path(args.db))
            if args.phase == "npz_export":
                return run_in_context(run, export_phase, Path(args.db), Path(args.output_dir))
            if args.phase == "train":
                return run_in_context(run, train_phase)
            if args.phase == "loop":
                return run_in_context(run, loop_phase)
            if args.phase == "all":
                return run_in_context(run, all_phases)
        if args.command == "cluster":
            ctx = Context(args, load_config(args.config))
            return cluster_command(ctx)
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

