"""``ringrift-pipeline run loop --generations K``: the search-and-train loop (docs/search.md, "The loop").

Per generation g = 1, 2, ... (each in ``RUN/gen_NNN``):

    selfplay  games with the current best: gumbel:onnx:BEST (gumbel:heuristic before any net)
    parity    every game replayed and checked (ringrift.parity.db_check.verify_db)
    export    the generation's games to a native NPZ (drop forced moves, train/val split by game) with
              the search's improved policies and root values as targets (ringrift-export writes them)
    train     on the last ``window`` generations' NPZs, warm-started from the best's checkpoint
              (before any promotion: from the previous generation's candidate)
    eval      ringrift-eval: the new net with search against the best with search, seat-balanced
    promote   the new net becomes the best when its win rate >= promote_win_rate and the lower
              end of its score's 95% interval is above 0.5

Resumable after a kill at any step: ``gen_NNN/state.json`` lists the steps done (written after
each step, atomically), and every step is safe to redo (self-play fills only missing game
indices, export rewrites its files, training resumes from its last checkpoint, an
evaluation is replayed whole). ``RUN/loop.json`` holds the best net and one record per finished
generation: model, data, evaluation, Elo (the first best, gumbel:heuristic, is Elo 0; a
candidate's Elo is the best's plus the evaluation's Elo difference). ``RUN/elo.png`` with --plot.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from .. import BOARDS, atomic
from ..exitcodes import UsageError

STEPS = ("selfplay", "parity", "export", "train", "eval", "promote")

_POS_INT = (int, lambda v: v > 0, "a positive integer")
_NON_NEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
_NON_NEG_NUM = ((int, float), lambda v: v >= 0, "a non-negative number")
_BOOL = (bool, lambda v: True, "true or false")


def _is_value_target(v: str) -> bool:
    from ..train.value_target import DataError, parse_value_target

    try:
        parse_value_target(v)
    except DataError:
        return False
    return True


#: The config's ``loop:`` section (merged into pipeline.config.SCHEMA).
LOOP_SCHEMA = {
    "out_dir": (str, lambda v: bool(v.strip()), "a folder"),
    "games": _POS_INT,
    "sims": (int, lambda v: 1 <= v <= 100_000, "an integer from 1 to 100000"),
    "top_k": (int, lambda v: 1 <= v <= 256, "an integer from 1 to 256"),
    "temp": _NON_NEG_NUM,
    "window": _POS_INT,
    "epochs": _POS_INT,
    "max_batches": _NON_NEG_INT,
    "eval_games": (int, lambda v: v >= 2, "an integer >= 2"),
    "eval_sims": (int, lambda v: 1 <= v <= 100_000, "an integer from 1 to 100000"),
    "promote_win_rate": ((int, float), lambda v: 0 <= v <= 1, "a number between 0 and 1"),
    "max_moves": (int, lambda v: 0 <= v <= 1_000_000, "an integer 0..1000000 (0: selfplay.max_moves)"),
    "seed": (int, lambda v: 0 <= v <= 2**63 - 1, "an integer 0..9223372036854775807"),
    "threads": (int, lambda v: 0 <= v <= 1024, "an integer 0..1024 (0: every core)"),
    "plot": _BOOL,
    "value_target": (str, _is_value_target, "outcome, search or mix:F with 0 <= F <= 1"),
}

LOOP_DEFAULTS = {
    "out_dir": "runs/loop",  # the run folder is OUT_DIR/<board>
    "games": 200,            # self-play games per generation
    "sims": 32,              # search simulations per move in self-play
    "top_k": 16,
    "temp": 1.0,             # Gumbel noise scale at the root (1 samples, 0 plays the best action)
    "window": 3,             # generations of data to train on
    "epochs": 2,             # per generation
    "max_batches": 0,        # 0 = no cap on training batches per generation
    "eval_games": 100,
    "eval_sims": 32,
    "promote_win_rate": 0.55,
    "max_moves": 0,          # 0 = selfplay.max_moves.<board>
    "seed": 0,
    "threads": 0,
    "plot": True,
    "value_target": "mix:0.5",  # the value head's target: outcome, search (root value) or mix:F of both
}


class LoopOptions(NamedTuple):
    """One generation loop's settings. A NamedTuple: see ringrift/cli.py on dataclasses."""

    run_dir: str
    board: str = "square8"
    players: int = 2
    generations: int = 1
    games: int = 200
    sims: int = 32
    top_k: int = 16
    temp: float = 1.0
    window: int = 3
    epochs: int = 2
    max_batches: int = 0
    eval_games: int = 100
    eval_sims: int = 32
    promote_win_rate: float = 0.55
    max_moves: int = 2000
    seed: int = 0
    threads: int = 0
    plot: bool = False
    value_target: str = "mix:0.5"  # ringrift.train.value_target.parse_value_target
    train: dict | None = None  # TrainOptions fields (width, depth, lr, batch_size, ...)


