"""``ringrift-train``: train a policy/value net on an NPZ export (docs/training.md).

    ringrift-train --data data/training/canonical_square8.npz --out runs/sq8 [--epochs 4] [--plot]

Rerunning the same command after a kill resumes from ``OUT/last.pt``. Errors are one line,
``ringrift-train: error: ...``, exit status 1 (2 for invalid arguments).
"""

from __future__ import annotations

import json
import sys

from ..exitcodes import OneLineParser

PROG = "ringrift-train"


def build_parser():
    p = OneLineParser(prog=PROG, description="Train a residual policy/value net on a ringrift NPZ export "
                                                "(native encoding or upstream's).")
    p.add_argument("--data", required=True, metavar="NAME.npz",
                   help="the export's training file NAME.npz (or its shards NAME_part*.npz); NAME_val*.npz validates")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory: last.pt, model.onnx, history.json")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (warm-up, then cosine decay)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=200, help="warm-up batches")
    p.add_argument("--width", type=int, help="channels of the residual trunk (default per board)")
    p.add_argument("--depth", type=int, help="residual blocks (default per board)")
    p.add_argument("--no-augment", action="store_true", help="no symmetry augmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--value-weight", type=float, default=1.0)
    p.add_argument("--value-target", default="outcome", metavar="outcome|search|mix:F",
                   help="value target: the game's outcome, the search's root value (search_values of "
                        "ringrift-export of search games), or F * search + (1 - F) * outcome")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--max-batches", type=int, help="stop after this many batches in all (resumable)")
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="stop after this much training time; the learning-rate schedule follows the time")
    p.add_argument("--max-val-batches", type=int, help="validate on at most this many batches of 512")
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="upstream's encoding without NAME_val.npz: validate on this share of each file's games")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that split by game")
    p.add_argument("--block-mb", type=float, default=512.0, metavar="MIB",
                   help="upstream's encoding: read each file in blocks of about this many MiB of feature planes")
    p.add_argument("--init", metavar="CKPT", help="start from the weights of another checkpoint of the same layout")
    p.add_argument("--no-onnx", action="store_true", help="do not write OUT/model.onnx")
    p.add_argument("--plot", action="store_true", help="write OUT/curves.png (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size", "warmup"):
        if getattr(args, name) < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{PROG}: error: PyTorch is not installed (pip install torch 'ringrift[train]')", file=sys.stderr)
        return 1
    from ..pipeline.progress import Progress
    from .checkpoint import CheckpointError
    from .data import DataError
    from .trainer import OptionError, TrainOptions, train

    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    opt = TrainOptions(data=args.data, out=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, warmup=args.warmup, width=args.width, depth=args.depth,
                       augment=not args.no_augment, seed=args.seed, threads=args.threads,
                       value_weight=args.value_weight, value_target=args.value_target, checkpoint_every=args.checkpoint_every,
                       max_batches=args.max_batches, time_budget=args.time_budget, max_val_batches=args.max_val_batches, onnx=not args.no_onnx,
                       plot=args.plot, init=args.init, log=log,
                       val_fraction=args.val_fraction, split_seed=args.split_seed, block_mb=args.block_mb,
                       progress=None if args.quiet else Progress("train", unit="batches", interval=30.0))
    try:
        result = train(opt)
    except (DataError, CheckpointError, FileNotFoundError, OptionError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # writing the run folder: a read-only or full disk
        print(f"{PROG}: error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume from {args.out}/last.pt", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({k: result[k] for k in ("history", "files", "complete")}, indent=1))
    else:
        for k, v in result["files"].items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
