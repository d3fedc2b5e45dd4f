"""The ``train`` phase of the pipeline: ``ringrift-pipeline run train`` and ``run all --train``.

It trains a policy/value net (ringrift.train, needs ``ringrift[train]``) on the NPZ export of a
board, in-process on this machine, with the settings of the config's ``train:`` section
(validated like the rest); flags override them. A rerun resumes from the run folder's last
checkpoint. Kept apart from the other phases so the pipeline's own files change little.
"""

from __future__ import annotations

from pathlib import Path

from .. import BOARDS
from ..exitcodes import UsageError

_POS_INT = (int, lambda v: v > 0, "a positive integer")
_NON_NEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
_POS_NUM = ((int, float), lambda v: v > 0, "a positive number")
_NON_NEG_NUM = ((int, float), lambda v: v >= 0, "a non-negative number")
_BOOL = (bool, lambda v: True, "true or false")

#: The config's ``train:`` section (merged into pipeline.config.SCHEMA).
TRAIN_SCHEMA = {
    "out_dir": (str, lambda v: bool(v.strip()), "a folder"),
    "epochs": _POS_INT,
    "batch_size": _POS_INT,
    "lr": _POS_NUM,
    "weight_decay": _NON_NEG_NUM,
    "warmup": _POS_INT,
    "width": (int, lambda v: 0 <= v <= 1024, "an integer 0..1024 (0: the board's default)"),
    "depth": (int, lambda v: 0 <= v <= 100, "an integer 0..100 (0: the board's default)"),
    "augment": _BOOL,
    "seed": (int, lambda v: 0 <= v <= 2**63 - 1, "an integer 0..9223372036854775807"),
    "threads": (int, lambda v: 0 <= v <= 1024, "an integer 0..1024 (0: torch's default)"),
    "onnx": _BOOL,
    "plot": _BOOL,
}

TRAIN_DEFAULTS = {
    "out_dir": "runs",  # the run folder is OUT_DIR/<board>
    "epochs": 4,
    "batch_size": 256,
    "lr": 0.002,
    "weight_decay": 0.0001,
    "warmup": 200,
    "width": 0,  # 0 = the board's default
    "depth": 0,
    "augment": True,
    "seed": 0,
    "threads": 0,
    "onnx": True,
    "plot": True,
}

FLAGS = ("epochs", "batch_size", "lr", "width", "depth", "seed")


def add_train_flags(p) -> None:
    """The flags that override the config's train section (phase `train`, and `all --train`)."""
    p.add_argument("--train-out", metavar="DIR", help="run folder (default: config train.out_dir/<board>)")
    p.add_argument("--epochs", type=int, help="config: train.epochs")
    p.add_argument("--train-batch-size", dest="batch_size_train", type=int, help="config: train.batch_size")
    p.add_argument("--lr", type=float, help="config: train.lr")
    p.add_argument("--width", type=int, help="config: train.width (0 = the board's default)")
    p.add_argument("--depth", type=int, help="config: train.depth (0 = the board's default)")
    p.add_argument("--train-seed", dest="seed_train", type=int, help="config: train.seed")


def add_train_parser(phases, dry) -> None:
    phases.add_parser("train", help="train a policy/value net on an NPZ export (needs ringrift[train])",
                      description="Train a policy/value net on the NPZ export of a board (docs/training.md); "
                                  "a rerun resumes from the run folder's last checkpoint.",
                      fill=lambda tr: _train_args(tr, dry))


def _train_args(tr, dry) -> None:
    tr.add_argument("--data", metavar="NAME.npz", help="the export (default: data/training/canonical_<board>.npz)")
    tr.add_argument("--board", choices=BOARDS, help="board of the default --data and run folder (default: config "
                                                   "default_board)")
    add_train_flags(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    dry(tr)


def _options(ctx, data: Path, board: str):
    from ..train.trainer import TrainOptions

    a, tc = ctx.args, ctx.cfg["train"]
    pick = {"epochs": getattr(a, "epochs", None), "batch_size": getattr(a, "batch_size_train", None),
            "lr": getattr(a, "lr", None), "width": getattr(a, "width", None), "depth": getattr(a, "depth", None),
            "seed": getattr(a, "seed_train", None)}
    v = {k: (pick[k] if pick.get(k) is not None else tc[k]) for k in TRAIN_SCHEMA if k in tc}
    for k in ("epochs", "batch_size"):
        if v[k] < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 1")
    out = Path(getattr(a, "train_out", None) or Path(tc["out_dir"]) / board)
    return TrainOptions(data=str(data), out=str(out), epochs=v["epochs"], batch_size=v["batch_size"], lr=v["lr"],
                        weight_decay=v["weight_decay"], warmup=v["warmup"], width=v["width"] or None,
                        depth=v["depth"] or None, augment=v["augment"], seed=v["seed"], threads=v["threads"],
                        onnx=v["onnx"], plot=v["plot"])


def train_phase(ctx, data: Path | None = None, *, board: str | None = None, begin: bool = True) -> int:
    board = board or getattr(ctx.args, "board", None) or ctx.cfg["default_board"]
    data = Path(data or getattr(ctx.args, "data", None) or f"data/training/canonical_{board}.npz")
    try:
        opt = _options(ctx, data, board)
    except ImportError:
        raise UsageError("the train phase needs PyTorch: pip install torch 'ringrift[train]'") from None
    if ctx.dry_run:
        print(f"plan: train: {opt.epochs} epoch(s) on {data} (and its _val split) into {opt.out} (on this machine; "
              f"resumes from {opt.out}/last.pt when present)")
        return 0
    from ..train.checkpoint import CheckpointError
    from ..train.data import DataError
    from ..train.trainer import OptionError, train

    ctx.enter_phase("train", {"data": str(data.resolve()), "out": opt.out}, begin=begin)
    log = ctx.logger

    def say(line):
        print(line)
        log.info(line)

    opt.log = say
    if not getattr(ctx.args, "quiet", False):
        from .progress import Progress

        opt.progress = Progress("train", unit="batches", interval=30.0)
    try:
        result = train(opt)
    except (DataError, CheckpointError, FileNotFoundError, OptionError) as exc:
        raise UsageError(f"train: {exc}") from None
    for k, f in result["files"].items():
        say(f"  {k}: {f}")
    ctx.state.set_phase("train", "done")
    return 0


def onnx_policy_spec(policy: str, temperature: float | None) -> str:
    """The self-play policy with ``--temperature`` folded into an ``onnx:PATH`` spec."""
    if temperature is None:
        return policy
    if not policy.startswith("onnx:"):
        raise UsageError("--temperature applies to an onnx:PATH policy only")
    if not temperature >= 0:
        raise UsageError("--temperature must be >= 0")
    return f"{policy}:temperature={temperature:g}"


def train_after_export(ctx, output_dir: Path, board: str) -> int:
    """`run all --train`: the train phase on the export `npz_export` just wrote."""
    data = Path(output_dir) / f"canonical_{board}.npz"
    return train_phase(ctx, data, board=board, begin=ctx.dry_run)


def check_train_available() -> None:
    """`run all --train` fails before self-play, not after, when PyTorch is missing."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UsageError("--train needs PyTorch: pip install torch 'ringrift[train]'")
