"""The search's targets in the export (docs/search.md, "Training targets").

Search self-play (``--policy gumbel:...``) stores per move the search's improved policy over the
root's playable canonical actions and its root value, in the ``search_targets`` table beside the
games (``ringrift.search.selfplay.SearchTargets``). When the exported games have them, both
encodings write that policy instead of the played move:

* native: a sample's ``policy_indices`` / ``policy_values`` are the improved policy's actions and
  probabilities (``policy_offsets`` says which entries are whose), plus ``search_values`` (the
  root value for the player to move, NaN without a target) and ``has_search_target``; with
  ``--symmetries`` each entry's action under every symmetry (``policy_indices_sym``, per entry);
* upstream: each action becomes upstream's policy index of the move it names in the state
  before the move; actions upstream cannot encode are dropped, entries that share an index are
  merged, and the rest renormalised. Upstream's format has no key for a search value.

A game without targets keeps the played move, one entry of probability 1.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from .. import _core
from ..engine import Game
from ..engine.arg_errors import raw
from ..engine.errors import RingRiftError
from ..search.selfplay import fetch_targets
from .actions import action_space_size

# Called once per move or per sample with arguments built here, which always fit: the compiled
# functions themselves, without the one-line-error wrapper (about 0.15 µs a call).
_move_from_record = raw(_core.move_from_record)
_action_policy_indices = raw(_core.upstream.action_policy_indices)
_canonical_action_index = raw(_core.export.canonical_action_index)


class SearchTargetsError(RingRiftError):
    """Search targets that do not fit their game (one line, names the game)."""


def targets_present(conn: sqlite3.Connection, board: str | None, players: int | None) -> bool:
    """Whether the DB holds search targets for the board (and player count)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'search_targets'").fetchone() is None:
        return False
    from .exporter import _scope  # here: the exporter imports this module

    clauses, params = _scope(board, players)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return conn.execute(f"SELECT 1 FROM search_targets{where} LIMIT 1", params).fetchone() is not None


def game_targets(conn: sqlite3.Connection, row, path) -> dict | None:
    """The targets of game ``row`` (a GameRow), or None; SearchTargetsError when they are not one per move."""
    try:
        t = fetch_targets(conn, board=row.board, num_players=row.num_players, policy=row.policy, seed=row.seed,
                          game_index=row.game_index)
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a blob that is not whole numbers
        raise SearchTargetsError(f"{path}: reading the search targets of game {row.id} failed: {exc}") from None
    if t is None:
        return None
    if t["num_moves"] != row.move_count:
        raise SearchTargetsError(f"{path}: game {row.id} has {row.move_count} moves but search targets for "
                                 f"{t['num_moves']}")
    po, n_entries = t["policy_offsets"], len(t["policy_actions"])
    whole = (len(t["root_value"]) == row.move_count and len(po) == row.move_count + 1 and po[0] == 0
             and po[-1] == n_entries == len(t["policy_probs"]) and bool(np.all(np.diff(po) >= 0))
             and bool(np.all(t["policy_probs"] >= 0)))  # False for NaN too
    if not whole or (n_entries and not 0 <= int(t["policy_actions"].min()) <= int(t["policy_actions"].max())
                     < action_space_size(row.board)):
        raise SearchTargetsError(f"{path}: game {row.id}: its search targets are damaged (offsets, lengths, "
                                 f"probabilities or action indices out of range)")
    return t


def _entries(t: dict, ply: np.ndarray):
    """(counts, actions int32, probs float32) of the targets at the given plies."""
    po = t["policy_offsets"].astype(np.int64)
    starts, ends = po[ply], po[ply + 1]
    counts = ends - starts
    total = int(counts.sum())
    first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)  # each sample's first entry
    pick = np.repeat(starts - first, counts) + np.arange(total, dtype=np.int64)
    return counts, t["policy_actions"][pick].astype(np.int32), t["policy_probs"][pick].astype(np.float32)


def _replay(row, plies, visit) -> None:
    """Replay game ``row`` and call ``visit(game, k)`` in the state before move ``plies[k]``
    (ascending)."""
    game = Game(row.board, row.num_players)
    k = 0
    for j in range(int(plies[-1]) + 1 if len(plies) else 0):
        if plies[k] == j:
            visit(game, k)
            k += 1
            if k == len(plies):
                return
        game._apply_unchecked(_move_from_record(row.moves[j].tobytes()))