class LoopError(UsageError):
    """A loop that cannot go on (one line: what and where)."""


def _write_json(path: Path, data) -> None:
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str))


def _read_json(path: Path, default=None):
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LoopError(f"{path}: not a readable loop state ({exc}); delete it to redo that part") from None


def should_promote(ev: dict, win_rate: float) -> bool:
    """The rule: the candidate's win rate >= ``win_rate`` and its score's 95% interval above 0.5."""
    return ev["win_rate"] >= win_rate and ev["score_ci95"][0] > 0.5


def search_spec(best: dict | None, sims: int, top_k: int, temp: float) -> str:
    """The search policy of a best net (None: the net-free heuristic search)."""
    keys = f"sims={sims},top_k={top_k},temp={temp}"
    return f"gumbel:heuristic:{keys}" if best is None else f"gumbel:onnx:{best['model']}:{keys}"


class Loop:
    def __init__(self, opt: LoopOptions, *, log=print, on_step=None, selfplay=None):
        self.opt = opt
        self.selfplay = selfplay  # api.backend_selfplay's play(): self-play through --backend (None: here)
        self.run = Path(opt.run_dir)
        self.log = log
        self.on_step = on_step  # on_step(generation, step) after each step is recorded (tests)
        self.run.mkdir(parents=True, exist_ok=True)
        self.loop_path = self.run / "loop.json"
        self.state = _read_json(self.loop_path) or {"board": opt.board, "players": opt.players, "best": None,
                                                   "generations": []}
        if (self.state["board"], self.state["players"]) != (opt.board, opt.players):
            raise LoopError(f"{self.loop_path}: a loop of {self.state['board']} {self.state['players']}p, not "
                            f"{opt.board} {opt.players}p (use another run folder)")
        if not self.loop_path.exists():
            _write_json(self.loop_path, self.state)

    # ---- the generations ------------------------------------------------------------------

    def run_generations(self) -> dict:
        """Run generations until ``opt.generations`` are finished (resuming any unfinished one)."""
        while len(self.state["generations"]) < self.opt.generations:
            self.generation(len(self.state["generations"]) + 1)
        return self.state

    def generation(self, g: int) -> None:
        gdir = self.run / f"gen_{g:03d}"
        gdir.mkdir(exist_ok=True)
        spath = gdir / "state.json"
        st = _read_json(spath)
        if st is None:  # the best at the generation's start: a resume plays with the same one
            st = {"generation": g, "done": [], "best": self.state["best"], "results": {}}
            _write_json(spath, st)
        if "export" in st["done"] and not (gdir / "data" / "soft.npz").exists():
            st["done"] = st["done"][:st["done"].index("export")]  # a run from before the export wrote soft.npz
        for step in STEPS:
            if step in st["done"]:
                continue
            t0 = time.perf_counter()
            self.log(f"loop: generation {g}: {step} ...")
            result = getattr(self, f"_{step}")(g, gdir, st)
            st["results"][step] = {**(result or {}), "seconds": round(time.perf_counter() - t0, 2)}
            st["done"].append(step)
            _write_json(spath, st)
            if self.on_step:
                self.on_step(g, step)

    def _selfplay(self, g, gdir, st):
        from ..db import GameDB
        from ..selfplay.runner import run_selfplay

        o = self.opt
        policy = search_spec(st["best"], o.sims, o.top_k, o.temp)
        if self.selfplay is not None:  # on the run's backend: the best net shipped to its workers
            r = self.selfplay(board=o.board, players=o.players, policy=policy, seed=o.seed * 1000 + g,
                              num_games=o.games, output_db=gdir / "games.db", threads=o.threads,
                              max_moves=o.max_moves)
            self.log(f"  {r['played']} games played on the {r['backend']} backend ({r['already_present']} already "
                     f"there), {r['seconds']:.1f}s; policy {r['policy']}")
            return {"policy": r["policy"], "games": o.games, "played": r["played"],
                    "already_present": r["already_present"], "backend": r["backend"]}
        with GameDB(gdir / "games.db") as db:
            r = run_selfplay(db, board=o.board, num_players=o.players, num_games=o.games, seed=o.seed * 1000 + g,
                             policy=policy, threads=o.threads, max_moves=o.max_moves)
        self.log(f"  {r.games} games played ({r.already_present} already there), {r.moves} moves, "
                 f"{r.seconds:.1f}s; policy {r.policy}")
        return {"policy": r.policy, "games": o.games, "played": r.games, "already_present": r.already_present,
                "moves_played": r.moves, "capped": r.capped}

    def _parity(self, g, gdir, st):
        import io

        from ..parity.db_check import verify_db

        matched, checked, steps = verify_db(gdir / "games.db", quiet=True, out=io.StringIO())
        if matched != checked:
            raise LoopError(f"{gdir / 'games.db'}: {checked - matched} of {checked} games fail the parity check")
        self.log(f"  parity: {matched}/{checked} games replay exactly ({steps} steps)")
        return {"matched": matched, "checked": checked, "steps": steps}

    def _export(self, g, gdir, st):
        from ..export import export_db

        data = gdir / "data"
        data.mkdir(exist_ok=True)
        r = export_db(gdir / "games.db", data / "soft.npz", drop_forced=True, include_unchecked=True,
                      include_capped=True, split_ratio=0.9, seed=g, threads=self.opt.threads, search_targets=True)
        return {"samples": r.samples, "games": r.games, "skipped": len(r.skipped), "with_targets": r.search_samples}

    def _window(self, g, gdir) -> Path:
        """Links to the soft NPZs of the last ``window`` generations, as one sharded export."""
        win = gdir / "window"
        if win.exists():
            shutil.rmtree(win)
        win.mkdir()
        k = v = 0
        for h in range(max(1, g - self.opt.window + 1), g + 1):
            data = self.run / f"gen_{h:03d}" / "data"
            for src, name in (("soft.npz", "w_part{:03d}.npz"), ("soft_val.npz", "w_val_part{:03d}.npz")):
                if not (data / src).exists():
                    continue
                n = k if src == "soft.npz" else v
                dst = win / name.format(n)
                try:
                    os.link(data / src, dst)
                except OSError:
                    shutil.copyfile(data / src, dst)
                if src == "soft.npz":
                    k += 1
                else:
                    v += 1
        if not k:
            raise LoopError(f"{gdir}: no training data in the window (did the export produce samples?)")
        return win / "w.npz"

    def _train(self, g, gdir, st):
        from ..train.trainer import TrainOptions, train

        o = self.opt
        data = self._window(g, gdir)
        kw = dict(o.train or {})
        best = st["best"]
        out = gdir / "train"
        # Warm start from the best; before any net is promoted, from the previous candidate (its
        # training need not start again from nothing every generation).
        prev = self.run / f"gen_{g - 1:03d}" / "train" / "last.pt"
        warm = best["checkpoint"] if best else (str(prev) if g > 1 and prev.exists() else None)
        res = train(TrainOptions(data=str(data), out=str(out), epochs=o.epochs, augment=False, onnx=True, plot=False,
                                 max_batches=o.max_batches or None, threads=o.threads,
                                 init=warm if not (out / "last.pt").exists() else None,
                                 value_target=o.value_target,
                                 log=lambda s: self.log("  " + s), **kw))
        last = res["history"][-1] if res.get("history") else {}
        return {"model": str(out / "model.onnx"), "checkpoint": str(out / "last.pt"),
                "warm_start": warm, "value_target": o.value_target,
                "val": {k: v for k, v in last.items() if k.startswith("val_")}}

    def _eval(self, g, gdir, st):
        from ..train.evaluate import run_match

        o = self.opt
        cand = {"model": str(gdir / "train" / "model.onnx")}
        a = search_spec(cand, o.eval_sims, o.top_k, o.temp)
        b = search_spec(st["best"], o.eval_sims, o.top_k, o.temp)
        r = run_match(a, b, board=o.board, players=o.players, games=o.eval_games, seed=o.seed * 1000 + g,
                      max_moves=o.max_moves, threads=o.threads, batch_size=o.eval_games)
        lo, hi = r["score_ci95"]
        self.log(f"  eval: W {r['wins']} D {r['draws']} L {r['losses']}, win rate {r['win_rate']:.3f}, "
                 f"score {r['score']:.3f} (95% CI {lo:.3f}-{hi:.3f})")
        _write_json(gdir / "eval.json", r)
        return {k: r[k] for k in ("a", "b", "games", "wins", "draws", "losses", "win_rate", "score", "score_ci95",
                                  "elo", "elo_ci95")}

    def _promote(self, g, gdir, st):
        o = self.opt
        ev = st["results"]["eval"]
        tr = st["results"]["train"]
        best = st["best"]
        base = best["elo"] if best else 0.0
        n = ev["games"]
        # a score of 0 or 1 has no finite Elo: count it as half a game short of it
        s = min(max(ev["score"], 0.5 / n), 1 - 0.5 / n)
        from ..train.evaluate import elo

        cand_elo = base + elo(s)
        promoted = should_promote(ev, o.promote_win_rate)
        record = {"generation": g, "model": tr["model"], "checkpoint": tr["checkpoint"],
                  "games_db": str(gdir / "games.db"), "data": str(gdir / "data" / "soft.npz"),
                  "selfplay_policy": st["results"]["selfplay"]["policy"], "eval": ev, "elo": round(cand_elo, 1),
                  "best_elo_before": base, "promoted": promoted}
        gens = [r for r in self.state["generations"] if r["generation"] != g]  # idempotent on a redo
        self.state["generations"] = gens + [record]
        if promoted:
            self.state["best"] = {"generation": g, "model": tr["model"], "checkpoint": tr["checkpoint"],
                                  "elo": record["elo"]}
        _write_json(self.loop_path, self.state)
        self.log(f"  generation {g}: {'promoted' if promoted else 'not promoted'} (Elo {cand_elo:+.0f} "
                 f"against the best's {base:+.0f})")
        if o.plot:
            plot_elo(self.state, self.run / "elo.png")
        return {"promoted": promoted, "elo": record["elo"]}


