"""Replay recorded reference games through our engine and find the first divergence.

At every step i (see ``PARITY.md``): before move i the legal-move count (``n``) and,
where recorded, the legal-move multiset by content (``legal``); then the move itself
must be legal; after it the hash ``h`` and status ``st``, and while the recorded game is
active the phase ``ph`` and player ``p`` (on terminal steps our phase must be
``game_over``).  At the end the ``result``.  The first divergence stops the game.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .replays import InputError, RecordedGame, check_record

# Move fields that do not take part in a move's identity.
VOLATILE_MOVE_FIELDS = ("id", "timestamp", "thinkTime", "moveNumber")


def _engine(engine):
    if engine is None:
        import ringrift as engine  # the real engine; tests may pass a stand-in
    return engine


def move_text(move_json: dict) -> str:
    """Compact, stable text of a move for messages (volatile fields dropped)."""
    return json.dumps({k: v for k, v in move_json.items() if k not in VOLATILE_MOVE_FIELDS},
                      sort_keys=True, separators=(",", ":"))


@dataclass
class Divergence:
    """The first difference found in a game.

    ``where``: ``input`` (the record could not be used), ``initial`` (state before any
    move), ``legal`` (legal moves before move ``step``), ``move`` (move ``step`` could
    not be found or applied), ``after`` (state after move ``step``), ``result`` (end of
    game), ``engine`` (the engine raised).  ``diffs`` holds (what, expected, got).
    """

    step: int | None
    where: str
    diffs: list[tuple[str, Any, Any]] = field(default_factory=list)
    detail: str = ""

    def describe(self) -> str:
        if self.where == "input":
            return f"malformed input: {self.detail}"
        label = {"initial": "initial state", "result": "result"}.get(self.where)
        if label is None:
            label = f"step {self.step}" if self.step is not None else "setup"
        parts = [f"{what} expected {json.dumps(exp)} got {json.dumps(got)}"
                 for what, exp, got in self.diffs]
        if self.detail:
            parts.append(self.detail)
        return f"{label}: " + "; ".join(parts)


@dataclass
class GameResult:
    source: str
    line: int | None = None
    game_index: int | None = None
    game_id: str | None = None
    steps: int = 0          # moves applied and found matching
    total_steps: int = 0    # moves in the record
    divergence: Divergence | None = None
    bundle: str | None = None  # path of the state bundle written for the divergence

    @property
    def ok(self) -> bool:
        return self.divergence is None

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def describe(self) -> str:
        if self.divergence is None:
            return f"{self.where}: ok ({self.steps} steps)"
        game = ""
        if self.game_index is not None or self.game_id is not None:
            game = " game " + " ".join(str(x) for x in (self.game_index, self.game_id) if x is not None)
        text = f"{self.where}{game}: {self.divergence.describe()}"
        if self.bundle:
            text += f" [bundle {self.bundle}]"
        return text


class _Cursor:
    """Where a replay stands; read by the bundle writer when a divergence is found."""

    def __init__(self) -> None:
        self.game = None          # our Game
        self.before = None        # clone of the game before the current move (bundles only)
        self.step: int | None = None
        self.applied = False      # whether move `step` has been applied
        self.legal_diff: dict | None = None


def legal_diff(engine, game, recorded: list[str], expected_count: int) -> dict:
    """Compare our legal moves with the recorded ``legal`` strings as multisets by content."""
    E = engine
    ours: collections.Counter = collections.Counter()
    theirs: collections.Counter = collections.Counter()
    sample: dict = {}
    for m in game.legal_moves():
        j = E.move_to_json(game, m)
        k = E.move_key(j)
        ours[k] += 1
        sample.setdefault(k, j)
    for s in recorded:
        j = json.loads(s)
        k = E.move_key(j)
        theirs[k] += 1
        sample.setdefault(k, j)

    def listing(counter):
        return sorted((sample[k] for k, c in counter.items() for _ in range(c)), key=move_text)

    return {"countExpected": expected_count, "countGot": sum(ours.values()),
            "missing": listing(theirs - ours), "extra": listing(ours - theirs)}


def _legal_detail(d: dict | None, limit: int = 3) -> str:
    if d is None:
        return ""
    out = []
    for name in ("missing", "extra"):
        moves = d[name]
        shown = ", ".join(move_text(m) for m in moves[:limit])
        more = f", ... {len(moves) - limit} more" if len(moves) > limit else ""
        out.append(f"{name} {len(moves)}" + (f" [{shown}{more}]" if moves else ""))
    return "legal moves " + ", ".join(out)


def compare_step(game, step: dict) -> list[tuple[str, Any, Any]]:
    """Differences between our state after a move and the recorded step."""
    diffs = []
    if game.hash() != step["h"]:
        diffs.append(("hash", step["h"], game.hash()))
    if game.status != step["st"]:
        diffs.append(("status", step["st"], game.status))
    if step["st"] == "active":
        if game.phase != step["ph"]:
            diffs.append(("phase", step["ph"], game.phase))
        if game.current_player != step["p"]:
            diffs.append(("player", step["p"], game.current_player))
    elif game.phase != "game_over":
        diffs.append(("phase", "game_over", game.phase))
    return diffs


def compare_result(game, result: dict) -> list[tuple[str, Any, Any]]:
    diffs = []
    for what, expected, got in (("status", result["gameStatus"], game.status),
                                ("winner", result["winner"], game.winner),
                                ("reason", result["reason"], game.victory_reason),
                                ("final hash", result["finalHash"], game.hash())):
        if expected != got:
            diffs.append((what, expected, got))
    return diffs


def _replay(E, rec: dict, res: GameResult, cur: _Cursor, keep_before: bool) -> Divergence | None:
    game = cur.game = E.Game.from_json(rec["initialState"], rec["boardType"], rec["numPlayers"],
                                       rec.get("rulesOptions"))
    if "initialHash" in rec and game.hash() != rec["initialHash"]:
        return Divergence(None, "initial", [("hash", rec["initialHash"], game.hash())])

    for i, (move_json, step) in enumerate(zip(rec["moves"], rec["steps"])):
        cur.step, cur.before, cur.applied = i, None, False
        n = game.num_legal_moves()
        if "legal" in step:
            cur.legal_diff = legal_diff(E, game, step["legal"], step["n"])
        if n != step["n"] or (cur.legal_diff and (cur.legal_diff["missing"] or cur.legal_diff["extra"])):
            counts = [("legal move count", step["n"], n)] if n != step["n"] else []
            return Divergence(i, "legal", counts, _legal_detail(cur.legal_diff))
        cur.legal_diff = None

        try:
            move = E.move_from_json(game, move_json)
        except E.MoveParseError as exc:
            return Divergence(i, "move", detail=f"recorded move {move_text(move_json)} is malformed: {exc}")
        except E.IllegalMoveError as exc:
            return Divergence(i, "move",
                              detail=f"recorded move {move_text(move_json)} is not among our legal moves: {exc}")
        if keep_before:
            cur.before = game.clone()
        try:
            game.apply(move)
        except E.IllegalMoveError as exc:
            return Divergence(i, "move", detail=f"our engine refused recorded move {move_text(move_json)}: {exc}")
        cur.applied = True

        diffs = compare_step(game, step)
        if diffs:
            return Divergence(i, "after", diffs)
        res.steps += 1

    diffs = compare_result(game, rec["result"])
    if diffs:
        return Divergence(None, "result", diffs)
    return None


def replay_game(game_record: dict, *, source: str = "<game>", line: int | None = None,
                bundle_dir: str | None = None, engine=None) -> GameResult:
    """Replay one recorded game (a parsed JSON record) and report its first divergence.

    ``bundle_dir``: write a JSON state bundle there for the divergence, if any.
    ``engine``: the module providing ``Game``, ``move_from_json`` etc. (default ``ringrift``).
    Never raises for bad input or engine errors; those are reported as divergences.
    """
    E = _engine(engine)
    rec = game_record
    res = GameResult(source, line, rec.get("gameIndex") if isinstance(rec, dict) else None,
                     rec.get("gameId") if isinstance(rec, dict) else None)
    try:
        if not isinstance(rec, dict):
            raise InputError("a game record must be a JSON object")
        check_record(rec)
    except InputError as exc:
        res.divergence = Divergence(None, "input", detail=str(exc))
        return res
    res.total_steps = len(rec["moves"])

    cur = _Cursor()
    try:
        div = _replay(E, rec, res, cur, keep_before=bundle_dir is not None)
    except Exception as exc:  # an engine crash must not stop the run
        div = Divergence(cur.step, "engine", detail=f"{type(exc).__name__}: {exc}")
    res.divergence = div
    if div is not None and bundle_dir is not None:
        from .bundle import make_bundle, write_bundle
        try:
            res.bundle = str(write_bundle(bundle_dir, make_bundle(rec, res, cur)))
        except Exception as exc:  # a failed bundle must not hide the divergence
            div.detail = (div.detail + "; " if div.detail else "") + f"bundle not written: {exc!r}"
    return res


def replay_recorded(game: RecordedGame, *, bundle_dir: str | None = None, engine=None) -> GameResult:
    """Replay a :class:`RecordedGame` from any game source."""
    try:
        rec = game.load()
    except InputError as exc:
        return GameResult(game.source, game.line, divergence=Divergence(None, "input", detail=str(exc)))
    return replay_game(rec, source=game.source, line=game.line, bundle_dir=bundle_dir, engine=engine)


_worker_engine = None


def _init_worker(engine) -> None:
    global _worker_engine
    _worker_engine = engine


def _work(game: RecordedGame, bundle_dir: str | None) -> GameResult:
    return replay_recorded(game, bundle_dir=bundle_dir, engine=_worker_engine)


def run_games(games: Iterable[RecordedGame], *, jobs: int = 1, bundle_dir: str | None = None,
              engine=None) -> Iterator[GameResult]:
    """Replay games from any game source, yielding results in input order.

    With ``jobs > 1`` games are spread over worker processes; at most ``2 * jobs``
    games are read ahead, so memory stays bounded.  If a worker process dies (an
    engine crash), the games in flight are reported as failed and the run goes on.
    """
    if jobs <= 1:
        for g in games:
            yield replay_recorded(g, bundle_dir=bundle_dir, engine=engine)
        return
    # A stand-in engine object (tests) reaches the workers only by fork.
    ctx = multiprocessing.get_context("fork") if engine is not None else multiprocessing.get_context()

    def new_pool():
        return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(engine,))

    pool = new_pool()
    pending: collections.deque = collections.deque()

    def take() -> GameResult:
        nonlocal pool
        g, job, owner = pending.popleft()
        try:
            return job.result()
        except BrokenProcessPool:
            if owner is pool:  # replace the broken pool once, not for every game it held
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
            detail = "worker process died (in this or a concurrent game; rerun with --jobs 1)"
        except Exception as exc:
            detail = f"worker failed: {type(exc).__name__}: {exc}"
        return GameResult(g.source, g.line, divergence=Divergence(None, "engine", detail=detail))

    try:
        for g in games:
            pending.append((g, pool.submit(_work, g, bundle_dir), pool))
            if len(pending) >= 2 * jobs:
                yield take()
        while pending:
            yield take()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
