"""Batched self-play into a game database, resumable and crash-safe.

Games are identified by (board, players, policy, seed, game index): game i of seed S is always
the same game, whatever the thread count. A run fills the indices 0..N-1 that the database
does not hold yet, in batches that are each committed atomically, so a killed run leaves only
complete games and the same command resumes exactly where it stopped.

On the CPU the whole run is one native call (csrc/selfplay/db_runner.h): each of `threads`
native threads plays a chunk of games, then commits it (chunks in index order), without the GIL,
so `threads` is the number of cores the run uses. The other paths (CUDA, search, the Python
writer) play batch k+1 on native threads while this thread writes batch k.
"""

from __future__ import annotations

import numbers
import os
import threading
import time
from collections import Counter
from datetime import datetime, timezone

from .. import BOARDS, _core
from .. import __version__
from ..pipeline.ranges import MAX_GAMES, IndexSet, index_runs

ENGINE_VERSION = f"ringrift-{__version__}"


class SelfplayResult:
    """What a self-play run did, counted as it goes. A plain class: see ringrift/cli.py on
    dataclasses."""

    def __init__(self, board: str, num_players: int, seed: int, policy: str, target: int):
        self.board, self.num_players, self.seed, self.policy, self.target = board, num_players, seed, policy, target
        self.already_present = 0
        self.games = 0  # rows this run added to the DB
        self.duplicates = 0  # games played here that another run had stored meanwhile
        self.moves = 0
        self.capped = 0
        self.seconds = 0.0
        self.wins: Counter = Counter()  # seat -> games won (0: none)
        self.reasons: Counter = Counter()  # victory reason -> games

    def __repr__(self) -> str:
        return f"SelfplayResult({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    @property
    def games_per_sec(self) -> float:
        return self.games / self.seconds if self.seconds > 0 else 0.0

    def summary_lines(self) -> list[str]:
        seats = ", ".join(f"P{p}: {self.wins.get(p, 0)}" for p in range(1, self.num_players + 1))
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())) or "-"
        return [
            f"selfplay {self.board} {self.num_players}p policy={self.policy} seed={self.seed}: "
            f"{self.games} new games ({self.already_present} already present, target {self.target})"
            + (f"; {self.duplicates} played games were stored meanwhile by another run" if self.duplicates else ""),
            f"  moves: {self.moves} ({self.moves / max(self.games + self.duplicates, 1):.1f} per game), "
            f"capped: {self.capped}",
            f"  wins by seat: {seats}",
            f"  reasons: {reasons}",
            f"  time: {self.seconds:.2f}s, {self.games_per_sec:.1f} games/s, "
            f"{self.moves / self.seconds if self.seconds > 0 else 0:.0f} moves/s",
        ]


def _count_into(counter: Counter, codes, name) -> None:
    """Add the non-zero codes of a small-integer array to `counter` under name(code): one
    bincount per batch instead of a Python step per game."""
    import numpy as np  # only the batch paths (CUDA, search) come here: the CPU path needs no numpy

    counts = np.bincount(np.asarray(codes, dtype=np.int64))
    for code in np.flatnonzero(counts).tolist():
        if code:
            counter[name(code)] += int(counts[code])


# Games a thread plays before it commits them (one transaction) on the native path: about 10 ms
# of play, so commits are cheap beside play and progress stays lively.
CHUNK = {"square8": 256, "hex8": 256, "square19": 16, "hexagonal": 16}


