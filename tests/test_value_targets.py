"""Value targets from the search (docs/search.md, "Value targets"): ``--value-target
outcome|search|mix:F`` mixes the search's root value (``search_values`` of
``python -m ringrift.search.targets``) into the value head's target, and the loop trains with it."""

from __future__ import annotations

import numpy as np
import pytest

from ringrift.train.data import BatchStream, DataError, describe, make_batch, parse_value_target, split_files

POLICY = "gumbel:heuristic:sims=8,top_k=4"


@pytest.mark.parametrize("spec,weight", [("outcome", 0.0), ("search", 1.0), ("mix:0.25", 0.25), ("mix:0", 0.0),
                                         ("mix:1", 1.0)])
def test_value_target_specs(spec, weight):
    assert parse_value_target(spec) == weight


@pytest.mark.parametrize("spec", ["", "mix", "mix:", "mix:1.5", "mix:-0.1", "mix:nan", "mix:x", "searched"])
def test_bad_value_target_specs_are_one_line_errors(spec):
    with pytest.raises(DataError, match="expected outcome, search or mix:F") as e:
        parse_value_target(spec)
    assert "\n" not in str(e.value)


def _shard(num_players, values_mp, movers, search):
    n = len(movers)
    return {"features": np.zeros((n, 1, 2, 2), np.float32), "globals": np.zeros((n, 1), np.float32),
            "values_mp": np.asarray(values_mp, np.float32), "movers": np.asarray(movers, np.int32),
            "num_players": np.full(n, num_players, np.int32), "policy_offsets": np.arange(n + 1, dtype=np.int64),
            "policy_indices": np.zeros(n, np.int32), "policy_values": np.ones(n, np.float32),
            "search_values": np.asarray(search, np.float32)}


def test_mixed_targets_per_slot_two_and_three_players():
    # 2p: sample 0 mover seat 1 (outcome +1), sample 1 mover seat 2 (outcome for seat 2: -1), sample 2 no search value
    d = _shard(2, [[1, -1, 0, 0], [1, -1, 0, 0], [-1, 1, 0, 0]], [1, 2, 1], [0.2, 0.6, np.nan])
    rows = np.arange(3)
    b = make_batch(d, rows, "square8", None, 0.5)
    np.testing.assert_allclose(b.value_rel, [[0.6, -0.6, 0, 0], [-0.2, 0.2, 0, 0], [-1, 1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(make_batch(d, rows, "square8", None, 1.0).value_rel[:2],
                               [[0.2, -0.2, 0, 0], [0.6, -0.6, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(make_batch(d, rows, "square8", None, 0.0).value_rel,
                               [[1, -1, 0, 0], [-1, 1, 0, 0], [-1, 1, 0, 0]], atol=1e-6)
    # 3p, mover seat 3, search value 0.8 for it: the two others get -0.4 each, slot 3 stays masked
    d3 = _shard(3, [[1, -1, -1, 0]], [3], [0.8])
    np.testing.assert_allclose(make_batch(d3, np.arange(1), "square8", None, 0.5).value_rel,
                               [[0.5 * -1 + 0.5 * 0.8, 0.5 * 1 - 0.2, 0.5 * -1 - 0.2, 0]], atol=1e-6)


@pytest.fixture(scope="module")
def soft_export(tmp_path_factory):
    """A few search self-play games, exported, with the search's targets (soft.npz) beside the plain export."""
    from ringrift.db import GameDB
    from ringrift.export.exporter import export_db
    from ringrift.search.targets import apply_search_targets
    from ringrift.selfplay.runner import run_selfplay

    d = tmp_path_factory.mktemp("value_targets")
    with GameDB(d / "games.db") as db:
        run_selfplay(db, board="square8", num_games=4, seed=2, policy=POLICY, max_moves=300, threads=1)
    export_db(d / "games.db", output_dir=d / "plain", board="square8", include_unchecked=True, drop_forced=True,
              split_ratio=1.0, search_targets=False)  # the played moves only
    plain = d / "plain" / "canonical_square8.npz"
    apply_search_targets(plain, d / "games.db", d / "soft.npz")
    return plain, d / "soft.npz"


def test_stream_uses_the_search_values_of_the_export(soft_export):
    _, soft = soft_export
    info, shards = describe(split_files(soft)[0])
    z = np.load(soft)
    sv, has = z["search_values"], z["has_search_target"].astype(bool)
    assert has.all() and np.isfinite(sv).all() and np.abs(sv).max() <= 1 and np.abs(sv).max() > 0
    plain = [b.value_rel for _, b in BatchStream(shards, info.board, 64, seed=0, shuffle=False).epoch(0)]
    for weight in (0.5, 1.0):
        mixed = [b.value_rel for _, b in BatchStream(shards, info.board, 64, seed=0, shuffle=False,
                                                     search_weight=weight).epoch(0)]
        got, outcome = np.concatenate(mixed), np.concatenate(plain)
        np.testing.assert_allclose(got[:, 0], (1 - weight) * outcome[:, 0] + weight * sv, atol=1e-6)
        np.testing.assert_allclose(got[:, 1], -got[:, 0], atol=1e-6)  # 2 players: zero-sum


def test_training_follows_the_search_value_target(soft_export, tmp_path):
    torch = pytest.importorskip("torch", reason="the train extra is not installed: pip install torch '.[train]'")
    from ringrift.train.checkpoint import load
    from ringrift.train.model import NetConfig, build_model
    from ringrift.train.trainer import TrainOptions, train

    plain, soft = soft_export
    # every search value set to 0.3: a net trained on "search" must learn that constant, one on "outcome" not
    z = dict(np.load(soft))
    z["search_values"] = np.full_like(z["search_values"], 0.3)
    const = tmp_path / "const.npz"
    np.savez(const, **z)
    means = {}
    for target in ("search", "outcome"):
        out = tmp_path / target
        train(TrainOptions(data=str(const), out=str(out), width=8, depth=1, batch_size=64, lr=1e-2, warmup=2,
                           epochs=60, max_batches=60, threads=1, augment=False, onnx=False, plot=False,
                           value_target=target, log=lambda s: None))
        ck = load(out / "last.pt")
        assert ck["meta"]["hparams"]["value_target"] == target
        model = build_model(NetConfig(**ck["meta"]["net"]))
        model.load_state_dict(ck["model"])
        model.eval()
        with torch.no_grad():
            _, v = model(torch.from_numpy(z["features"][:256].astype(np.float32)),
                         torch.from_numpy(z["globals"][:256].astype(np.float32)))
        means[target] = float(v[:, 0].mean())
    assert abs(means["search"] - 0.3) < 0.1, means
    assert abs(means["outcome"] - 0.3) > abs(means["search"] - 0.3), means
    # an export without search values cannot train on them: one line naming the file
    with pytest.raises(DataError, match="no search_values") as e:
        train(TrainOptions(data=str(plain), out=str(tmp_path / "x"), width=8, depth=1, max_batches=1, threads=1,
                           augment=False, onnx=False, value_target="mix:0.5", log=lambda s: None))
    assert "canonical_square8" in str(e.value) and "\n" not in str(e.value)


def test_train_cli_refuses_a_bad_value_target(soft_export, tmp_path, capsys):
    pytest.importorskip("torch", reason="the train extra is not installed: pip install torch '.[train]'")
    from ringrift.train.cli import main

    _, soft = soft_export
    assert main(["--data", str(soft), "--out", str(tmp_path / "r"), "--value-target", "mix:2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mix:2" in err[0] and "expected outcome, search or mix:F" in err[0]