def native_segment(row, t: dict | None, ply: np.ndarray, played: np.ndarray, played_sym, path) -> dict:
    """One game's samples (plies ``ply``, played actions ``played``, their ``played_sym`` rows or
    None) in the native encoding: ``counts``, ``indices``, ``values``, ``sym`` (or None),
    ``search_values``, ``has``."""
    n = len(ply)
    if t is None or n == 0:
        return {"counts": np.ones(n, np.int64), "indices": played.astype(np.int32, copy=False),
                "values": np.ones(n, np.float32), "sym": played_sym,
                "search_values": np.full(n, np.nan, np.float32), "has": np.zeros(n, np.uint8)}
    counts, actions, probs = _entries(t, ply)
    sym = None
    if played_sym is not None:
        parts = [None] * n
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])

        def visit(game, k):
            try:
                parts[k] = _core.export.symmetric_action_indices(game, actions[bounds[k]:bounds[k + 1]])
            except ValueError as exc:
                raise SearchTargetsError(f"{path}: game {row.id}, move {int(ply[k])}: search target: {exc}") from None

        _replay(row, ply, visit)
        sym = np.concatenate(parts).astype(np.int32, copy=False)
    return {"counts": counts, "indices": actions, "values": probs, "sym": sym,
            "search_values": t["root_value"][ply].astype(np.float32), "has": np.ones(n, np.uint8)}


def upstream_segment(row, t: dict | None, ply: np.ndarray, played: np.ndarray, path) -> dict:
    """One game's samples in upstream's encoding (``ply``: each sample's move number, ``played``:
    upstream's index of the played move): ``counts``, ``indices`` (int32), ``values`` (float32),
    ``has``. Each target entry maps to upstream's index of the move it names; entries without
    one are dropped, entries sharing one merged (probabilities added, ascending index), the rest
    renormalised (a target left with no probability falls back to the played move). The entry
    of the played move's canonical action gets the played move's index."""
    n = len(ply)
    if t is None or n == 0:
        return {"counts": np.ones(n, np.int64), "indices": played.astype(np.int32, copy=False),
                "values": np.ones(n, np.float32), "has": np.zeros(n, np.uint8)}
    counts, actions, probs = _entries(t, ply)
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    idx_parts, val_parts = [None] * n, [None] * n
    has = np.zeros(n, np.uint8)

    def visit(game, k):
        a, b = bounds[k], bounds[k + 1]
        try:
            up = _action_policy_indices(game, actions[a:b])
        except ValueError as exc:
            raise SearchTargetsError(f"{path}: game {row.id}, move {int(ply[k])}: search target: {exc}") from None
        # The played move stands for its canonical action (which may merge moves that upstream
        # tells apart, e.g. an exact-length process_line and its collapse-all choose_line_option).
        move = _move_from_record(row.moves[int(ply[k])].tobytes())
        up[actions[a:b] == _canonical_action_index(game, move)] = played[k]
        p = probs[a:b].astype(np.float64)
        keep = up >= 0
        uniq, inverse = np.unique(up[keep], return_inverse=True)
        mass = np.zeros(len(uniq), dtype=np.float64)
        np.add.at(mass, inverse, p[keep])
        total = mass.sum()
        if len(uniq) and total > 0:
            idx_parts[k], val_parts[k] = uniq.astype(np.int32), (mass / total).astype(np.float32)
            has[k] = 1
        else:
            idx_parts[k], val_parts[k] = played[k:k + 1].astype(np.int32), np.ones(1, np.float32)

    _replay(row, ply, visit)
    return {"counts": np.array([len(x) for x in idx_parts], dtype=np.int64), "indices": np.concatenate(idx_parts),
            "values": np.concatenate(val_parts), "has": has}


def join(segments: list[dict], keys) -> dict:
    """The segments of several games, one after another."""
    out = {}
    for key in keys:
        parts = [s[key] for s in segments]
        out[key] = np.concatenate(parts) if parts else None
    return out


__all__ = ["SearchTargetsError", "game_targets", "join", "native_segment", "targets_present", "upstream_segment"]
