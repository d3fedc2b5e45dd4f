"""Command line of the game database (``ringrift-db`` / ``python -m ringrift.db``).

    ringrift-db info DB [--json]                  summary of a game DB (or of a replay DB)
    ringrift-db convert --to-replaydb SRC DST     our game DB -> upstream GameReplayDB (v18)
    ringrift-db convert --from-replaydb SRC DST   upstream GameReplayDB -> our game DB
    ringrift-db merge DST SRC [SRC ...]           add the games of SRC files to DST

Errors (missing files, files of another kind or schema version) are reported on one line and
give exit status 2.  ``convert --from-replaydb`` exits 1 when it skipped a game (a game that is
not legal under the canonical rules; ``--allow-skips`` accepts that) or imported nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..engine.errors import RingRiftError
from ..exitcodes import EXIT_USAGE, OneLineParser, exit_status
from .errors import DBError, DBWriteError
from .store import GameDB

PROG = "ringrift-db"


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="RingRift game database tools.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summary of a game database (or of an upstream replay DB)")
    info.add_argument("db", metavar="DB")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")

    conv = sub.add_parser("convert", help="convert to or from the upstream GameReplayDB format")
    way = conv.add_mutually_exclusive_group(required=True)
    way.add_argument("--to-replaydb", action="store_true", help="SRC is our game DB, DST a replay DB")
    way.add_argument("--from-replaydb", action="store_true", help="SRC is a replay DB, DST our game DB")
    conv.add_argument("src", metavar="SRC")
    conv.add_argument("dst", metavar="DST")
    conv.add_argument("--strict", action="store_true",
                      help="stop at the first game that cannot be converted (default for --to-replaydb)")
    conv.add_argument("--allow-skips", action="store_true",
                      help="with --from-replaydb: exit 0 even when some games were skipped (games that "
                           "are not legal under the canonical rules are always skipped and listed)")

    merge = sub.add_parser("merge", help="add the games of other game DBs to DST (duplicates skipped)")
    merge.add_argument("dst", metavar="DST")
    merge.add_argument("srcs", metavar="SRC", nargs="+")
    return p


def _print_summary(s: dict) -> None:
    print(f"{s['path']}: ringrift game database, schema v{s['schema_version']}")
    print(f"  games {s['games']}, moves {s['moves']}, capped {s['capped']}")
    if s["games"]:
        print("  wins by seat: " + ", ".join(f"{'none' if w == 0 else w}: {n}" for w, n in s["wins_by_seat"].items()))
        print("  reasons: " + ", ".join(f"{r}: {n}" for r, n in s["reasons"].items()))
        print("  parity: " + ", ".join(f"{r}: {n}" for r, n in s["parity_status"].items()))
        print("  policies: " + ", ".join(f"{p}: {n}" for p, n in s.get("policies", {}).items()))
        print("  board       players    games      moves  mean moves  capped")
        for c in s["by_config"]:
            print(f"  {c['board']:<11} {c['num_players']:>7} {c['games']:>8} {c['moves']:>10} "
                  f"{c['mean_moves']:>11.1f} {c['capped']:>7}")


def _print_replay_summary(s: dict) -> None:
    print(f"{s['path']}: upstream GameReplayDB, schema v{s['schema_version']}")
    print(f"  games {s['games']}, moves {s['moves']}")
    if s["game_status"]:
        print("  status: " + ", ".join(f"{k}: {v}" for k, v in s["game_status"].items()))
    for c in s["by_config"]:
        print(f"  {c['board']:<11} {c['num_players']}p {c['games']:>8} games")


def _info(args) -> int:
    path = Path(args.db)
    try:
        with GameDB(path, create=False, readonly=True) as db:
            summary = db.summary()
        show = _print_summary
    except DBError as exc:
        # Maybe an upstream replay DB?
        from .replaydb import replaydb_summary
        try:
            summary = replaydb_summary(path)
        except DBError:
            raise exc from None
        show = _print_replay_summary
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        show(summary)
    return 0


#: Skip reasons printed in full; the rest are counted.
MAX_SKIPS_SHOWN = 50


def _convert(args) -> int:
    """Exit status: 0 when every game was converted; 1 when a game was skipped (unless
    --allow-skips), the source held no game to import, or writing failed (a full disk:
    DBWriteError); 2 on other errors (DBError...)."""
    from .replaydb import from_replaydb, to_replaydb

    if args.to_replaydb:
        result = to_replaydb(args.src, args.dst, strict=True)
        print(f"{args.src} -> {args.dst}: {result}")
        return 0
    result = from_replaydb(args.src, args.dst, strict=args.strict)
    print(f"{args.src} -> {args.dst}: {result.read} games read: {result.written} imported, "
          f"{result.duplicates} already present, {len(result.skipped)} skipped")
    for gid, why in result.skipped[:MAX_SKIPS_SHOWN]:
        print(f"  skipped {gid}: {why}", file=sys.stderr)
    if len(result.skipped) > MAX_SKIPS_SHOWN:
        print(f"  ... and {len(result.skipped) - MAX_SKIPS_SHOWN} more skipped", file=sys.stderr)
    if result.written + result.duplicates == 0:
        print(f"{PROG}: error: no game of {args.src} was imported", file=sys.stderr)
        return 1
    if result.skipped and not args.allow_skips:
        print(f"{PROG}: error: {len(result.skipped)} game(s) skipped (use --allow-skips to accept a partial "
              f"import)", file=sys.stderr)
        return 1
    return 0


def _merge(args) -> int:
    with GameDB(args.dst) as db:
        for i, src in enumerate(args.srcs):
            try:
                n = db.merge_from(src)
            except RingRiftError as exc:
                if i:  # the sources before it are merged (each in its own transaction), and stay
                    error = DBWriteError if isinstance(exc, DBWriteError) else DBError
                    raise error(f"{exc} (the {i} source(s) before it are merged into {args.dst})",
                                path=str(src)) from None
                raise
            print(f"{src} -> {args.dst}: {n} games added")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"info": _info, "convert": _convert, "merge": _merge}[args.command](args)
    except BrokenPipeError:  # output piped into e.g. `head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (RingRiftError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exit_status(exc, default=EXIT_USAGE)  # 1 for a write a full disk stopped: the work failed
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
