"""The search with a trained net at its leaves: policy gumbel:onnx:PATH[:sims=...] in self-play
(stored by the net's id, reproducible per (seed, index), parity-clean, targets beside the games)
and as a ringrift-eval player. A tiny net trained for a few batches is enough: what matters is
that the net's evaluations drive the search, not its strength."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")
pytest.importorskip("onnxruntime", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")

from ringrift.db import GameDB  # noqa: E402
from ringrift.parity.db_check import verify_db  # noqa: E402
from ringrift.search.selfplay import SearchTargets, parse_policy, selfplay_search_batch  # noqa: E402
from ringrift.selfplay.runner import run_selfplay  # noqa: E402
from ringrift.train.evaluate import run_match  # noqa: E402
from ringrift.train.players import PlayerSpecError, make_player  # noqa: E402


def _game(batch, k):
    o = batch["move_offsets"]
    return batch["moves"][o[k]:o[k + 1]]


def test_gumbel_onnx_selfplay_is_reproducible_parity_clean_and_named_by_the_net(tiny_net, tmp_path):
    spec = f"gumbel:onnx:{tiny_net}:sims=8,top_k=4"
    p = parse_policy(spec)
    assert p.evaluator == "onnx" and p.model == str(tiny_net) and p.sims == 8
    assert p.spec.startswith(f"gumbel:onnx:{tiny_net}:sims=8,top_k=4,")
    assert parse_policy(f"gumbel:onnx:{tiny_net}:sims=8:top_k=4") == p  # options as :k=v segments too
    together = selfplay_search_batch("square8", 2, 5, [0, 1, 2], p, max_moves=200)
    alone = selfplay_search_batch("square8", 2, 5, [2], spec, max_moves=200)
    assert np.array_equal(_game(together, 2), _game(alone, 0))
    # the net's evaluations steer the search: the net-free search with the same streams plays other games
    netfree = selfplay_search_batch("square8", 2, 5, [2], "gumbel:zero:sims=8,top_k=4", max_moves=200)
    assert not np.array_equal(_game(netfree, 0), _game(alone, 0))

    path = tmp_path / "games.db"
    with GameDB(path) as db:
        r = run_selfplay(db, board="square8", num_games=3, seed=5, policy=spec, max_moves=200, threads=1)
    assert r.games == 3 and r.policy.startswith("gumbel:onnx:square8-") and str(tiny_net) not in r.policy
    assert verify_db(path, quiet=True)[:2] == (3, 3)
    targets = SearchTargets(path)
    try:
        t = targets.get(board="square8", num_players=2, policy=r.policy, seed=5, game_index=2)
        assert t is not None and t["num_moves"] == len(_game(alone, 0))
        assert np.allclose(t["root_value"], alone["search"]["root_value"])
    finally:
        targets.close()


def test_search_player_in_eval_is_reproducible_whatever_the_batch(tiny_net, tmp_path):
    a = f"gumbel:onnx:{tiny_net}:sims=4,top_k=4"
    moves = []
    for bs in (4, 3):
        with GameDB(tmp_path / f"e{bs}.db") as db:
            r = run_match(a, f"onnx:{tiny_net}", board="square8", games=4, seed=3, threads=1, max_moves=150,
                          batch_size=bs, db=db)
        assert r["games"] == 4 and r["a"].startswith("gumbel:onnx:square8-")
        with GameDB(tmp_path / f"e{bs}.db", create=False) as db:
            moves.append({g.game_index: g.moves.tobytes() for g in db.iter_games()})
        assert verify_db(tmp_path / f"e{bs}.db", quiet=True)[:2] == (4, 4)
    assert moves[0] == moves[1]


def test_bad_gumbel_onnx_specs_are_one_line_errors(tiny_net, tmp_path):
    with pytest.raises(ValueError, match="no model path"):
        parse_policy("gumbel:onnx:")
    with pytest.raises(ValueError, match="bad option"):
        parse_policy(f"gumbel:onnx:{tiny_net}:depth=3")
    with pytest.raises(PlayerSpecError, match="no such ONNX model"):
        run_match(f"gumbel:onnx:{tmp_path}/missing.onnx:sims=2", "random", board="square8", games=2, threads=1)
    player = make_player(f"gumbel:onnx:{tiny_net}:sims=2")
    with pytest.raises(PlayerSpecError, match="cannot search hex8"):
        run_match(f"gumbel:onnx:{tiny_net}:sims=2", "random", board="hex8", games=2, threads=1)
    assert player.name.startswith("gumbel:onnx:square8-")