# ---- status and plot --------------------------------------------------------------------------

def status_lines(run_dir) -> list[str]:
    """One line per generation (finished or under way) of the loop in ``run_dir``."""
    run = Path(run_dir)
    state = _read_json(run / "loop.json", {}) or {}
    lines = []
    best = state.get("best")
    lines.append(f"loop: {run} ({state.get('board', '?')} {state.get('players', '?')}p), best: "
                 + (f"generation {best['generation']} (Elo {best['elo']:+.0f}), {best['model']}" if best
                    else "gumbel:heuristic (no net promoted yet)"))
    finished = {r["generation"] for r in state.get("generations", [])}
    for r in state.get("generations", []):
        ev = r["eval"]
        lo, hi = ev["score_ci95"]
        lines.append(f"  gen {r['generation']:3d}: W {ev['wins']} D {ev['draws']} L {ev['losses']} vs best, win rate "
                     f"{ev['win_rate']:.3f} (score 95% CI {lo:.3f}-{hi:.3f}), Elo {r['elo']:+.0f}, "
                     f"{'promoted' if r['promoted'] else 'kept the best'}")
    for gdir in sorted(run.glob("gen_[0-9][0-9][0-9]")):
        st = _read_json(gdir / "state.json", {}) or {}
        g = st.get("generation")
        if g is not None and g not in finished:
            lines.append(f"  gen {g:3d}: under way, steps done: {', '.join(st.get('done', [])) or 'none'}")
    return lines


