"""Training loop: AdamW with linear warm-up and cosine decay, seeded, resumable from the last
checkpoint, validated once per epoch (docs/training.md)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from . import checkpoint as ckpt
from .data import (Batch, BatchStream, DataError, describe, file_hash, has_search_values, parse_value_target,
                   plan_upstream, split_files)
from .upstream_data import DEFAULT_BLOCK_MB
from .model import DEFAULT_SIZE, NetConfig, build_model, count_params

LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainOptions:
    data: str
    out: str
    epochs: int = 4
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    width: int | None = None
    depth: int | None = None
    augment: bool = True
    seed: int = 0
    threads: int = 0
    value_weight: float = 1.0
    value_target: str = "outcome"  # outcome | search | mix:F (value_target.parse_value_target)
    checkpoint_every: float = 60.0  # seconds between checkpoints inside an epoch
    max_batches: int | None = None  # stop after this many batches in all (tests, time boxes)
    max_val_batches: int | None = None
    time_budget: float | None = None  # minutes: the schedule runs on elapsed time and training stops there
    onnx: bool = True
    plot: bool = False
    init: str | None = None
    # upstream's encoding: validation share of each file's games when there is no NAME_val.npz,
    # the seed of that split, and MiB of feature planes per block read into memory
    val_fraction: float = 0.1
    split_seed: int = 0
    block_mb: float = DEFAULT_BLOCK_MB
    progress: object = None
    log: object = print
    extra_meta: dict = field(default_factory=dict)


class OptionError(ValueError):
    """A training option out of its range (named as ringrift-train's flag): exit status 2."""


def check_options(opt: TrainOptions) -> None:
    """Refuse options that would crash deep in torch or numpy, or train to NaN and exit 0 (a NaN
    value weight did), before any file is touched."""
    def need(ok: bool, flag: str, what: str):
        if not ok:
            raise OptionError(f"{flag} must be {what}")

    def finite(v) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    need(finite(opt.lr) and opt.lr > 0, "--lr", "a positive number")
    need(finite(opt.weight_decay) and opt.weight_decay >= 0, "--weight-decay", "a number >= 0")
    need(finite(opt.value_weight) and opt.value_weight >= 0, "--value-weight", "a number >= 0")
    need(finite(opt.checkpoint_every) and opt.checkpoint_every > 0, "--checkpoint-every", "a positive number of seconds")
    need(opt.time_budget is None or (finite(opt.time_budget) and opt.time_budget > 0), "--time-budget",
         "a positive number of minutes")
    need(finite(opt.val_fraction) and 0 < opt.val_fraction < 1, "--val-fraction", "between 0 and 1")
    need(finite(opt.block_mb) and opt.block_mb > 0, "--block-mb", "a positive number of MiB")
    need(opt.width is None or 1 <= opt.width <= 1024, "--width", "1..1024 channels")
    need(opt.depth is None or 0 <= opt.depth <= 100, "--depth", "0..100 blocks")
    need(0 <= opt.threads <= 1024, "--threads", "0..1024 (0: torch's default)")
    for flag, v in (("--seed", opt.seed), ("--split-seed", opt.split_seed)):
        need(0 <= v <= 2**63 - 1, flag, "0..9223372036854775807")
    for flag, v in (("--max-batches", opt.max_batches), ("--max-val-batches", opt.max_val_batches)):
        need(v is None or v >= 1, flag, ">= 1")
    out = Path(opt.out)
    need(not out.exists() or out.is_dir(), "--out", f"a folder ({out} is a file)")


def losses(model, b: Batch, value_weight: float = 1.0):
    logits, value = model(torch.from_numpy(b.features), torch.from_numpy(b.globals))
    logp = F.log_softmax(logits, dim=1)
    rows, idx = torch.from_numpy(b.policy_rows), torch.from_numpy(b.policy_index)
    w = torch.from_numpy(b.policy_weight)
    n = logits.shape[0]
    policy_loss = -(w * logp[rows, idx]).sum() / n
    vt, vm = torch.from_numpy(b.value_rel), torch.from_numpy(b.value_mask)
    value_loss = ((value - vt) ** 2 * vm).sum() / vm.sum()
    return policy_loss + value_weight * value_loss, policy_loss, value_loss, logits, value


@torch.no_grad()
def evaluate(model, stream: BatchStream, max_batches=None) -> dict:
    """Policy loss, top-1 / top-5 accuracy, value loss (MSE of the mover's value) and value sign
    accuracy (over samples with a nonzero outcome) on a data stream."""
    model.eval()
    tot = {"n": 0, "pl": 0.0, "top1": 0, "top5": 0, "vl": 0.0, "sign_ok": 0, "sign_n": 0}
    for k, b in stream.epoch(0):
        if max_batches is not None and k >= max_batches:
            break
        _, pl, _, logits, value = losses(model, b)
        n = logits.shape[0]
        top = torch.from_numpy(b.top_index)
        top5 = logits.topk(5, dim=1).indices
        tot["n"] += n
        tot["pl"] += float(pl) * n
        tot["top1"] += int((top5[:, 0] == top).sum())
        tot["top5"] += int((top5 == top[:, None]).any(dim=1).sum())
        v, t = value[:, 0], torch.from_numpy(b.value_rel[:, 0])
        tot["vl"] += float(((v - t) ** 2).sum())
        nz = t != 0
        tot["sign_n"] += int(nz.sum())
        tot["sign_ok"] += int(((v > 0) == (t > 0))[nz].sum())
    model.train()
    n = max(tot["n"], 1)
    return {"samples": tot["n"], "policy_loss": tot["pl"] / n, "top1": tot["top1"] / n, "top5": tot["top5"] / n,
            "value_loss": tot["vl"] / n, "value_sign_acc": tot["sign_ok"] / max(tot["sign_n"], 1)}


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% as ``progress`` goes 0 -> 1."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(opt: TrainOptions) -> dict:
    """Train (or resume) into ``opt.out``; returns the summary (history, files, metadata)."""
    check_options(opt)
    log = opt.log
    torch.manual_seed(opt.seed)
    if opt.threads > 0:
        torch.set_num_threads(opt.threads)
    train_files, val_files = split_files(opt.data)
    info, shards = describe(train_files)
    val_shards = describe(val_files, like=info, like_file=train_files[0])[1] if val_files else []
    augment = opt.augment and info.symmetries > 0
    if opt.augment and not augment:
        if info.encoding == "upstream":
            log("note: upstream's encoding: training without augmentation (no exact symmetry of its policy indices "
                "is known; docs/training.md)")
        else:
            log("note: the export has no policy_indices_sym (ringrift-export --symmetries): training without "
                "augmentation")
    out = Path(opt.out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / LAST
    meta = {**info.to_dict(), "ringrift_version": __version__, **opt.extra_meta}
    resume = ckpt.load(last) if last.exists() else None
    if resume is not None:
        ckpt.check_compatible(resume["meta"], meta, str(last))
        cfg = NetConfig(**resume["meta"]["net"])
        hp = resume["meta"]["hparams"]
        if hp["batch_size"] != opt.batch_size or hp["seed"] != opt.seed:
            log(f"note: resuming with the checkpoint's batch size {hp['batch_size']} and seed {hp['seed']}")
        opt.batch_size, opt.seed, opt.epochs = hp["batch_size"], hp["seed"], max(opt.epochs, hp["epochs"])
        split = tuple(hp.get(k) for k in ("val_fraction", "split_seed", "block_mb"))
        if "val_fraction" in hp and split != (opt.val_fraction, opt.split_seed, opt.block_mb):
            log(f"note: resuming with the checkpoint's --val-fraction {split[0]:g} --split-seed {split[1]} "
                f"--block-mb {split[2]:g}")
            opt.val_fraction, opt.split_seed, opt.block_mb = split
        augment = hp["augment"]
        if hp.get("value_target", "outcome") != opt.value_target:
            log(f"note: resuming with the checkpoint's value target {hp.get('value_target', 'outcome')}")
            opt.value_target = hp.get("value_target", "outcome")
    else:
        w0, d0 = DEFAULT_SIZE[info.board]
        cfg = NetConfig(board=info.board, width=opt.width or w0, depth=opt.depth or d0,
                        planes=info.feature_shape[0], globals=info.num_globals, encoding=info.encoding)
    split_note = None
    if info.encoding == "upstream":
        if not 0 <= opt.val_fraction < 1:
            raise DataError(f"--val-fraction {opt.val_fraction:g}: expected 0 <= F < 1")
        if not opt.block_mb > 0:
            raise DataError(f"--block-mb {opt.block_mb:g}: expected a positive number of MiB")
        shards, val_shards, split_note = plan_upstream(info, shards, val_shards if val_files else None,
                                                       val_fraction=opt.val_fraction, split_seed=opt.split_seed,
                                                       block_mb=opt.block_mb)
    search_weight = parse_value_target(opt.value_target)
    if search_weight > 0:
        for s in shards:
            if not has_search_values(s.path):
                raise DataError(f"{s.path}: no search_values for --value-target {opt.value_target} "
                                "(ringrift-export writes them for games played with --policy gumbel:...)")
    model = build_model(cfg)
    stream = BatchStream(shards, info.board, opt.batch_size, seed=opt.seed, shuffle=True, augment=augment,
                         exact=info.exact_symmetries, search_weight=search_weight)
    val_stream = BatchStream(val_shards, info.board, 512, seed=0, shuffle=False) if val_shards else None
    per_epoch = stream.num_batches()
    total = per_epoch * opt.epochs
    optim = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    warmup = min(opt.warmup, max(1, total // 10))
    epoch, start, step, history, elapsed = 0, 0, 0, [], 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optim.load_state_dict(resume["optimizer"])
        epoch, start, step, history = resume["epoch"], resume["batch"], resume["step"], resume["history"]
        elapsed = resume.get("elapsed", 0.0)
        torch.set_rng_state(resume["torch_rng"])
        log(f"resumed from {last}: epoch {epoch + 1}, batch {start}/{per_epoch}, step {step}")
    elif opt.init:
        init = ckpt.load(opt.init)
        ckpt.check_compatible(init["meta"], meta, opt.init)
        if NetConfig(**init["meta"]["net"]) != cfg:
            raise ckpt.CheckpointError(f"{opt.init}: net {init['meta']['net']} differs from {cfg.to_dict()}")
        model.load_state_dict(init["model"])
    hashes = resume["meta"]["data_hashes"] if resume is not None else \
        {p.name: file_hash(p) for p in train_files + val_files}
    meta.update({"net": cfg.to_dict(), "params": count_params(model), "data_hashes": hashes,
                 "hparams": {"epochs": opt.epochs, "batch_size": opt.batch_size, "lr": opt.lr,
                             "weight_decay": opt.weight_decay, "augment": augment, "seed": opt.seed,
                             "value_weight": opt.value_weight, "value_target": opt.value_target},
                 "train_samples": sum(s.samples for s in shards), "val_samples": sum(s.samples for s in val_shards)})
    if info.encoding == "upstream":
        meta["hparams"].update({"val_fraction": opt.val_fraction, "split_seed": opt.split_seed,
                                "block_mb": opt.block_mb})
    if resume is None:
        if split_note:
            log(split_note)
        log(f"training {cfg.board} net width {cfg.width} depth {cfg.depth} ({meta['params']:,} parameters) on "
            f"{meta['train_samples']:,} samples ({_units(shards)}), validating on {meta['val_samples']:,}; "
            f"{opt.epochs} epoch(s) of {per_epoch} batches of {opt.batch_size}, augment={augment}")

    def state(ep, batch):
        meta["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return {"meta": meta, "model": model.state_dict(), "optimizer": optim.state_dict(),
                "epoch": ep, "batch": batch, "step": step, "history": history, "torch_rng": torch.get_rng_state(),
                "elapsed": elapsed + time.monotonic() - t_start}

    model.train()
    t_start = t_last = time.monotonic()
    budget = opt.time_budget * 60 if opt.time_budget else None
    stopped = out_of_time = False
    while epoch < opt.epochs and not stopped:
        t0, run_loss, run_pl, run_vl, nb, k = time.monotonic(), 0.0, 0.0, 0.0, 0, start - 1
        for k, b in stream.epoch(epoch, start):
            spent = elapsed + time.monotonic() - t_start
            progress = max(0.0, (step - warmup) / max(1, total - warmup))
            if budget:
                progress = max(progress, spent / budget)
            for group in optim.param_groups:
                group["lr"] = opt.lr * lr_factor(step, warmup, progress)
            loss, pl, vl, _, _ = losses(model, b, opt.value_weight)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            nb += 1
            run_loss, run_pl, run_vl = run_loss + loss.item(), run_pl + pl.item(), run_vl + vl.item()
            if opt.progress:
                opt.progress(k + 1, per_epoch, nb / max(time.monotonic() - t0, 1e-9))
            if budget and elapsed + time.monotonic() - t_start >= budget:
                out_of_time = True
                break
            if opt.max_batches is not None and step >= opt.max_batches:
                ckpt.save(last, state(epoch, k + 1))
                stopped = True
                break
            if time.monotonic() - t_last >= opt.checkpoint_every:
                ckpt.save(last, state(epoch, k + 1))
                t_last = time.monotonic()
        if stopped and k + 1 < per_epoch:
            break
        row = {"epoch": epoch + 1, "step": step, "train_loss": run_loss / max(nb, 1),
               "train_policy_loss": run_pl / max(nb, 1), "train_value_loss": run_vl / max(nb, 1),
               "lr": optim.param_groups[0]["lr"], "seconds": time.monotonic() - t0, "batches": nb,
               "elapsed": elapsed + time.monotonic() - t_start}
        if out_of_time:
            row["stopped_by_time_budget"] = True
        if val_stream is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, val_stream, opt.max_val_batches).items()})
        history.append(row)
        log(_epoch_line(row))
        epoch, start = (opt.epochs if out_of_time else epoch + 1), 0
        ckpt.save(last, state(epoch, 0))
        if out_of_time:
            log(f"time budget of {opt.time_budget:g} min reached: training stops here")
        t_last = time.monotonic()
    (out / "history.json").write_text(json.dumps(history, indent=1))
    files = {"checkpoint": str(last)}
    if opt.onnx:
        from .onnx_export import export_onnx

        model.eval()
        files["onnx"] = str(export_onnx(model, meta, out / "model.onnx"))
    if opt.plot and history:
        files["plot"] = str(plot_history(history, out / "curves.png"))
    return {"history": history, "files": files, "meta": meta, "complete": epoch >= opt.epochs}


def _units(shards) -> str:
    files = len({s.path for s in shards})
    blocks = sum(s.lo is not None for s in shards)
    return f"{files} file(s)" + (f" in {blocks} block(s)" if blocks > files else "")


def _epoch_line(r: dict) -> str:
    s = (f"epoch {r['epoch']}: train loss {r['train_loss']:.3f} (policy {r['train_policy_loss']:.3f}, value "
         f"{r['train_value_loss']:.3f}), {r['seconds']:.0f}s")
    if "val_top1" in r:
        s += (f"; val policy loss {r['val_policy_loss']:.3f}, top-1 {r['val_top1']:.3f}, top-5 {r['val_top5']:.3f}, "
              f"value loss {r['val_value_loss']:.3f}, sign acc {r['val_value_sign_acc']:.3f}")
    return s


def plot_history(history: list, path: Path) -> Path:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DataError("--plot needs matplotlib (pip install 'ringrift[train]')") from None
    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [r["train_policy_loss"] for r in history], "o-", label="train")
    ax[1].plot(ep, [r["train_value_loss"] for r in history], "o-", label="train")
    if "val_top1" in history[0]:
        ax[0].plot(ep, [r["val_policy_loss"] for r in history], "o-", label="val")
        ax[1].plot(ep, [r["val_value_loss"] for r in history], "o-", label="val")
        for key, lab in (("val_top1", "top-1"), ("val_top5", "top-5"), ("val_value_sign_acc", "value sign")):
            ax[2].plot(ep, [r[key] for r in history], "o-", label=lab)
    for a, t in zip(ax, ("policy loss", "value loss (MSE)", "validation accuracy")):
        a.set_title(t)
        a.set_xlabel("epoch")
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
