"""Self-play with the net-free Gumbel search: policy ``gumbel:EVALUATOR[:key=value,...]``.

    gumbel:heuristic                       value = the heuristic, 32 simulations, top_k 16
    gumbel:rollout:sims=64,top_k=8,temp=0  random playouts, deterministic root choice
    gumbel:onnx:runs/sq8/model.onnx:sims=32  a trained net (docs/training.md) evaluates the leaves

With ``onnx:PATH`` every search step sends the leaves of all trees of the batch to the net in one
ONNX Runtime call (the export's native features, which is what ``ringrift-train`` trains on);
the stored policy names the net by its id (``gumbel:onnx:<board>-<hash>:...``, as ``onnx:PATH``
self-play does), not by its path.

Keys: ``sims`` (simulations per move), ``top_k``, ``temp`` (the Gumbel noise's scale at the root:
1 samples as the paper does, 0 plays the search's best action), ``c_visit``, ``c_scale``,
``rollout`` (playout length of the rollout evaluator). The spec is normalised (every key, fixed
order) and that string is the policy stored with the games, so a game's identity
(board, players, policy, seed, index) names everything that made it.

Game ``i`` of run ``seed``: the search at ply ``k`` draws from stream ``search_stream(i, k)`` of
``seed``, so every game is reproducible on its own, whatever batch it was played in. The batch
has the shape of ``_core.selfplay_batch``'s (``GameDB.insert_batch`` stores it as it is) plus
``search``: per move the root value (for the player to move) and the improved policy over the
root's playable canonical actions (``policy_offsets`` into ``policy_actions`` / ``policy_probs``,
float16) -- the soft policy and value targets. ``SearchTargets`` keeps them in a side table.
"""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from .. import _core
from ..engine import Game
from .gumbel import GumbelSearch
from .spec import (  # noqa: F401  (the spec's names are this module's API too)
    LEAF_EVALUATORS,
    NET,
    PREFIX,
    GumbelPolicy,
    check_policy,
    is_gumbel_policy,
    parse_policy,
)

_MASK64 = (1 << 64) - 1


def search_stream(index: int, ply: int) -> int:
    """The search's random stream for ply `ply` of game `index` (a 64-bit mix of the two)."""
    return ((int(index) * 0x9E3779B97F4A7C15) ^ (int(ply) * 0xD1B54A32D192ED03 + 0x2545F4914F6CDD1D)) & _MASK64


def net_evaluator(path: str, board: str, *, threads: int = 0, device: str = "cpu"):
    """``evaluate(planes, globals)`` of the search from a ``ringrift-train`` ONNX model for `board`
    (one ONNX Runtime call per search step); ValueError (one line) for a model that does not fit."""
    from ..train.onnx_export import read_meta, run, session

    sess = session(path, device, threads)
    meta = read_meta(sess)
    from ..export.actions import action_space_size

    size = action_space_size(board)
    if meta.get("board") != board:
        raise ValueError(f"{path}: a net for board {meta.get('board')!r} cannot search {board}")
    if meta.get("encoding") != "native":
        raise ValueError(f"{path}: a net of encoding {meta.get('encoding')!r}; the search gives 'native' features")
    if meta.get("action_space_size") != size:
        raise ValueError(f"{path}: action space {meta.get('action_space_size')} != {size} of {board}")

    def evaluate(planes, globals_):
        return run(sess, planes, globals_)

    return evaluate