def _play_into_db(db, result: SelfplayResult, todo: IndexSet, writer: dict, *, threads: int, max_moves: int,
                  chunk_size: int, host: str, progress, t0: float) -> SelfplayResult:
    """run_selfplay's CPU path: _core.selfplay_into_db (csrc/selfplay/db_runner.h) plays the
    index runs on native threads and commits them a chunk at a time, in index order."""
    from ..db.errors import DBWriteError

    def report(played: int, added: int) -> None:
        result.seconds = time.perf_counter() - t0
        if progress:
            progress(result.already_present + played, result.target, added / result.seconds if result.seconds else 0.0)

    try:
        out = _core.selfplay_into_db(board=result.board, num_players=result.num_players, seed=result.seed,
                                     runs=todo.runs, policy=result.policy, threads=threads, max_moves=max_moves,
                                     chunk_size=chunk_size, engine_version=ENGINE_VERSION, host=host,
                                     progress=report, **writer)
    except RuntimeError as exc:
        raise DBWriteError(f"{db.path}: storing self-play games failed ({exc}); the games committed before it "
                           f"are stored, and the same command resumes", path=str(db.path)) from None
    result.games = out["added"]
    result.duplicates = out["played"] - out["added"]
    result.moves = out["moves"]
    result.capped = out["capped"]
    result.wins.update({p: n for p, n in enumerate(out["wins"]) if p and n})
    result.reasons.update({_core.REASONS[r]: n for r, n in enumerate(out["reasons"]) if r and n})
    result.seconds = time.perf_counter() - t0
    if out["interrupted"]:
        # the interrupt stops the runner before it reports its last commits: report them, so the
        # caller's record (the pipeline's state) says what the DB holds
        report(out["played"], out["added"])
        raise KeyboardInterrupt
    return result


def games_to_play(db, result: SelfplayResult) -> IndexSet:
    """The indices of `result`'s run (0..target-1) that `db` lacks, as index runs; records how many
    it already holds in ``result.already_present``."""
    have = stored_indices(db, board=result.board, num_players=result.num_players, seed=result.seed,
                          policy=result.policy)
    todo = IndexSet.interval(0, result.target) - have
    result.already_present = result.target - todo.count
    return todo


def stored_indices(db, *, board: str, num_players: int, seed: int, policy: str) -> IndexSet:
    """The game indices of one run that `db` (a GameDB) holds, as index runs, read in index
    order so that no per-game set is built: memory follows the gaps, not the games."""
    import sqlite3

    from ..db.errors import DBError

    try:
        rows = db.conn.execute(
            "SELECT game_index FROM games WHERE board = ? AND num_players = ? AND policy = ? AND seed = ? "
            "ORDER BY game_index", (board, int(num_players), policy, int(seed)))
        return index_runs(rows)
    except sqlite3.Error as exc:
        raise DBError(f"{db.path}: reading the stored games failed: {exc}", path=str(db.path)) from None


