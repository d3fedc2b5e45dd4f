"""Self-play with the net-free Gumbel search (policy gumbel:..., ringrift.search.selfplay):
reproducible per (seed, index), stored like any self-play game (parity self-check passes), and
the search's per-move targets beside the games."""

from __future__ import annotations

import numpy as np
import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.engine import Game
from ringrift.parity.db_check import verify_db
from ringrift.search.selfplay import SearchTargets, parse_policy, selfplay_search_batch
from ringrift.selfplay import run_selfplay

POLICY = "gumbel:heuristic:sims=8,top_k=4"


def game_slice(batch, k):
    a, b = batch["move_offsets"][k], batch["move_offsets"][k + 1]
    return batch["moves"][a:b], batch["hashes"][a:b]


def test_games_are_reproducible_per_seed_and_index_whatever_the_batch():
    name = parse_policy(POLICY).name
    together = selfplay_search_batch("hex8", 2, 9, [0, 1, 2], name, max_moves=120)
    alone = selfplay_search_batch("hex8", 2, 9, [2], name, max_moves=120)
    for x, y in zip(game_slice(together, 2), game_slice(alone, 0)):
        assert np.array_equal(x, y)
    other_seed = selfplay_search_batch("hex8", 2, 10, [2], name, max_moves=120)
    assert not np.array_equal(game_slice(other_seed, 0)[0], game_slice(alone, 0)[0])


def test_search_selfplay_stores_games_that_replay_and_targets_beside_them(tmp_path):
    path = tmp_path / "games.db"
    with GameDB(path) as db:
        first = run_selfplay(db, board="square8", num_games=3, seed=4, policy=POLICY, max_moves=300, threads=1)
        again = run_selfplay(db, board="square8", num_games=3, seed=4, policy=POLICY, max_moves=300, threads=1)
    name = parse_policy(POLICY).name
    assert first.policy == name and first.games == 3 and again.already_present == 3
    assert verify_db(path, quiet=True)[:2] == (3, 3)
    targets = SearchTargets(path)
    try:
        with GameDB(path, create=False) as db:
            rows = list(db.iter_games())
        for row in rows:
            t = targets.get(board="square8", num_players=2, policy=name, seed=4, game_index=row.game_index)
            assert t is not None and t["num_moves"] == row.move_count == len(t["root_value"])
            assert np.all(np.abs(t["root_value"]) <= 1)
            offs = t["policy_offsets"]
            assert len(offs) == row.move_count + 1 and offs[0] == 0 and offs[-1] == len(t["policy_actions"])
            game = Game("square8", 2)
            moves = [_core.move_from_record(row.moves[i].tobytes()) for i in range(row.move_count)]
            for ply, m in enumerate(moves):
                acts = t["policy_actions"][offs[ply]:offs[ply + 1]]
                probs = t["policy_probs"][offs[ply]:offs[ply + 1]].astype(np.float32)
                assert abs(float(probs.sum()) - 1) < 5e-3 and np.all(probs >= 0)
                if ply % 7 == 0:  # the targets name this state's actions, the played one among them
                    legal = set(_core.export.legal_action_indices(game).tolist())
                    assert set(acts.tolist()) <= legal
                    assert _core.export.canonical_action_index(game, m) in set(acts.tolist())
                game.apply(m)
        n = targets.conn.execute("SELECT COUNT(*) FROM search_targets").fetchone()[0]
        assert n == 3  # the second run added nothing
    finally:
        targets.close()


