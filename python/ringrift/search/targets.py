"""Soft training targets from search self-play: rewrite an exported native NPZ's policy with the
search's improved policy and add its root values (docs/search.md, "Training targets").

    python -m ringrift.search.targets data/training/sq8_train.npz --db games.db --output sq8_soft.npz

``ringrift-export`` now writes the same arrays itself (by default when the DB has search
targets; ``ringrift.export.search_targets``), in both encodings and with ``--symmetries``; this
post-processing step remains for files exported with ``--no-search-targets`` or before.

The native NPZ already stores a policy as flat entries with offsets (docs/npz_format.md); the
exporter writes one entry per sample (the played move). For every sample whose game has search
targets (``search_targets`` table beside the games, ringrift.search.selfplay) this writes the
improved policy over the root's actions instead, and ``search_values`` (N,) float32, the search's
root value for the player to move (NaN where a game has none; ``has_search_target`` (N,) uint8
says which). Samples are matched by ``game_ids`` and ``ply``, so ``--drop-forced`` exports work.
``policy_indices_sym`` would need the positions: an NPZ exported with ``--symmetries`` is refused
(``ringrift-export --symmetries`` writes the targets with their symmetric indices itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import atomic
from ..db import GameDB
from ..engine.errors import RingRiftError
from .selfplay import SearchTargets


class TargetsError(ValueError):
    """An input that cannot be turned into search targets (one line, says what and where)."""


def apply_search_targets(npz_path, db_path, output) -> dict:
    """Write `output` (an NPZ) = `npz_path` with the search's targets; returns counts."""
    npz_path, output = Path(npz_path), Path(output)
    if output.resolve() == npz_path.resolve():
        raise TargetsError(f"{output}: the output must not be the input NPZ")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise TargetsError(f"{npz_path}: not a readable NPZ: {exc}") from None
    for key in ("game_ids", "ply", "policy_offsets", "policy_indices", "policy_values"):
        if key not in arrays:
            raise TargetsError(f"{npz_path}: missing key {key!r} (not a native ringrift NPZ export)")
    if "policy_indices_sym" in arrays:
        raise TargetsError(f"{npz_path}: exported with --symmetries; its per-entry symmetric indices cannot "
                           "follow a new policy here (ringrift-export --symmetries writes the search targets itself)")
    ids, ply = arrays["game_ids"], arrays["ply"]
    n = len(ids)
    identity = {}
    with GameDB(db_path, create=False) as db:
        for row in db.iter_games(ids=sorted({int(i) for i in ids})):
            identity[row.id] = (row.board, row.num_players, row.policy, row.seed, row.game_index, row.move_count)
    targets = SearchTargets(db_path)
    cache = {}
    offs, idx, val = arrays["policy_offsets"], arrays["policy_indices"], arrays["policy_values"]
    new_off = np.zeros(n + 1, dtype=np.int64)
    parts_i, parts_v = [], []
    values = np.full(n, np.nan, dtype=np.float32)
    has = np.zeros(n, dtype=np.uint8)
    try:
        for k in range(n):
            gid, p = int(ids[k]), int(ply[k])
            if gid not in cache:
                ident = identity.get(gid)
                t = None
                if ident is not None:
                    board, players, policy, seed, index, moves = ident
                    t = targets.get(board=board, num_players=players, policy=policy, seed=seed, game_index=index)
                    if t is not None and t["num_moves"] != moves:
                        raise TargetsError(f"{db_path}: game {gid} has {moves} moves but search targets for "
                                           f"{t['num_moves']}")
                cache = {gid: t}  # samples of a game are contiguous: keep one
            t = cache[gid]
            if t is not None and 0 <= p < t["num_moves"]:
                a, b = int(t["policy_offsets"][p]), int(t["policy_offsets"][p + 1])
                parts_i.append(t["policy_actions"][a:b].astype(np.int32))
                parts_v.append(t["policy_probs"][a:b].astype(np.float32))
                values[k] = t["root_value"][p]
                has[k] = 1
            else:  # no search target: the played move, as exported
                a, b = int(offs[k]), int(offs[k + 1])
                parts_i.append(idx[a:b])
                parts_v.append(val[a:b])
            new_off[k + 1] = new_off[k] + len(parts_i[-1])
    finally:
        targets.close()
    arrays["policy_offsets"] = new_off
    arrays["policy_indices"] = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int32)
    arrays["policy_values"] = np.concatenate(parts_v) if parts_v else np.zeros(0, np.float32)
    arrays["search_values"] = values
    arrays["has_search_target"] = has
    if "metadata" in arrays:
        meta = json.loads(str(arrays["metadata"]))
        meta["search_targets"] = {"source_db": str(db_path), "samples_with_targets": int(has.sum())}
        arrays["metadata"] = np.array(json.dumps(meta))
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(output, suffix=".npz") as tmp:  # savez adds .npz to a name without it
        np.savez_compressed(tmp, **arrays)
    return {"samples": n, "with_targets": int(has.sum()), "entries": int(new_off[-1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringrift.search.targets", description=__doc__.splitlines()[0])
    ap.add_argument("npz", help="a native NPZ written by ringrift-export")
    ap.add_argument("--db", required=True, help="the game DB it was exported from (with search targets)")
    ap.add_argument("--output", required=True, help="the NPZ to write")
    a = ap.parse_args(argv)
    try:
        r = apply_search_targets(a.npz, a.db, a.output)
    except (TargetsError, RingRiftError, OSError) as exc:  # one line, exit 2 (bad input)
        print(f"ringrift.search.targets: error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.output}: {r['with_targets']} of {r['samples']} samples with search targets, {r['entries']} policy entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
