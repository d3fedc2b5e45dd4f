"""``ringrift-parity``: replay recorded reference games and report divergences, or check game
databases.

``--replays``: one line per diverging game on stdout (unreadable input goes to stderr), then
exactly ``parity: <matched>/<total> games match (<steps> steps)``.  Exit status 0 only when at
least one game ran and every game matched.

``--db``: with a TypeScript checkout (``--ts-root`` or ``RINGRIFT_TS_ROOT``) the sampled games are
replayed through the reference TS engine (mode ``ts-engine``); without one, through our own engine
against the stored hashes (mode ``self-verification``).  The output ends with
``parity: <ok>/<checked> games match (<mode>, <steps> steps)``; exit status 0 only when the
fraction of failing games is at most ``parity.fail_threshold`` of the config, 2 on unusable
input (a bad database, config or TS checkout).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path
from typing import Iterable

from ..exitcodes import EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, exit_status
from .harness import run_games
from .replays import RecordedGame, iter_games


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="ringrift-parity",
        description="Replay recorded reference games through our engine and report divergences (--replays), "
                    "or check game databases against the reference TypeScript engine or, without a "
                    "TS checkout, against their stored hashes (--db).")
    p.add_argument("--replays", nargs="+", action="extend", default=[], metavar="PATH",
                   help="recorded games: .jsonl / .jsonl.gz files or folders holding them")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary line")
    p.add_argument("--max-games", type=int, metavar="N", help="stop after N games")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="worker processes (default 1; 0 = one per CPU); with --db --ts-root: bridge processes")
    p.add_argument("--bundle-dir", metavar="DIR",
                   help="write a JSON state bundle per divergence (read with ringrift-diff-bundle); "
                        "with --db only in ts-engine mode")
    p.add_argument("--db", nargs="+", action="extend", default=[], metavar="PATH",
                   help="game databases to check: through the TS engine with --ts-root, else self-verification "
                        "against the stored hashes")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="with --db: check a reproducible random sample of N games per DB "
                        "(0 = all; default: parity.sample_size of the config)")
    p.add_argument("--config", metavar="PATH",
                   help="with --db: pipeline config for parity.sample_size and parity.fail_threshold "
                        "(default: config/pipeline_config.yaml when present)")
    p.add_argument("--ts-root", metavar="PATH",
                   help="with --db: RingRift TypeScript checkout (npm ci done) whose engine replays the games "
                        "(default: $RINGRIFT_TS_ROOT; without one: self-verification)")
    p.add_argument("--ts-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="with --ts-root: longest wait for one game's answer, plus 0.05 s per move (default 60)")
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


def _verdict(matched: int, checked: int, mode: str, steps: int, threshold: float, err) -> int:
    print(f"parity: {matched}/{checked} games match ({mode}, {steps} steps)", flush=True)
    failed = checked - matched
    if checked == 0:
        print("Error: no games were checked", file=err, flush=True)
        return 1
    rate = failed / checked
    if rate > threshold:
        print(f"Error: {failed} games failed parity check (rate {rate:.4f} > fail_threshold {threshold:g})",
              file=err, flush=True)
        return 1
    if failed:
        print(f"ringrift-parity: warning: {failed} games failed parity check (rate {rate:.4f} within "
              f"fail_threshold {threshold:g})", file=err, flush=True)
    return 0


class _Progress:
    """One self-overwriting status line on a terminal's stderr."""

    def __init__(self, err):
        self.err = err

    def clear(self):
        self.err.write("\r\033[K")

    def update(self, res, row):
        self.err.write(f"\r\033[K{res.matched}/{res.checked} games match ({res.steps} steps) "
                       f"game {row.id} {row.board} {row.num_players}p")
        self.err.flush()


def _error_line(exc, args) -> str:
    """The one error line; a DB that may not be written gets the way to check it anyway."""
    from ..db.errors import DBNotWritableError

    hint = ("; --no-tag checks it without recording the outcome" if isinstance(exc, DBNotWritableError)
            and not args.no_tag else "")
    return f"ringrift-parity: error: {exc}{hint}"


