"""Batched Gumbel search (docs/search.md).

``GumbelSearch(games, simulations=..., top_k=..., seed=...)`` holds one search tree per game (all
games of one board). ``run(evaluate)`` searches them all at once: every step the C++ trees walk to
their next leaves (GIL released), the leaves' encoded features (``csrc/export/features.h``, the
export's planes and globals) go to ``evaluate`` in one batch, and its output goes back into the
trees. ``run()`` with no ``evaluate`` uses a net-free evaluator in C++ (uniform priors, value from
``evaluator``: ``zero``, ``heuristic`` or ``rollout``).

``evaluate(planes, globals) -> (logits, values)``: ``planes`` float32 (R, 26, H, W), ``globals``
float32 (R, 44); ``logits`` (R, A) over the board's action space (``ringrift.export.actions``),
``values`` (R,) for the player to move, or (R, 4) per seat slot relative to the player to move
(slot k = the k-th seat after it, as in the features), each in [-1, 1].
"""

from __future__ import annotations

import operator

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import _core
from ..engine import Game
from .spec import LEAF_EVALUATORS

Evaluate = Callable[[np.ndarray, np.ndarray], tuple]


@dataclass
class SearchResult:
    """One game's search. ``actions``/``policy``/``visits``/``prior`` list the root's distinct
    playable canonical actions in legal-surface order; ``policy`` is the improved policy (sums to
    1). ``action`` is the chosen canonical action (-1 and ``move`` None when the game is over)."""

    action: int
    move: object
    root_value: float
    actions: np.ndarray
    policy: np.ndarray
    visits: np.ndarray
    prior: np.ndarray
    simulations: int
    pool_full: bool

    def dense_policy(self, size: int) -> np.ndarray:
        """The improved policy as a dense float32 vector over an action space of ``size``."""
        out = np.zeros(size, dtype=np.float32)
        out[self.actions] = self.policy
        return out


def uniform_evaluator(action_space_size: int) -> Evaluate:
    """A "uniform net": zero logits (uniform priors) and value 0 for every leaf."""

    def evaluate(planes: np.ndarray, globals_: np.ndarray):
        n = planes.shape[0]
        return np.zeros((n, action_space_size), dtype=np.float32), np.zeros(n, dtype=np.float32)

    return evaluate


class GumbelSearch:
    """Gumbel search for a batch of games of one board (see the module docstring).

    ``simulations``: simulations per tree after the root's evaluation; ``top_k``: root candidates
    (Gumbel top-k, at most ``_core.SEARCH_MAX_TOPK``); ``seed`` and ``streams`` (one int per game,
    default 0..B-1) seed each tree's random stream, so a search is reproducible per (seed, stream)
    and does not depend on ``threads``; ``c_visit``/``c_scale``: the sigma transform of the
    completed Q; ``gumbel_scale``: 1 samples the root's Gumbel noise, 0 makes the search
    deterministic (evaluation play); ``rollout_moves``: playout length of ``evaluator='rollout'``;
    ``max_nodes``: node pool per tree (default 8193 + 128 * simulations)."""

    def __init__(self, games: Sequence[Game], *, simulations: int = 64, top_k: int = 16, seed: int = 0,
                 streams: Sequence[int] | None = None, evaluator: str = "heuristic", c_visit: float = 50.0,
                 c_scale: float = 1.0, gumbel_scale: float = 1.0, rollout_moves: int = 64,
                 max_nodes: int | None = None, threads: int = 1):
        games = list(games)
        if not games:
            raise ValueError("GumbelSearch: need at least one game")
        for i, g in enumerate(games):
            if not isinstance(g, _core.Game):
                raise TypeError(f"GumbelSearch: games[{i}] is a {type(g).__name__}, expected a ringrift.Game")
        boards = {g.board for g in games}
        if len(boards) != 1:
            raise ValueError(f"GumbelSearch: all games must be on one board, got {sorted(boards)}")
        if evaluator not in LEAF_EVALUATORS:
            raise ValueError(f"GumbelSearch: unknown evaluator {evaluator!r} (expected one of {', '.join(LEAF_EVALUATORS)})")
        self.board = boards.pop()
        self.games = games
        self.simulations = simulations
        self.top_k = top_k
        self.seed = seed
        self.streams = list(range(len(games))) if streams is None else list(streams)
        self.evaluator = evaluator
        self.c_visit, self.c_scale, self.gumbel_scale = c_visit, c_scale, gumbel_scale
        self.rollout_moves = rollout_moves
        if max_nodes is None:  # room for the simulations (numpy ints too), up to the pool's largest size
            try:
                sims = operator.index(simulations)
            except TypeError:
                sims = 0  # the batch below refuses it with its own message
            max_nodes = min(8193 + 128 * max(0, sims), 1 << 24)
        self.max_nodes = max_nodes
        self.threads = threads
        self._batch(self.evaluator)  # checks every argument now (cheap: untouched node pages are never mapped)

    def _batch(self, leaf: str):
        return _core.SearchBatch(self.board, self.games, self.seed, self.streams, self.simulations, self.top_k,
                                 float(self.c_visit), float(self.c_scale), float(self.gumbel_scale), leaf,
                                 self.rollout_moves, self.max_nodes, self.threads)

    def run(self, evaluate: Evaluate | None = None) -> list[SearchResult]:
        """Search every game from its state at this call; one result per game, in order."""
        batch = self._batch(self.evaluator)  # from the games' states now
        if evaluate is None:
            batch.run_netfree()
        else:
            planes, globals_ = batch.planes, batch.globals
            while True:
                r = batch.select()
                if r == 0:
                    break
                logits, values = evaluate(planes[:r], globals_[:r])
                batch.apply(_checked(logits, "logits", (r, batch.action_space_size)), _checked_values(values, r))
        return _results(batch)


def _checked(a, what: str, shape: tuple) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if a.shape != shape:
        raise ValueError(f"evaluate returned {what} of shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"evaluate returned non-finite {what}")
    return a


def _checked_values(v, r: int) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(v, dtype=np.float32))
    if v.shape not in ((r,), (r, 4)):
        raise ValueError(f"evaluate returned values of shape {v.shape}, expected ({r},) or ({r}, 4)")
    if not np.all(np.isfinite(v)):
        raise ValueError("evaluate returned non-finite values")
    return v


def _results(batch) -> list[SearchResult]:
    res = batch.results()
    out = []
    for i in range(batch.size):
        actions, policy, visits, prior = batch.root_policy(i)
        a = int(res["action"][i])
        out.append(SearchResult(action=a, move=res["move"][i] if a >= 0 else None,
                                root_value=float(res["root_value"][i]), actions=actions, policy=policy,
                                visits=visits, prior=prior, simulations=int(res["simulations"][i]),
                                pool_full=bool(res["pool_full"][i])))
    return out


__all__ = ["LEAF_EVALUATORS", "GumbelSearch", "SearchResult", "uniform_evaluator"]
