"""ringrift.train: a tiny net on a tiny export (loss falls, resume, ONNX == torch, refusals), the
onnx:PATH self-play policy (legal, reproducible, parity-clean games) and ringrift-eval.

Needs the train extra (torch, onnx, onnxruntime); CI installs it (README test command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")
pytest.importorskip("onnxruntime", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")

from ringrift.db import GameDB  # noqa: E402
from ringrift.export import export_db  # noqa: E402
from ringrift.parity.db_check import verify_db  # noqa: E402
from ringrift.selfplay.runner import run_selfplay  # noqa: E402
from ringrift.train import checkpoint as ckpt  # noqa: E402
from ringrift.train.data import BatchStream, describe, split_files  # noqa: E402
from ringrift.train.trainer import TrainOptions, losses, train  # noqa: E402

TINY = dict(width=8, depth=1, batch_size=32, lr=3e-3, warmup=5, threads=1, checkpoint_every=1e9, plot=False)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """30 heuristic square8 games, exported with symmetries into shards of 400 samples."""
    d = tmp_path_factory.mktemp("train_data")
    with GameDB(d / "games.db") as db:
        run_selfplay(db, board="square8", num_games=30, policy="heuristic", seed=11, threads=1)
    export_db(d / "games.db", d / "sq8.npz", include_unchecked=True, drop_forced=True, with_symmetries=True,
              max_samples_per_file=400, split_ratio=0.8, seed=1, threads=1)
    return d / "sq8.npz"


def _opts(data, out, **kw):
    o = dict(TINY, data=str(data), out=str(out), epochs=1, onnx=False, log=lambda s: None)
    o.update(kw)
    return TrainOptions(**o)


def _fixed_batch(data):
    train_files, _ = split_files(data)
    info, shards = describe(train_files)
    return next(BatchStream(shards, info.board, 256, seed=0, shuffle=False).epoch(0))[1]


def test_streams_every_shard_with_exact_symmetries(tiny_export):
    train_files, val_files = split_files(tiny_export)
    assert len(train_files) > 1 and val_files  # the export is sharded: training streams shard by shard
    info, shards = describe(train_files)
    assert info.board == "square8" and info.symmetries == 8 and info.exact_symmetries == tuple(range(8))
    s = BatchStream(shards, info.board, 64, seed=3, shuffle=True, augment=True, exact=info.exact_symmetries)
    seen = sum(len(b.top_index) for _, b in s.epoch(0))
    assert seen == sum(sh.samples for sh in shards)
    # the epoch order depends on (seed, epoch) only; resuming at batch k gives the same batches
    full = [b.top_index for _, b in s.epoch(1)]
    tail = [b.top_index for _, b in s.epoch(1, start=3)]
    assert all(np.array_equal(a, b) for a, b in zip(full[3:], tail)) and len(tail) == len(full) - 3


def test_loss_falls(tiny_export, tmp_path):
    b = _fixed_batch(tiny_export)
    torch.manual_seed(0)
    from ringrift.train.model import NetConfig, build_model

    with torch.no_grad():
        before = float(losses(build_model(NetConfig("square8", 8, 1)).eval(), b)[0])
    train(_opts(tiny_export, tmp_path / "run", epochs=4, augment=False))
    ck = ckpt.load(tmp_path / "run" / "last.pt")
    model = build_model(NetConfig(**ck["meta"]["net"]))
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        after = float(losses(model.eval(), b)[0])
    assert after < before - 1.0, (before, after)
    hist = ck["history"]
    assert len(hist) == 4 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    for key in ("val_top1", "val_top5", "val_value_loss", "val_value_sign_acc"):
        assert 0 <= hist[-1][key] <= 4
    meta = ck["meta"]
    assert meta["board"] == "square8" and meta["encoding"] == "native" and meta["format_version"] == 2
    assert meta["action_space_size"] == 14475 and meta["feature_shape"] == [26, 8, 8]
    assert set(meta["data_hashes"]) == {p.name for p in tiny_export.parent.glob("sq8*.npz")}


def test_resume_after_stop_is_the_same_run(tiny_export, tmp_path):
    train(_opts(tiny_export, tmp_path / "a", epochs=2, max_batches=9))
    train(_opts(tiny_export, tmp_path / "a", epochs=2, max_batches=17))  # resumes at step 9
    train(_opts(tiny_export, tmp_path / "a", epochs=2))  # and to the end
    train(_opts(tiny_export, tmp_path / "b", epochs=2))  # one go
    a, b = ckpt.load(tmp_path / "a" / "last.pt"), ckpt.load(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for k in b["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_onnx_matches_torch_and_carries_the_metadata(tiny_export, tmp_path):
    from ringrift.train.model import NetConfig, build_model
    from ringrift.train.onnx_export import read_meta, run, session

    res = train(_opts(tiny_export, tmp_path / "run", max_batches=5, onnx=True))
    onnx_path = Path(res["files"]["onnx"])
    ck = ckpt.load(tmp_path / "run" / "last.pt")
    model = build_model(NetConfig(**ck["meta"]["net"]))
    model.load_state_dict(ck["model"])
    model.eval()
    b = _fixed_batch(tiny_export)
    with torch.no_grad():
        p_t, v_t = model(torch.from_numpy(b.features), torch.from_numpy(b.globals))
    sess = session(onnx_path)
    p_o, v_o = run(sess, b.features, b.globals)
    assert p_o.shape == (len(b.features), 14475) and v_o.shape == (len(b.features), 4)
    np.testing.assert_allclose(p_o, p_t.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(v_o, v_t.numpy(), rtol=1e-4, atol=1e-5)
    meta = read_meta(sess)
    assert meta["board"] == "square8" and meta["net"] == ck["meta"]["net"]
    assert meta["data_hashes"] == ck["meta"]["data_hashes"]


def test_checkpoint_of_another_board_is_refused_in_one_line(tiny_export, tmp_path, capsys):
    from ringrift.train.cli import main as train_main

    train(_opts(tiny_export, tmp_path / "run", max_batches=2))
    ck = ckpt.load(tmp_path / "run" / "last.pt")
    ck["meta"]["board"] = "hex8"
    ckpt.save(tmp_path / "run" / "last.pt", {k: v for k, v in ck.items() if k not in ("format", "version")})
    assert train_main(["--data", str(tiny_export), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made for board 'hex8'" in err, err
    # a file in neither encoding (upstream's encoding trains: tests/test_train_upstream.py)
    other = tmp_path / "other.npz"
    np.savez(other, features=np.zeros((1, 2, 8, 8), np.float32), values=np.zeros(1, np.float32))
    assert train_main(["--data", str(other), "--out", str(tmp_path / "u")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither the native NPZ format nor upstream's encoding" in err, err


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_nothing(tiny_export, tmp_path):
    """torch.save reports a failed write() (a full disk) as a RuntimeError ("unexpected pos 64 vs
    0"), which ringrift-train printed as a traceback. Here a 64 KiB file-size limit fails it."""
    def small_files():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "ringrift.train.cli", "--data", str(tiny_export), "--out", str(out),
                        "--epochs", "1", "--max-batches", "2", "--width", "8", "--depth", "1", "--threads", "1",
                        "--no-onnx", "--quiet"], capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and last.startswith(f"ringrift-train: error: {out / 'last.pt'}: cannot write "
                                                          f"the checkpoint"), r.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name == "last.pt"]


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--weight-decay", "-1"], "--weight-decay must be a number >= 0"),
    (["--value-weight", "nan"], "--value-weight must be a number >= 0"),  # trained to NaN and exited 0
    (["--width", "100000"], "--width must be 1..1024 channels"),  # torch could not allocate it
    (["--depth", "-1"], "--depth must be 0..100 blocks"),
    (["--seed", "-1"], "--seed must be 0..9223372036854775807"),  # numpy's traceback
    (["--time-budget", "-1"], "--time-budget must be a positive number of minutes"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive number of seconds"),
    (["--val-fraction", "2"], "--val-fraction must be between 0 and 1"),
    (["--max-batches", "-1"], "--max-batches must be >= 1"),
    (["--threads", "-3"], "--threads must be 0..1024"),
])
def test_train_options_out_of_range_are_one_line_before_any_file(tmp_path, capsys, flags, message):
    from ringrift.train.cli import main as train_main

    out = tmp_path / "run"
    assert train_main(["--data", str(tmp_path / "absent.npz"), "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"ringrift-train: error: {message}\n" or (err.count("\n") == 1 and message in err), err
    assert not out.exists()


def test_eval_flags_out_of_range_are_one_line(capsys):
    from ringrift.train.evaluate import main as eval_main

    for flags, message in [(["--seed", "-1"], "--seed must be 0..9223372036854775807"),  # a pybind TypeError
                           (["--threads", "-1"], "--threads must be 0..1024"),
                           (["--max-moves", "99999999999"], "--max-moves must be 1..1000000"),
                           (["--games", str(10**23)], "--games must be 1..10000000")]:
        with pytest.raises(SystemExit) as exc:
            eval_main(["random", "random", "--games", "2", *flags])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
    # a lookahead with no bound allocated its candidates' inputs until numpy gave up (5.4 GiB)
    assert eval_main(["onnx:m.onnx:lookahead=99999", "random", "--games", "2"]) == 2
    assert "lookahead '99999' is not a count 0..256" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model(tiny_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_model")
    res = train(_opts(tiny_export, out, max_batches=20, onnx=True))
    return Path(res["files"]["onnx"])


def _play_in_two_batchings(tmp_path, spec, games, seed, batches):
    """Self-play `games` games of `spec` into a.db and b.db with two batch sizes: the same games
    (game i of the seed, whatever the batch), every one stored once and parity-clean in a.db.
    Returns the stored policy name."""
    moves = []
    for name, batch in zip(("a.db", "b.db"), batches):
        with GameDB(tmp_path / name) as db:
            r = run_selfplay(db, board="square8", num_games=games, policy=spec, seed=seed, threads=1,
                             batch_size=batch)
            assert r.games == games
            moves.append({g.game_index: bytes(g.moves) for g in db.iter_games()})
            # a rerun finds every game present
            assert run_selfplay(db, board="square8", num_games=games, policy=spec, seed=seed, threads=1).games == 0
    assert moves[0] == moves[1] and sorted(moves[0]) == list(range(games))
    matched, checked, _ = verify_db(tmp_path / "a.db", quiet=True)
    assert matched == checked == games
    return r.policy


def test_onnx_policy_plays_legal_reproducible_games_that_pass_parity(tiny_model, tmp_path):
    spec = f"onnx:{tiny_model}:temperature=1"
    policy = _play_in_two_batchings(tmp_path, spec, games=16, seed=4, batches=(16, 5))
    assert policy.startswith("onnx:square8-")
    info = subprocess.run([sys.executable, "-m", "ringrift.db", "info", str(tmp_path / "a.db"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert json.loads(info.stdout)["policies"] == {policy: 16}


def test_eval_is_seat_balanced_with_an_interval(tiny_model, tmp_path, capsys):
    from ringrift.train.evaluate import main as eval_main

    assert eval_main([f"onnx:{tiny_model}:temperature=0", "random", "--games", "6", "--json", "--threads", "1",
                      "--db", str(tmp_path / "e.db")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wins"] + out["draws"] + out["losses"] == 6
    assert {k: sum(v.values()) for k, v in out["by_seat"].items()} == {"A_seat1": 3, "A_seat2": 3}
    lo, hi = out["score_ci95"]
    assert lo <= out["score"] <= hi
    matched, checked, _ = verify_db(tmp_path / "e.db", quiet=True)
    assert matched == checked == 6
    assert eval_main([f"onnx:{tiny_model}:lookahead=2", "heuristic", "--games", "2", "--json", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["games"] == 2
    assert eval_main(["onnx:/nonexistent.onnx", "random"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such ONNX model" in err, err


def test_turn_lookahead_values_each_candidate_where_the_opponent_takes_over(tiny_model, tmp_path):
    from ringrift.selfplay.batch_env import BatchEnv
    from ringrift.train.players import PlayerSpecError, make_player, parse_spec, play_step

    assert parse_spec("onnx:m.onnx:lookahead=4:horizon=turn")[2] == {"lookahead": 4, "horizon": "turn"}
    with pytest.raises(PlayerSpecError, match="horizon 'ply' is not one of move, turn"):
        parse_spec("onnx:m.onnx:lookahead=4:horizon=ply")
    n = 6
    env = BatchEnv("square8", 2, n, features=True, threads=1)
    net = make_player(f"onnx:{tiny_model}:lookahead=3:horizon=turn", threads=1)
    assert net.name.endswith(":lookahead=3:horizon=turn")
    net.bind(env, seed=0)
    net.start(np.arange(n), np.arange(n))
    mid_turn, valued = [], []
    play_out = net._finish_turns

    def spy(r, mover):
        scr = net.scratch
        mid_turn.append(int(((scr.info["current"][:r] == mover) & (scr.info["done"][:r] == 0)).sum()))
        play_out(r, mover)
        valued.append(int(((scr.info["current"][:r] == mover) & (scr.info["done"][:r] == 0)).sum()))

    net._finish_turns = spy
    owner = np.zeros(n, dtype=np.int64)  # the net plays both seats
    for _ in range(40):
        play_step(env, [net], owner, np.ones(n, dtype=bool))
    # candidates often leave the mover mid-turn (a placement, say); the play-out always finishes the turn
    assert sum(mid_turn) > 0 and valued and max(valued) == 0
    # and games with it are legal, reproducible in any batch, stored under the option, parity-clean
    policy = _play_in_two_batchings(tmp_path, f"onnx:{tiny_model}:lookahead=2:horizon=turn", games=4, seed=2,
                                    batches=(4, 3))
    assert policy.endswith(":lookahead=2:horizon=turn")


def test_heuristic_with_a_share_of_random_moves_is_seeded_self_play(tmp_path):
    from ringrift.train.players import PlayerSpecError, parse_spec

    for bad in ("heuristic:random=1.5", "heuristic:random=x", "heuristic:eps=0.1"):
        with pytest.raises(PlayerSpecError, match="expected heuristic:random=P"):
            parse_spec(bad)
    runs = {}
    for k, (policy, batch) in enumerate((("heuristic", None), ("heuristic:random=0", 3),
                                         ("heuristic:random=0.25", 8), ("heuristic:random=0.25", 3))):
        with GameDB(tmp_path / f"{k}.db") as db:
            r = run_selfplay(db, board="square8", num_games=8, policy=policy, seed=5, threads=1, batch_size=batch)
            assert r.games == 8 and r.policy == policy
            runs[policy, batch] = {g.game_index: bytes(g.moves) for g in db.iter_games()}
    # share 0 is exactly heuristic self-play of the same seed; a share of random moves changes the games,
    # the same way in any batch
    assert runs["heuristic:random=0", 3] == runs["heuristic", None]
    assert runs["heuristic:random=0.25", 8] == runs["heuristic:random=0.25", 3] != runs["heuristic", None]
    matched, checked, _ = verify_db(tmp_path / "2.db", quiet=True)
    assert matched == checked == 8


def _pipeline(args, tmp_path, config_text):
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(config_text)
    env = dict(__import__("os").environ, RINGRIFT_LOG_DIR=str(tmp_path / "logs"))
    return subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--config", str(cfg), "--state",
                           str(tmp_path / "state.json"), *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)


def test_pipeline_train_phase_uses_the_validated_train_section(tiny_export, tmp_path):
    good = (f"train:\n  out_dir: {tmp_path / 'runs'}\n  epochs: 1\n  width: 8\n  depth: 1\n  batch_size: 64\n"
            f"  plot: false\n  threads: 1\n")
    r = _pipeline(["run", "train", "--data", str(tiny_export), "--dry-run"], tmp_path, good)
    assert r.returncode == 0 and "plan: train: 1 epoch(s)" in r.stdout, r.stderr
    r = _pipeline(["run", "train", "--data", str(tiny_export), "--quiet"], tmp_path, good)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "square8"
    assert (run / "last.pt").is_file() and (run / "model.onnx").is_file()
    assert ckpt.load(run / "last.pt")["meta"]["net"]["width"] == 8
    assert json.loads((tmp_path / "state.json").read_text())["phase_status"]["train"] == "done"
    bad = _pipeline(["run", "train", "--data", str(tiny_export)], tmp_path, "train:\n  epochs: 0\n")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "epochs" in bad.stderr and ":2" in bad.stderr, \
        bad.stderr