def run_db(args, err=None) -> int:
    """Parity of game databases (``--db``): against the TS engine, or self-verification."""
    from ..engine.errors import RingRiftError
    from ..pipeline.config import load_config
    from .db_check import verify_db
    from .ts_client import ts_root_from

    err = sys.stderr if err is None else err
    try:
        cfg = load_config(args.config)
    except RingRiftError as exc:
        print(f"ringrift-parity: error: {exc}", file=err)
        return 2
    sample = cfg["parity"]["sample_size"] if args.sample is None else args.sample
    threshold = float(cfg["parity"]["fail_threshold"])
    if sample < 0:
        print("ringrift-parity: error: --sample must be >= 0", file=err)
        return 2
    ts_root = ts_root_from(args.ts_root)
    if ts_root is not None:
        return _run_db_ts(args, ts_root, sample, threshold, err)

    print("ringrift-parity: no TypeScript checkout given (--ts-root PATH or RINGRIFT_TS_ROOT): "
          "falling back to self-verification (our engine against the stored hashes)", file=err, flush=True)
    matched = checked = steps = 0
    for path in args.db:
        try:
            m, c, s = verify_db(path, sample=sample, sample_seed=args.sample_seed,
                                tag=not args.no_tag, quiet=args.quiet)
        except RingRiftError as exc:
            print(_error_line(exc, args), file=err)
            return exit_status(exc, default=EXIT_USAGE)  # 1 for a tag a full disk stopped
        matched, checked, steps = matched + m, checked + c, steps + s
    return _verdict(matched, checked, "self-verification", steps, threshold, err)


def _run_db_ts(args, ts_root: str, sample: int, threshold: float, err) -> int:
    from ..engine.errors import RingRiftError
    from .ts_check import BridgeRunner, verify_db_ts
    from .ts_client import BridgeError, TSBridge, check_ts_root

    if args.ts_timeout <= 0:
        print("ringrift-parity: error: --ts-timeout must be > 0", file=err)
        return 2
    try:
        root = check_ts_root(ts_root)
        jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
        runner = BridgeRunner(lambda: TSBridge(root, game_timeout=args.ts_timeout), jobs=jobs)
        runner.start()
    except BridgeError as exc:
        print(f"ringrift-parity: error: {exc}", file=err)
        return 2
    info = runner.start_info or {}
    if not args.quiet:
        print(f"ringrift-parity: replaying through the TS engine at {info.get('tsRoot', root)} "
              f"(node {info.get('node', '?')}, engine bundle {info.get('bundle', '?')} in {info.get('ms', '?')} ms)",
              file=err, flush=True)
    progress = _Progress(err) if (not args.quiet and err.isatty()) else None
    matched = checked = steps = 0
    seconds = 0.0
    try:
        for path in args.db:
            res = verify_db_ts(path, runner, sample=sample, sample_seed=args.sample_seed, tag=not args.no_tag,
                               quiet=args.quiet, bundle_dir=args.bundle_dir, progress=progress)
            matched, checked, steps = matched + res.matched, checked + res.checked, steps + res.steps
            seconds += res.seconds
    except (RingRiftError, BridgeError) as exc:
        if progress:
            progress.clear()
        print(_error_line(exc, args), file=err)
        return exit_status(exc, default=EXIT_USAGE)  # 1 for a tag a full disk stopped
    finally:
        runner.close()
    if progress:
        progress.clear()
    if not args.quiet:
        print(f"ringrift-parity: ts-engine: {checked} games, {steps} steps in {seconds:.1f} s", file=err, flush=True)
    return _verdict(matched, checked, "ts-engine", steps, threshold, err)


def main(argv: list[str] | None = None, *, engine=None) -> int:
    """Entry point of ``ringrift-parity``; ``engine`` replaces ``ringrift`` (tests only)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 0:
        parser.error("--jobs must be >= 0 (0: one per CPU)")
    if args.sample_seed < 0:
        parser.error("--sample-seed must be >= 0")
    if args.db and args.replays:
        parser.error("give either --replays or --db, not both")
    if not args.db and not args.replays:
        parser.error("nothing to replay: give --replays PATH... or --db PATH...")
    if args.max_games is not None and args.max_games < 0:
        parser.error("--max-games must be >= 0")
    try:
        if args.db:
            return run_db(args)
        jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
        return run(game_source(args), jobs=jobs, quiet=args.quiet, max_games=args.max_games,
                   bundle_dir=args.bundle_dir, engine=engine)
    except KeyboardInterrupt:
        kept = "; the games checked so far are tagged" if args.db and not args.no_tag else ""
        print(f"ringrift-parity: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
