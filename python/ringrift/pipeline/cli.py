"""`ringrift-pipeline`: run the pipeline's phases.

    ringrift-pipeline run canonical_selfplay --board square8 --num-games 1000 \
        --output-db data/games/canonical_square8.db
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import BOARDS
from ..engine.errors import RingRiftError
from .config import load_config
from .progress import Progress

PHASES = ("canonical_selfplay",)


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (plus a pointer to --help), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ringrift-pipeline", description="Run the ringrift training-data pipeline.")
    ap.add_argument("--config", metavar="PATH", help="pipeline config (default: config/pipeline_config.yaml)")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run one phase of the pipeline")
    phases = run.add_subparsers(dest="phase", required=True, parser_class=_Parser)
    sp = phases.add_parser("canonical_selfplay", help="self-play games into a game database")
    sp.add_argument("--board", choices=BOARDS, help="board (default: config default_board)")
    sp.add_argument("--num-games", type=int, required=True, help="target number of games in the DB")
    sp.add_argument("--output-db", metavar="PATH", help="default: data/games/canonical_<board>.db")
    sp.add_argument("--players", type=int, choices=(2, 3, 4), help="players per game (config: selfplay.num_players)")
    sp.add_argument("--seed", type=int, help="run seed (config: selfplay.seed)")
    sp.add_argument("--policy", choices=("random", "heuristic"), help="config: selfplay.policy")
    sp.add_argument("--threads", type=int, help="native threads, 0 = all cores (config: selfplay.threads)")
    sp.add_argument("--max-moves", type=int, help="move cap per game (config: selfplay.max_moves.<board>)")
    sp.add_argument("--batch-size", type=int, help="games per committed batch (default: automatic)")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
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


def cmd_selfplay(args, cfg) -> int:
    from ..db import GameDB
    from ..selfplay import run_selfplay

    sc = cfg["selfplay"]
    board = args.board or cfg["default_board"]
    if args.num_games < 0:
        raise RingRiftError("--num-games must be >= 0")
    players = args.players or sc["num_players"]
    seed = sc["seed"] if args.seed is None else args.seed
    policy = args.policy or sc["policy"]
    threads = sc["threads"] if args.threads is None else args.threads
    if threads < 0:
        raise RingRiftError("--threads must be >= 0")
    max_moves = args.max_moves or sc["max_moves"][board]
    if max_moves < 1:
        raise RingRiftError("--max-moves must be >= 1")
    out = Path(args.output_db or f"data/games/canonical_{board}.db")
    _check_writable(out)
    progress = None if args.quiet else Progress(f"selfplay {board} {players}p")
    with GameDB(out) as db:
        result = run_selfplay(db, board=board, num_games=args.num_games, num_players=players, seed=seed,
                              policy=policy, threads=threads, max_moves=max_moves,
                              batch_size=args.batch_size, progress=progress)
        if progress:
            progress.close()
        total = db.count_games(board=board, num_players=players, seed=seed, policy=policy)
    for line in result.summary_lines():
        print(line)
    print(f"  database: {out} ({total} games of this run)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.command == "run" and args.phase == "canonical_selfplay":
            return cmd_selfplay(args, cfg)
    except RingRiftError as exc:
        print(f"ringrift-pipeline: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ringrift-pipeline: interrupted; committed games are kept, rerun to resume", file=sys.stderr)
        return 130
    return 2
