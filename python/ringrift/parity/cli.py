"""``ringrift-parity``: replay recorded reference games and report divergences.

One line per diverging game on stdout (unreadable input goes to stderr), then exactly
``parity: <matched>/<total> games match (<steps> steps)``.  Exit status 0 only when at
least one game ran and every game matched.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path
from typing import Iterable

from .harness import run_games
from .replays import RecordedGame, iter_games


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ringrift-parity",
        description="Replay recorded reference games through our engine and report divergences.")
    p.add_argument("--replays", nargs="+", action="extend", default=[], metavar="PATH",
                   help="recorded games: .jsonl / .jsonl.gz files or folders holding them")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary line")
    p.add_argument("--max-games", type=int, metavar="N", help="stop after N games")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="worker processes (default 1; 0 = one per CPU)")
    p.add_argument("--bundle-dir", metavar="DIR",
                   help="write a JSON state bundle per divergence (read with ringrift-diff-bundle)")
    p.add_argument("--db", nargs="+", action="extend", default=[], metavar="PATH",
                   help="game databases to self-verify: replay every stored game against its stored hashes")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="with --db: verify a reproducible random sample of N games per DB (0 = all)")
    p.add_argument("--sample-seed", type=int, default=0, metavar="S", help="with --db: seed of the sample")
    p.add_argument("--no-tag", action="store_true",
                   help="with --db: do not record the outcome in the games' parity_status")
    return p


def game_source(args: argparse.Namespace) -> Iterable[RecordedGame]:
    """The games selected on the command line.  Other sources (a database) plug in here."""
    return iter_games(args.replays)


def run(games: Iterable[RecordedGame], *, jobs: int = 1, quiet: bool = False,
        max_games: int | None = None, bundle_dir: str | None = None, engine=None,
        out=None, err=None) -> int:
    """Replay ``games``, print the report, return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    progress = not quiet and err.isatty()
    total = matched = steps = 0

    def clear_progress():
        if progress:
            err.write("\r\033[K")

    results = run_games(itertools.islice(games, max_games), jobs=jobs, bundle_dir=bundle_dir, engine=engine)
    for res in results:
        total += 1
        steps += res.steps
        if res.ok:
            matched += 1
        elif res.divergence.where == "input":
            clear_progress()
            print(f"ringrift-parity: error: {res.describe()}", file=err, flush=True)
        elif not quiet:
            clear_progress()
            print(res.describe(), file=out, flush=True)
        if progress:
            err.write(f"\r\033[K{matched}/{total} games match ({steps} steps) {Path(res.source).name}")
            err.flush()
    clear_progress()
    print(f"parity: {matched}/{total} games match ({steps} steps)", file=out, flush=True)
    return 0 if total > 0 and matched == total else 1


def run_db(args) -> int:
    """Self-verification of game databases (``--db``)."""
    from ..engine.errors import RingRiftError
    from .db_check import verify_db

    if args.sample < 0:
        print("ringrift-parity: error: --sample must be >= 0", file=sys.stderr)
        return 2
    matched = checked = steps = 0
    for path in args.db:
        try:
            m, c, s = verify_db(path, sample=args.sample, sample_seed=args.sample_seed,
                                tag=not args.no_tag, quiet=args.quiet)
        except RingRiftError as exc:
            print(f"ringrift-parity: error: {exc}", file=sys.stderr)
            return 2
        matched, checked, steps = matched + m, checked + c, steps + s
    print(f"parity: {matched}/{checked} games match (self-verification, {steps} steps)", flush=True)
    return 0 if checked > 0 and matched == checked else 1


def main(argv: list[str] | None = None, *, engine=None) -> int:
    """Entry point of ``ringrift-parity``; ``engine`` replaces ``ringrift`` (tests only)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.db and args.replays:
        parser.error("give either --replays or --db, not both")
    if args.db:
        return run_db(args)
    if not args.replays:
        parser.error("nothing to replay: give --replays PATH... or --db PATH...")
    if args.max_games is not None and args.max_games < 0:
        parser.error("--max-games must be >= 0")
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    return run(game_source(args), jobs=jobs, quiet=args.quiet, max_games=args.max_games,
               bundle_dir=args.bundle_dir, engine=engine)


if __name__ == "__main__":
    sys.exit(main())