def selfplay_search_batch(board: str, num_players: int, seed: int, indices, policy, *, max_moves: int = 2000,
                          threads: int = 1, evaluate=None) -> dict:
    """Play the given game indices of run `seed` with the search `policy` (a spec or a
    GumbelPolicy), all in lock step (one batched search per ply over the games still going). See
    the module docstring. A ``gumbel:onnx:PATH`` policy opens its net unless ``evaluate`` is given."""
    spec = policy if isinstance(policy, GumbelPolicy) else parse_policy(policy)
    if spec.evaluator == NET and evaluate is None:
        evaluate = net_evaluator(spec.model, board, threads=threads)
    leaf = "heuristic" if spec.evaluator == NET else spec.evaluator
    indices = [int(i) for i in indices]
    games = [Game(board, num_players) for _ in indices]
    moves = [[] for _ in indices]
    hashes = [[] for _ in indices]
    phases = [[] for _ in indices]
    players = [[] for _ in indices]
    values = [[] for _ in indices]
    pol_actions = [[] for _ in indices]
    pol_probs = [[] for _ in indices]
    phase_index = {name: i for i, name in enumerate(_core.PHASES)}
    stopped = set()  # games the search could not continue (no playable move: cannot happen; capped)
    t0 = time.perf_counter()
    while True:
        live = [k for k, g in enumerate(games)
                if k not in stopped and g.status == "active" and g.move_count < max_moves]
        if not live:
            break
        search = GumbelSearch([games[k] for k in live], simulations=spec.sims, top_k=spec.top_k, seed=seed,
                              streams=[search_stream(indices[k], games[k].move_count) for k in live],
                              evaluator=leaf, c_visit=spec.c_visit, c_scale=spec.c_scale,
                              gumbel_scale=spec.temp, rollout_moves=spec.rollout, threads=threads)
        for k, r in zip(live, search.run(evaluate)):
            g = games[k]
            if r.move is None:
                stopped.add(k)
                continue
            values[k].append(r.root_value)
            pol_actions[k].append(r.actions)
            pol_probs[k].append(r.policy)
            g.apply(r.move)
            moves[k].append(r.move.to_record())
            hashes[k].append(int(g.hash(), 16))
            phases[k].append(phase_index[g.phase])
            players[k].append(g.current_player)
    wall = time.perf_counter() - t0
    G = len(indices)
    counts = np.array([len(m) for m in moves], dtype=np.int32)
    offsets = np.zeros(G + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    M = int(offsets[-1])
    flat = b"".join(r for m in moves for r in m)
    pol_counts = np.array([len(a) for per in pol_actions for a in per], dtype=np.int64)
    pol_offsets = np.zeros(M + 1, dtype=np.int64)
    pol_offsets[1:] = np.cumsum(pol_counts)

    def cat(parts, dt):
        return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

    return {
        "game_index": np.array(indices, dtype=np.int64),
        "move_offsets": offsets,
        "move_count": counts,
        "winner": np.array([g.winner or 0 for g in games], dtype=np.uint8),
        "reason": np.array([_core.REASONS.index(g.victory_reason or "") for g in games], dtype=np.uint8),
        "capped": np.array([g.status == "active" for g in games], dtype=np.uint8),
        "seconds": np.full(G, wall / max(G, 1)),
        "moves": np.frombuffer(flat, dtype=np.uint8).reshape(M, 16).copy(),
        "hashes": np.array([h for per in hashes for h in per], dtype=np.uint64),
        "phases": np.array([p for per in phases for p in per], dtype=np.uint8),
        "players": np.array([p for per in players for p in per], dtype=np.uint8),
        "wall_seconds": wall,
        "total_moves": M,
        "threads": threads,
        "cancelled": False,
        "search": {
            "root_value": np.array([v for per in values for v in per], dtype=np.float32),
            "policy_offsets": pol_offsets,
            "policy_actions": cat([a for per in pol_actions for a in per], np.int32),
            "policy_probs": cat([p for per in pol_probs for p in per], np.float16),
        },
    }


# ---- side table of search targets ------------------------------------------------------------

TARGETS_DDL = """
CREATE TABLE IF NOT EXISTS search_targets (
    board TEXT NOT NULL, num_players INTEGER NOT NULL, policy TEXT NOT NULL, seed INTEGER NOT NULL,
    game_index INTEGER NOT NULL,
    num_moves INTEGER NOT NULL,      -- moves of the game (one target per move)
    root_value BLOB NOT NULL,        -- float32 per move: the search's value for the player to move
    policy_offsets BLOB NOT NULL,    -- int32 per move + 1: into the two arrays below
    policy_actions BLOB NOT NULL,    -- int32: canonical action indices (docs/npz_format.md)
    policy_probs BLOB NOT NULL,      -- float16: the improved policy over those actions
    PRIMARY KEY (board, num_players, policy, seed, game_index)
)"""


def store_targets(path, batch: dict, *, board: str, num_players: int, policy: str, seed: int) -> int:
    """Add a search self-play batch's targets to the side table of the DB at `path`."""
    targets = SearchTargets(path)
    try:
        return targets.add_batch(batch, board=board, num_players=num_players, policy=policy, seed=seed)
    finally:
        targets.close()


class SearchTargets:
    """The search's per-move targets of self-play games, beside the games in the same SQLite file
    (its own table, keyed by the game's identity, so the games' tables are untouched)."""

    def __init__(self, path):
        self.path = str(path)
        self.conn = sqlite3.connect(self.path, timeout=60)
        with self.conn:
            self.conn.execute(TARGETS_DDL)

    def close(self) -> None:
        self.conn.close()

    def add_batch(self, batch: dict, *, board: str, num_players: int, policy: str, seed: int) -> int:
        s = batch["search"]
        offs, po = batch["move_offsets"], s["policy_offsets"]
        rows = []
        for g, index in enumerate(batch["game_index"]):
            a, b = int(offs[g]), int(offs[g + 1])
            pa, pb = int(po[a]), int(po[b])
            rows.append((board, int(num_players), policy, int(seed), int(index), b - a,
                         s["root_value"][a:b].astype("<f4").tobytes(),
                         (po[a:b + 1] - pa).astype("<i4").tobytes(),
                         s["policy_actions"][pa:pb].astype("<i4").tobytes(),
                         s["policy_probs"][pa:pb].astype("<f2").tobytes()))
        before = self.conn.total_changes
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO search_targets VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        return self.conn.total_changes - before

    def get(self, *, board: str, num_players: int, policy: str, seed: int, game_index: int) -> dict | None:
        return fetch_targets(self.conn, board=board, num_players=num_players, policy=policy, seed=seed,
                             game_index=game_index)


def fetch_targets(conn: sqlite3.Connection, *, board: str, num_players: int, policy: str, seed: int,
                  game_index: int) -> dict | None:
    """One game's targets from the side table through any connection (a read-only one too), or None."""
    row = conn.execute(
        "SELECT num_moves, root_value, policy_offsets, policy_actions, policy_probs FROM search_targets "
        "WHERE board = ? AND num_players = ? AND policy = ? AND seed = ? AND game_index = ?",
        (board, int(num_players), policy, int(seed), int(game_index))).fetchone()
    if row is None:
        return None
    n, v, o, a, p = row
    return {"num_moves": n, "root_value": np.frombuffer(v, "<f4"), "policy_offsets": np.frombuffer(o, "<i4"),
            "policy_actions": np.frombuffer(a, "<i4"), "policy_probs": np.frombuffer(p, "<f2")}