def plot_elo(state: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    gens = state.get("generations", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [0] + [r["generation"] for r in gens]
    best, ys_best = 0.0, [0.0]
    for r in gens:
        if r["promoted"]:
            best = r["elo"]
        ys_best.append(best)
    ax.step(xs, ys_best, where="post", label="best (promoted)")
    ax.scatter([r["generation"] for r in gens], [r["elo"] for r in gens],
               c=["tab:green" if r["promoted"] else "tab:red" for r in gens], label="candidates", zorder=3)
    ax.set_xlabel("generation")
    ax.set_ylabel("Elo (gumbel:heuristic = 0)")
    ax.set_title(f"ringrift loop, {state.get('board')} {state.get('players')}p")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic.replacing(path, suffix=".png") as tmp:  # savefig picks the format by the suffix
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


# ---- the pipeline phase -----------------------------------------------------------------------

def add_loop_parser(phases, dry) -> None:
    phases.add_parser("loop", help="search self-play -> parity -> export -> train -> eval -> promote, "
                                   "K generations (needs ringrift[train])",
                      description="The generation loop of docs/search.md; a rerun resumes where it stopped.",
                      fill=lambda lp: _loop_args(lp, dry))


def _loop_args(lp, dry) -> None:
    lp.add_argument("--generations", type=int, required=True, help="finish this many generations in all")
    lp.add_argument("--board", choices=BOARDS, help="default: config default_board")
    lp.add_argument("--players", type=int, choices=(2, 3, 4), help="default: config selfplay.num_players")
    lp.add_argument("--loop-dir", metavar="DIR", help="run folder (default: config loop.out_dir/<board>)")
    lp.add_argument("--games", type=int, help="self-play games per generation (config: loop.games)")
    lp.add_argument("--sims", type=int, help="search simulations per move (config: loop.sims)")
    lp.add_argument("--eval-games", type=int, help="evaluation games per generation (config: loop.eval_games)")
    lp.add_argument("--value-target", metavar="outcome|search|mix:F",
                    help="the value head's target (config: loop.value_target, default mix:0.5)")
    lp.add_argument("--plot", action="store_true", default=None, help="write RUN/elo.png (config: loop.plot)")
    lp.add_argument("--quiet", action="store_true", help="less output")
    dry(lp)


def loop_options(ctx) -> LoopOptions:
    a, lc, tc = ctx.args, ctx.cfg["loop"], ctx.cfg["train"]
    board = getattr(a, "board", None) or ctx.cfg["default_board"]
    players = getattr(a, "players", None) or ctx.cfg["selfplay"]["num_players"]
    if a.generations < 1:
        raise UsageError("--generations must be >= 1")
    pick = {"games": a.games, "sims": a.sims, "eval_games": a.eval_games, "plot": a.plot,
            "value_target": getattr(a, "value_target", None)}
    for k, given in pick.items():  # a flag stands in for its config key: the key's bounds hold for it
        rule = LOOP_SCHEMA.get(k)
        if given is not None and isinstance(rule, tuple) and isinstance(given, rule[0]) and not rule[1](given):
            raise UsageError(f"--{k.replace('_', '-')} {given!r}: expected {rule[2]}")
    v = {k: (pick[k] if pick.get(k) is not None else lc[k]) for k in LOOP_SCHEMA}
    for k in ("games", "sims"):
        if v[k] < 1:
            raise UsageError(f"--{k} must be >= 1")
    if v["eval_games"] < 2:
        raise UsageError("--eval-games must be >= 2")
    if not _is_value_target(v["value_target"]):
        raise UsageError(f"--value-target {v['value_target']!r}: expected outcome, search or mix:F with 0 <= F <= 1")
    run_dir = Path(getattr(a, "loop_dir", None) or Path(v["out_dir"]) / board)
    train = {k: tc[k] for k in ("batch_size", "lr", "weight_decay", "warmup", "seed")}
    train["width"], train["depth"] = tc["width"] or None, tc["depth"] or None
    return LoopOptions(run_dir=str(run_dir), board=board, players=players, generations=a.generations,
                       games=v["games"], sims=v["sims"], top_k=v["top_k"], temp=float(v["temp"]), window=v["window"],
                       epochs=v["epochs"], max_batches=v["max_batches"], eval_games=v["eval_games"],
                       eval_sims=v["eval_sims"], promote_win_rate=float(v["promote_win_rate"]),
                       max_moves=v["max_moves"] or ctx.cfg["selfplay"]["max_moves"][board], seed=v["seed"],
                       threads=v["threads"], plot=bool(v["plot"]), value_target=v["value_target"], train=train)


def loop_phase(ctx) -> int:
    from .state import PipelineState

    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("the loop needs PyTorch: pip install torch 'ringrift[train]'") from None
    opt = loop_options(ctx)
    if ctx.dry_run:
        from .api import backend_selfplay

        b = ctx.args.backend
        where = ("in this process" if backend_selfplay(ctx) is None else f"through --backend {b}"
                 + (" (a thread pool here)" if b == "local" else " (the best net shipped to each worker once)"))
        print(f"plan: loop: {opt.generations} generation(s) of {opt.games} {opt.board} games with "
              f"{opt.sims}-simulation search into {opt.run_dir} (resumes from its state files); self-play {where}")
        return 0
    ctx.start()
    ctx.state = PipelineState.begin(ctx.state_path, phase="loop",
                                    run={"phase": "loop", "loop_dir": str(Path(opt.run_dir).resolve()),
                                         "board": opt.board, "players": opt.players},
                                    target=None, phases=("loop",))
    quiet = getattr(ctx.args, "quiet", False)

    def say(line):
        if not quiet or not line.startswith("  "):
            print(line, flush=True)
        ctx.logger.info(line)

    from ..train.checkpoint import CheckpointError
    from ..train.data import DataError
    from ..train.players import PlayerSpecError

    try:
        from .api import backend_selfplay, say_no_hosts

        play = backend_selfplay(ctx)
        if play is None:
            say_no_hosts(ctx)
        Loop(opt, log=say, selfplay=play).run_generations()
    except (DataError, CheckpointError, PlayerSpecError, FileNotFoundError) as exc:
        raise UsageError(f"loop: {exc}") from None
    for line in status_lines(opt.run_dir):
        print(line)
    ctx.state.set_phase("loop", "done")
    return 0


__all__ = ["LOOP_DEFAULTS", "LOOP_SCHEMA", "Loop", "LoopOptions", "STEPS", "add_loop_parser", "loop_phase",
           "plot_elo", "search_spec", "should_promote", "status_lines"]
