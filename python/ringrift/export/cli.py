"""`ringrift-export`: validated games of a game DB -> training .npz files.

    ringrift-export --db data/games/canonical_square8.db --output data/training/canonical_square8.npz

Writes OUTPUT (train) and OUTPUT_val.npz (validation); see docs/npz_format.md. With
``--encoding upstream`` the samples are in upstream's training encoding (docs/upstream_npz.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import BOARDS
from ..engine.errors import RingRiftError
from ..exitcodes import OneLineParser, UsageError, exit_status


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="ringrift-export",
                 description="Export the validated games of a game DB as training samples (.npz): one sample "
                             "per pre-move state, with board planes, globals, the played move's action index "
                             "and the final outcome. Format: docs/npz_format.md.")
    ap.add_argument("--db", metavar="PATH", required=True, help="game database (from ringrift-pipeline)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="PATH",
                     help="train file NAME.npz; validation goes to NAME_val.npz "
                          "(default: data/training/canonical_<board>.npz)")
    out.add_argument("--output-dir", metavar="DIR", help="write DIR/canonical_<board>.npz and its _val file")
    ap.add_argument("--config", metavar="PATH",
                    help="pipeline config for export.compression, export.split_ratio, export.symmetries and "
                         "export.encoding (default: config/pipeline_config.yaml when present)")
    ap.add_argument("--encoding", choices=("native", "upstream"),
                    help="sample layout: native (docs/npz_format.md) or upstream, the default training encoding of "
                         "upstream's ai-service exporter and trainer (docs/upstream_npz.md); config: export.encoding, "
                         "default native")
    ap.add_argument("--object-arrays", action="store_true",
                    help="(--encoding upstream) write policy_indices/policy_values and the string columns as the "
                         "numpy object arrays upstream's loaders read, and metadata as a pickled dict. WARNING: "
                         "such a file needs np.load(..., allow_pickle=True), which can run arbitrary code from an "
                         "untrusted file. Default: pickle-free flat arrays with *_offsets")
    ap.add_argument("--board", choices=BOARDS, help="export only this board (needed when the DB holds several)")
    ap.add_argument("--players", type=int, choices=(2, 3, 4), help="export only games with this many players")
    ap.add_argument("--include-unchecked", action="store_true",
                    help="also export games never validated (parity_status 'unchecked'); each is verified "
                         "move by move while it is exported and skipped if it does not replay")
    ap.add_argument("--include-capped", action="store_true",
                    help="also export games stopped at the move cap, as draws (every value 0)")
    ap.add_argument("--drop-forced", action="store_true",
                    help="leave out states whose only legal move is a no_*_action bookkeeping move")
    ap.add_argument("--verify", action="store_true",
                    help="verify every game (legality and hash of each step) instead of trusting 'ok' games")
    ap.add_argument("--symmetries", action=argparse.BooleanOptionalAction, default=None,
                    help="also store each sample's policy index under every board symmetry (policy_indices_sym, "
                         "for augmentation; see ringrift.export.symmetry; config: export.symmetries)")
    ap.add_argument("--search-targets", action=argparse.BooleanOptionalAction, default=None,
                    help="samples of search self-play games (--policy gumbel:...) get the search's improved policy "
                         "as their policy target (native: also search_values); default: whenever the DB holds "
                         "search targets for the board; --no-search-targets: the played move only; "
                         "--search-targets: fail when there are none (docs/search.md, 'Training targets')")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    ap.add_argument("--split-ratio", type=float,
                    help="fraction of games for training, in (0, 1]; 1 writes one file with every sample and no "
                         "validation file (config: export.split_ratio)")
    ap.add_argument("--compression", action=argparse.BooleanOptionalAction, default=None,
                    help="deflate the archives (config: export.compression)")
    ap.add_argument("--max-samples-per-file", type=int, metavar="N",
                    help="shard each split into NAME_partNNN.npz files of at most N samples")
    ap.add_argument("--chunk-games", type=int, metavar="N", help="at most N games per encoding chunk")
    ap.add_argument("--chunk-mb", type=float, default=64.0, metavar="MB",
                    help="feature memory per encoding chunk (default 64)")
    ap.add_argument("--threads", type=int, default=0, help="encoder threads, 0 = all cores (default)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap


def _progress(done: int, total: int, samples: int) -> None:
    sys.stderr.write(f"\r\033[Kexport: {done}/{total} games, {samples} samples")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..pipeline.config import load_config
    from .exporter import DEFAULT_OUTPUT_DIR, export_db
    from .upstream import export_upstream

    try:
        cfg = load_config(args.config)
        ex = cfg["export"]
        split_ratio = ex["split_ratio"] if args.split_ratio is None else args.split_ratio
        compression = ex["compression"] if args.compression is None else args.compression
        with_symmetries = ex["symmetries"] if args.symmetries is None else args.symmetries
        encoding = ex.get("encoding", "native") if args.encoding is None else args.encoding
        db = Path(args.db)
        if not db.exists():
            raise UsageError(f"{db}: no such game database")
        if not 0 <= args.threads <= 1024:
            raise UsageError("--threads must be 0..1024")
        if args.output is not None and not Path(args.output).name.removesuffix(".npz"):
            raise UsageError(f"--output {args.output!r}: needs a file name (NAME.npz)")
        if not 0 < split_ratio <= 1:
            raise UsageError(f"split ratio must be in (0, 1] (1 = one file, no validation split), got {split_ratio:g} "
                             f"(--split-ratio or the config's export.split_ratio)")
        for flag, value in (("--max-samples-per-file", args.max_samples_per_file), ("--chunk-games", args.chunk_games)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be >= 1")
        if not 0 < args.chunk_mb <= 1 << 20:
            raise UsageError("--chunk-mb must be a positive number of MB")
        progress = None if args.quiet or not sys.stderr.isatty() else _progress
        if encoding == "upstream":
            unsupported = [flag for flag, given in (("--include-capped", args.include_capped),
                                                    ("--drop-forced", args.drop_forced),
                                                    ("--symmetries", args.symmetries),
                                                    ("--max-samples-per-file", args.max_samples_per_file))
                           if given]
            if unsupported:
                raise UsageError(f"{', '.join(unsupported)}: not available with --encoding upstream "
                                    f"(upstream's exporter has no such option; see docs/upstream_npz.md)")
            result = export_upstream(db, args.output, output_dir=args.output_dir, board=args.board,
                                     players=args.players, include_unchecked=args.include_unchecked,
                                     verify=args.verify, split_ratio=split_ratio, seed=args.seed,
                                     compression=compression, chunk_games=args.chunk_games, chunk_mb=args.chunk_mb,
                                     threads=args.threads, object_arrays=args.object_arrays,
                                     search_targets=args.search_targets, progress=progress)
            for line in result.summary_lines():
                print(line)
            return 0
        if args.object_arrays:
            raise UsageError("--object-arrays is only for --encoding upstream (the native format has no object arrays)")
        result = export_db(db, args.output, output_dir=args.output_dir, board=args.board, players=args.players,
                           include_unchecked=args.include_unchecked, include_capped=args.include_capped,
                           drop_forced=args.drop_forced, verify=args.verify, split_ratio=split_ratio,
                           seed=args.seed, compression=compression, max_samples_per_file=args.max_samples_per_file,
                           chunk_games=args.chunk_games, chunk_mb=args.chunk_mb, threads=args.threads,
                           with_symmetries=with_symmetries, search_targets=args.search_targets, progress=progress)
    except RingRiftError as exc:
        print(f"ringrift-export: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except OSError as exc:
        # a failed write() names no file: then the folder the export was writing into
        folder = Path(args.output).parent if args.output else Path(args.output_dir or DEFAULT_OUTPUT_DIR)
        where = exc.filename or folder
        print(f"ringrift-export: error: {where}: {exc.strerror or exc}; no output file was changed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ringrift-export: interrupted; no output file was changed", file=sys.stderr)
        return 130
    for line in result.summary_lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
