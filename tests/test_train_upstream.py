"""ringrift-train on upstream's encoding: a tiny net on a tiny ``--encoding upstream`` export and on a
golden file written by upstream's own exporter (loss falls, resume across streamed blocks, ONNX ==
torch, one-line refusals), and an upstream-encoded net playing with exactly the planes the export
writes for the same game.

Needs the train extra (torch, onnx, onnxruntime); CI installs it (README test command)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")
pytest.importorskip("onnxruntime", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")

from ringrift.db import GameDB  # noqa: E402
from ringrift.export import export_db, export_upstream  # noqa: E402
from ringrift.selfplay.runner import run_selfplay  # noqa: E402
from ringrift.train import checkpoint as ckpt  # noqa: E402
from ringrift.train.data import BatchStream, describe, plan_upstream, split_files  # noqa: E402
from ringrift.train.trainer import losses, train  # noqa: E402
from ringrift.train.upstream_data import game_starts  # noqa: E402
from test_train import _opts  # noqa: E402  (the same tiny net and options as the native tests)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-golden"


def golden_file(name: str) -> Path:
    path = GOLDEN / name
    if not path.is_file():
        pytest.skip(f"golden file not found: {path} (expected ../shared/upstream-golden beside the repository)")
    return path


@pytest.fixture(scope="module")
def games_db(tmp_path_factory):
    d = tmp_path_factory.mktemp("up_games")
    with GameDB(d / "games.db") as db:
        run_selfplay(db, board="square8", num_games=16, policy="heuristic", seed=11, threads=1)
    return d / "games.db"


@pytest.fixture(scope="module")
def up_export(games_db):
    """The 16 games in upstream's encoding, with the export's own train/val split."""
    out = games_db.parent / "up.npz"
    export_upstream(games_db, out, include_unchecked=True, split_ratio=0.75, seed=1, threads=1)
    return out


def _fixed_batch(data):
    train_files, _ = split_files(data)
    info, shards = describe(train_files)
    shards, _, _ = plan_upstream(info, shards, [], val_fraction=0.0, split_seed=0, block_mb=512)
    return next(BatchStream(shards, info.board, 256, seed=0, shuffle=False).epoch(0))[1]


def _model_of(run_dir):
    from ringrift.train.model import NetConfig, build_model

    ck = ckpt.load(Path(run_dir) / "last.pt")
    model = build_model(NetConfig(**ck["meta"]["net"]))
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def test_loss_falls_on_our_upstream_export_and_the_metadata_names_the_encoding(up_export, tmp_path):
    from ringrift.train.model import NetConfig, build_model

    b = _fixed_batch(up_export)
    assert b.features.shape[1:] == (56, 8, 8) and b.globals.shape[1] == 20
    # 2 players: the value target is upstream's `values` for the mover and its opposite
    assert set(np.unique(b.value_rel[:, 0])) <= {-1.0, 1.0} and np.array_equal(b.value_rel[:, 1], -b.value_rel[:, 0])
    torch.manual_seed(0)
    with torch.no_grad():
        before = float(losses(build_model(NetConfig("square8", 8, 1, planes=56, globals=20,
                                                    encoding="upstream")).eval(), b)[0])
    notes = []
    train(_opts(up_export, tmp_path / "run", epochs=4, log=notes.append))
    assert any("upstream's encoding: training without augmentation" in n for n in notes)
    model, ck = _model_of(tmp_path / "run")
    with torch.no_grad():
        after = float(losses(model, b)[0])
    assert after < before - 1.0, (before, after)
    hist = ck["history"]
    assert len(hist) == 4 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(0 <= hist[-1][k] <= 1 for k in ("val_top1", "val_top5", "val_value_sign_acc"))
    meta = ck["meta"]
    assert (meta["encoding"], meta["board"], meta["encoder_type"], meta["feature_version"], meta["history_length"],
            meta["policy_size"], meta["in_channels"]) == ("upstream", "square8", "square_v2", 2, 3, 7000, 56)
    assert meta["action_space_size"] == 7000 and meta["feature_shape"] == [56, 8, 8] and meta["players"] == [2]
    assert meta["hparams"]["augment"] is False and meta["net"]["encoding"] == "upstream"
    assert set(meta["data_hashes"]) == {"up.npz", "up_val.npz"}


def test_golden_file_splits_by_game_streams_in_blocks_and_resumes_exactly(tmp_path):
    """Upstream's own exporter's file: no NAME_val.npz, so a seeded split by game; read in blocks of
    about 160 samples; a run stopped twice ends where one that never stopped does."""
    import json

    data = golden_file("square8_3p.upstream.npz")
    sidecar = json.loads(golden_file("square8_3p.upstream.games.json").read_text())
    games = sidecar["games"] if isinstance(sidecar, dict) else sidecar
    with np.load(data) as d:
        assert np.array_equal(game_starts(d["move_numbers"], d["total_game_moves"]),
                              [g["first_sample"] for g in games])
    info, shards = describe([data])
    assert info.encoding == "upstream" and info.players == [3]
    tr, va, note = plan_upstream(info, shards, None, val_fraction=0.25, split_seed=7, block_mb=2.2)
    assert len(tr) > 10 and "6 of 24 games" in note
    val_rows = np.concatenate([s.rows for s in va])
    starts = np.array([g["first_sample"] for g in games] + [sum(g["num_samples"] for g in games)])
    whole = [set(range(a, b)) <= set(val_rows.tolist()) or not set(range(a, b)) & set(val_rows.tolist())
             for a, b in zip(starts[:-1], starts[1:])]
    assert all(whole)  # every game is wholly in one split
    assert sum(s.samples for s in tr) + len(val_rows) == info_samples(data)
    # 3 players: the mover's slot-0 target is upstream's `values`
    s = BatchStream(tr, info.board, 64, seed=1, shuffle=True)
    b = next(s.epoch(0))[1]
    assert set(np.round(np.unique(b.value_rel[:, 0]), 4)) <= {-1.0, 0.0, 1.0}
    kw = dict(val_fraction=0.25, split_seed=7, block_mb=2.2, max_val_batches=1)
    train(_opts(data, tmp_path / "a", epochs=2, max_batches=9, **kw))
    train(_opts(data, tmp_path / "a", epochs=2, max_batches=31, **kw))
    train(_opts(data, tmp_path / "a", epochs=2, **kw))
    train(_opts(data, tmp_path / "b", epochs=2, **kw))
    a, b = ckpt.load(tmp_path / "a" / "last.pt"), ckpt.load(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for k in b["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def info_samples(path):
    with np.load(path) as d:
        return int(d["values"].shape[0])


def test_onnx_of_an_upstream_net_matches_torch_and_carries_the_version_facts(up_export, tmp_path):
    from ringrift.train.onnx_export import read_meta, run, session

    res = train(_opts(up_export, tmp_path / "run", max_batches=5, onnx=True))
    model, ck = _model_of(tmp_path / "run")
    b = _fixed_batch(up_export)
    with torch.no_grad():
        p_t, v_t = model(torch.from_numpy(b.features), torch.from_numpy(b.globals))
    sess = session(Path(res["files"]["onnx"]))
    p_o, v_o = run(sess, b.features, b.globals)
    assert p_o.shape == (len(b.features), 7000) and v_o.shape == (len(b.features), 4)
    np.testing.assert_allclose(p_o, p_t.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(v_o, v_t.numpy(), rtol=1e-4, atol=1e-5)
    meta = read_meta(sess)
    for k in ("encoding", "encoder_type", "feature_version", "history_length", "policy_size", "in_channels", "board"):
        assert meta[k] == ck["meta"][k], k
    assert meta["encoding"] == "upstream"


def _cli(args, capsys):
    from ringrift.train.cli import main as train_main

    rc = train_main([*args, "--quiet", "--width", "8", "--depth", "1", "--threads", "1", "--max-batches", "1",
                     "--no-onnx"])
    return rc, capsys.readouterr().err


def test_refusals_are_one_line(games_db, up_export, tmp_path, capsys):
    native = games_db.parent / "native.npz"
    export_db(games_db, native, include_unchecked=True, split_ratio=1.0, threads=1)
    with GameDB(tmp_path / "hex.db") as db:
        run_selfplay(db, board="hex8", num_games=2, policy="heuristic", seed=5, threads=1)
    hex8 = tmp_path / "hex8.npz"
    export_upstream(tmp_path / "hex.db", hex8, include_unchecked=True, threads=1)
    # a native checkpoint resumed on upstream data, and the other way round: one line naming both
    assert _cli(["--data", str(native), "--out", str(tmp_path / "n")], capsys)[0] == 0
    rc, err = _cli(["--data", str(up_export), "--out", str(tmp_path / "n")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "encoding 'native'" in err and "encoding 'upstream'" in err, err
    assert _cli(["--data", str(up_export), "--out", str(tmp_path / "u")], capsys)[0] == 0
    rc, err = _cli(["--data", str(native), "--out", str(tmp_path / "u")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "encoding 'upstream'" in err and "encoding 'native'" in err, err
    # an upstream checkpoint of another board
    rc, err = _cli(["--data", str(hex8), "--out", str(tmp_path / "u")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "'square8'" in err and "'hex8'" in err, err
    # mixed shards: native + upstream, and two boards, name the odd file
    mix = tmp_path / "mix"
    mix.mkdir()
    (mix / "d_part000.npz").write_bytes(up_export.read_bytes())
    (mix / "d_part001.npz").write_bytes(native.read_bytes())
    rc, err = _cli(["--data", str(mix / "d.npz"), "--out", str(tmp_path / "m")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "d_part001.npz: encoding 'native'" in err, err
    (mix / "d_part001.npz").write_bytes(hex8.read_bytes())
    rc, err = _cli(["--data", str(mix / "d.npz"), "--out", str(tmp_path / "m")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "d_part001.npz: board 'hex8'" in err, err
    # upstream's pickled object arrays: never unpickled, one line saying how to get a pickle-free file
    pickled = tmp_path / "obj.npz"
    export_upstream(games_db, pickled, include_unchecked=True, object_arrays=True, threads=1)
    rc, err = _cli(["--data", str(pickled), "--out", str(tmp_path / "p")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "pickled object arrays" in err and "--encoding upstream" in err, err
    # a file in neither encoding
    other = tmp_path / "other.npz"
    np.savez(other, features=np.zeros((1, 2, 8, 8), np.float32), values=np.zeros(1, np.float32))
    rc, err = _cli(["--data", str(other), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "neither the native NPZ format nor upstream's encoding" in err, err


@pytest.fixture(scope="module")
def up_model(up_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("up_model")
    res = train(_opts(up_export, out, max_batches=20, onnx=True))
    return Path(res["files"]["onnx"])


@pytest.mark.parametrize("board,players_,games,golden", [("square8", 2, 6, None), ("hex8", 2, 3, "hex8_2p"),
                                                         ("square8", 3, 3, "square8_3p")])
def test_an_upstream_net_plays_on_exactly_the_planes_the_export_writes(board, players_, games, golden, up_model,
                                                                        tmp_path, monkeypatch):
    """The net (seat A, temperature 0) against the heuristic: every input it is given equals the
    upstream export's sample for that game and move (the history spans every player's moves), and
    the action it takes has the policy index the export writes for the move. Square8 2p with a
    net of our export; hex8 2p and square8 3p with nets of upstream's golden files."""
    from ringrift.train import players, upstream_play
    from ringrift.train.evaluate import run_match

    if golden:
        res = train(_opts(golden_file(f"{golden}.upstream.npz"), tmp_path / "net", max_batches=2, onnx=True,
                          max_val_batches=1))
        up_model = Path(res["files"]["onnx"])

    game_of, fed = {}, []
    start, inputs, legal_logits = players.NetPlayer.start, upstream_play.UpstreamInputs.inputs, \
        upstream_play.UpstreamInputs.legal_logits

    def spy_start(self, slots, games):
        game_of.update(zip(slots.tolist(), games.tolist()))
        return start(self, slots, games)

    def spy_inputs(self, slots):
        f, g = inputs(self, slots)
        moves = self.env.info["move_count"][slots]
        fed.extend({"game": game_of[s], "move": int(m), "features": f[i].copy(), "globals": g[i].copy()}
                   for i, (s, m) in enumerate(zip(slots.tolist(), moves.tolist())))
        return f, g

    def spy_logits(self, logits, slots, legal, counts):
        z = legal_logits(self, logits, slots, legal, counts)
        from ringrift import _core

        up_idx = _core.upstream.env_policy_indices(self.board, self.env.states, slots, legal, counts)
        for row in range(len(slots)):
            fed[len(fed) - len(slots) + row]["policy"] = int(up_idx[row, int(z[row].argmax())])
        return z

    monkeypatch.setattr(players.NetPlayer, "start", spy_start)
    monkeypatch.setattr(upstream_play.UpstreamInputs, "inputs", spy_inputs)
    monkeypatch.setattr(upstream_play.UpstreamInputs, "legal_logits", spy_logits)
    with GameDB(tmp_path / "e.db") as db:
        out = run_match(f"onnx:{up_model}:temperature=0", "heuristic", board=board, players=players_, games=games,
                        seed=3, batch_size=3, threads=1, db=db)
    assert out["games"] == games and len(fed) > 30
    export_upstream(tmp_path / "e.db", tmp_path / "e.npz", include_unchecked=True, threads=1)
    con = sqlite3.connect(tmp_path / "e.db")
    order = [r[0] for r in con.execute("SELECT game_index FROM games WHERE capped = 0 AND winner > 0 "
                                       "ORDER BY COALESCE(started_at, created_at) DESC, id DESC")]
    con.close()
    with np.load(tmp_path / "e.npz") as d:
        starts = game_starts(d["move_numbers"], d["total_game_moves"])
        assert len(starts) == len(order) >= 3
        first = dict(zip(order, starts.tolist()))
        checked = 0
        for r in fed:
            if r["game"] not in first:
                continue
            row = first[r["game"]] + r["move"]
            assert d["move_numbers"][row] == r["move"]
            assert np.array_equal(d["features"][row], r["features"]), (r["game"], r["move"])
            assert np.array_equal(d["globals"][row], r["globals"]), (r["game"], r["move"])
            assert d["policy_indices"][row] == r["policy"], (r["game"], r["move"])
            checked += 1
    assert checked > 30


def test_an_upstream_net_plays_reproducible_games_and_refuses_what_it_cannot_do(up_model, tmp_path):
    from ringrift.selfplay.batch_env import BatchEnv
    from ringrift.train.players import PlayerSpecError, make_player

    moves = []
    for name, batch in (("a.db", 4), ("b.db", 3)):
        with GameDB(tmp_path / name) as db:
            r = run_selfplay(db, board="square8", num_games=4, policy=f"onnx:{up_model}:temperature=1", seed=2,
                             threads=1, batch_size=batch)
            assert r.games == 4
            moves.append({g.game_index: bytes(g.moves) for g in db.iter_games()})
    assert moves[0] == moves[1] and sorted(moves[0]) == [0, 1, 2, 3]
    with pytest.raises(PlayerSpecError, match="upstream's encoding plays without lookahead"):
        make_player(f"onnx:{up_model}:lookahead=2", threads=1).bind(BatchEnv("square8", 2, 2, threads=1), 0)
    with pytest.raises(PlayerSpecError, match="board 'square8'; live play computes board 'hex8'"):
        make_player(f"onnx:{up_model}", threads=1).bind(BatchEnv("hex8", 2, 2, threads=1), 0)