@pytest.mark.parametrize("spec, why", [
    ("gumbel:oracle", "unknown evaluator"),
    ("gumbel:rollout:sims=0", "sims"),
    ("gumbel:rollout:top_k=999", "top_k"),
    ("gumbel:heuristic:depth=3", "bad option"),
    ("gumbel:heuristic:sims=ten", "must be a number"),
    ("gumbel:heuristic:temp=-1", "temp"),
    ("gumbel:heuristic:sims=8,sims=16", "sims is given twice"),  # silently 16 before
    ("gumbel:heuristic:sims=1_0", "must be a number"),  # int() took these three
    ("gumbel:heuristic:sims=\u0668", "must be a number"),
    ("gumbel:heuristic:sims= 8", "must be a number"),
    ("gumbel:heuristic:c_scale=1e37", "c_scale must be a number 0..1e6"),  # NaN targets were stored
])
def test_bad_policy_specs_say_what_is_wrong(spec, why):
    with pytest.raises(ValueError, match=why):
        parse_policy(spec)


def test_search_selfplay_refuses_the_gpu(tmp_path):
    with GameDB(tmp_path / "g.db") as db, pytest.raises(ValueError, match="CPU"):
        run_selfplay(db, board="square8", num_games=1, policy=POLICY, device="cuda")


def test_exported_samples_get_the_search_targets_as_soft_policies(tmp_path):
    from ringrift.export.exporter import export_db
    from ringrift.search.targets import TargetsError, apply_search_targets

    path = tmp_path / "games.db"
    with GameDB(path) as db:
        run_selfplay(db, board="square8", num_games=2, seed=1, policy=POLICY, max_moves=200, threads=1)
        run_selfplay(db, board="square8", num_games=1, seed=1, policy="random", max_moves=200, threads=1)
    export_db(path, output_dir=tmp_path / "npz", board="square8", include_unchecked=True, split_ratio=1.0,
              search_targets=False)  # the played moves only, as before ringrift-export wrote the targets
    src = tmp_path / "npz" / "canonical_square8.npz"
    out = tmp_path / "soft.npz"
    counts = apply_search_targets(src, path, out)
    z, orig = np.load(out), np.load(src)
    o, has = z["policy_offsets"], z["has_search_target"].astype(bool)
    searched = {r.id for r in GameDB(path, create=False).iter_games() if r.policy.startswith("gumbel:")}
    assert np.array_equal(has, np.isin(z["game_ids"], list(searched))) and 0 < has.sum() < len(has)
    assert counts["with_targets"] == int(has.sum())
    for k in range(len(has)):
        entries = z["policy_indices"][o[k]:o[k + 1]]
        probs = z["policy_values"][o[k]:o[k + 1]]
        assert orig["policy_indices"][k] in entries  # the played move is one of the search's actions
        assert abs(float(probs.sum()) - 1) < 5e-3
        assert np.isnan(z["search_values"][k]) != has[k]
        if not has[k]:
            assert entries.tolist() == [orig["policy_indices"][k]]
    assert np.array_equal(z["features"], orig["features"])
    export_db(path, output_dir=tmp_path / "sym", board="square8", include_unchecked=True, split_ratio=1.0,
              with_symmetries=True)
    with pytest.raises(TargetsError, match="symmetries"):
        apply_search_targets(tmp_path / "sym" / "canonical_square8.npz", path, tmp_path / "x.npz")


def test_merging_databases_brings_the_search_targets_along(tmp_path):
    from ringrift.pipeline.worker import selfplay_range

    parts = []
    for k, indices in enumerate(([0, 1], [1, 2])):
        parts.append(tmp_path / f"part{k}.db")
        with GameDB(parts[-1]) as db:
            selfplay_range(db, board="hex8", num_players=2, seed=6, policy=POLICY, indices=indices, threads=1,
                           max_moves=150)
    with GameDB(tmp_path / "all.db") as db:
        assert db.merge_from(parts[0]) == 2 and db.merge_from(parts[1]) == 1
    name = parse_policy(POLICY).name
    targets = SearchTargets(tmp_path / "all.db")
    try:
        got = [targets.get(board="hex8", num_players=2, policy=name, seed=6, game_index=i) for i in range(3)]
    finally:
        targets.close()
    with GameDB(tmp_path / "all.db", create=False) as db:
        moves = {r.game_index: r.move_count for r in db.iter_games()}
    assert all(t is not None and t["num_moves"] == moves[i] for i, t in enumerate(got))