def integer_in(name: str, value, low: int, high: int) -> int:
    """`value` as an int when it is an integer (numpy's too) in low..high, else ValueError naming
    `name`: a float or bool is refused, not truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer {low}..{high}, got {value!r}")
    return int(value)


def run_selfplay(db, *, board: str, num_games: int, num_players: int = 2, seed: int = 0,
                 policy: str = "random", threads: int = 0, max_moves: int = 2000,
                 batch_size: int | None = None, progress=None, device: str = "cpu") -> SelfplayResult:
    """Fill game indices 0..num_games-1 of (board, num_players, policy, seed) in `db` (a GameDB).

    `progress(done, total, games_per_sec)` is called after every committed batch. With
    device="cuda" the games are played by the CUDA kernel (the same rules code, the same games).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r} (expected cpu or cuda)")
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r} (expected {', '.join(BOARDS)})")
    # the DB stores seeds as signed 64-bit integers; a float or bool was truncated before
    num_games, num_players, seed, threads, max_moves = (
        integer_in(name, value, low, high)
        for name, value, low, high in (("num_games", num_games, 0, MAX_GAMES), ("num_players", num_players, 2, 4),
                                       ("seed", seed, 0, 2**63 - 1), ("threads", threads, 0, 1024),
                                       ("max_moves", max_moves, 1, 1_000_000)))
    # a trained net, or the heuristic with a share of random moves (docs/training.md): games advance in a BatchEnv
    if isinstance(policy, str) and policy.startswith(("onnx:", "heuristic:")):
        from ..train.games import run_onnx_selfplay

        return run_onnx_selfplay(db, board=board, num_games=num_games, num_players=num_players, seed=seed,
                                 policy=policy, threads=threads, max_moves=max_moves, batch_size=batch_size,
                                 progress=progress, device=device)
    search = None  # a gumbel:... policy: games played by the search (ringrift.search.selfplay)
    if isinstance(policy, str) and policy.startswith("gumbel:"):
        from ..search import selfplay as search

        search_spec = search.parse_policy(policy)  # gumbel:onnx:PATH plays from the file ...
        policy = search_spec.name  # ... and is stored by the net's id; the name lists every option  # normalised: the stored policy names every option
        if device != "cpu":
            raise ValueError(f"policy {policy}: search self-play runs on the CPU (device='cpu')")
    if device == "cuda":
        from ..gpu import require_gpu

        require_gpu()
    result = SelfplayResult(board, num_players, seed, policy, num_games)
    # The games to play as index runs: memory follows the games the DB holds, not the target.
    todo = games_to_play(db, result)
    if not todo:
        return result
    n_threads = threads if threads > 0 else _core.hardware_threads()
    # Batches of a few hundred games per thread keep commits cheap and progress lively; a GPU
    # batch fills the device.
    if device == "cuda":
        from ..gpu import GPU_BATCH

        size = batch_size or GPU_BATCH[board]
    else:
        size = batch_size or max(64, min(4096, 256 * n_threads if board in ("square8", "hex8") else 16 * n_threads))
    host = os.uname().nodename  # gethostname()'s value on POSIX, without importing socket (3 ms)
    t0 = time.perf_counter()
    writer = db.native_writer_args("cells64") if device == "cpu" and search is None else None
    if writer is not None:  # play and store in one native call: each thread plays and writes in turn
        return _play_into_db(db, result, todo, writer, threads=n_threads, max_moves=max_moves,
                             chunk_size=batch_size or CHUNK[board], host=host, progress=progress, t0=t0)

    def play(chunk):
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if device == "cuda":
            from ..gpu import selfplay_batch_gpu

            return selfplay_batch_gpu(board, num_players, seed, chunk, policy, max_moves), started
        if search is not None:
            return search.selfplay_search_batch(board, num_players, seed, list(chunk), search_spec, max_moves=max_moves,
                                                threads=n_threads), started
        batch = _core.selfplay_batch(board, num_players, seed, chunk, policy, threads=n_threads,
                                     max_moves=max_moves, record=True)
        return batch, started

    pending: dict = {}

    idle = threading.Event()  # set whenever no batch is running in native code
    idle.set()

    def produce(chunk):
        try:
            pending["result"] = play(chunk)
        except BaseException as exc:  # surfaced in the writer thread
            pending["error"] = exc
        finally:
            idle.set()

    def start(chunk):
        idle.clear()
        thread = threading.Thread(target=produce, args=(chunk,), daemon=True)
        thread.start()
        return thread

    chunks = todo.chunks(size)  # lazily: one batch of indices plays while the previous one is written
    try:
        worker = start(next(chunks))
        while worker is not None:
            worker.join()
            if "error" in pending:
                raise pending.pop("error")
            batch, started = pending.pop("result")
            if batch.get("cancelled"):
                raise KeyboardInterrupt
            following = next(chunks, None)
            worker = start(following) if following is not None else None
            # New games are the rows this run added: another run filling the same DB at the same
            # time (another state file, another machine) may have stored some of them first.
            added = db.insert_batch(batch, board=board, num_players=num_players, seed=seed, policy=policy,
                                    engine_version=ENGINE_VERSION, host=host, max_moves=max_moves,
                                    started_at=started)
            if search is not None:  # the search's targets, beside the games (their own table)
                search.store_targets(db.path, batch, board=board, num_players=num_players, policy=policy, seed=seed)
            result.games += added
            result.duplicates += len(batch["game_index"]) - added
            result.moves += int(batch["total_moves"])
            result.capped += int((batch["capped"] != 0).sum())
            _count_into(result.wins, batch["winner"], lambda w: w)
            _count_into(result.reasons, batch["reason"], lambda r: _core.REASONS[r])
            result.seconds = time.perf_counter() - t0
            if progress:
                progress(result.already_present + result.games + result.duplicates, num_games, result.games_per_sec)
    except BaseException:
        # Interrupted (Ctrl-C) or failed: stop the batch in flight at its next game boundary and
        # wait for its native threads, so the process never exits under them. Committed
        # batches stay; the batch in flight is dropped.
        _core.cancel_selfplay(True)
        idle.wait(timeout=60)
        _core.cancel_selfplay(False)
        raise
    result.seconds = time.perf_counter() - t0
    return result
