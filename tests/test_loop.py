"""ringrift-pipeline run loop: two tiny generations end to end (search self-play -> parity ->
export with the search's targets -> train -> eval -> promote), a resume after an interrupted step, the
status lines and the Elo plot. Tiny everything: 4 games of a 4-simulation search, a net of width 8
trained for 3 batches, 4 evaluation games."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")
pytest.importorskip("onnxruntime", reason="the train extra is not installed: pip install torch==2.13.0 '.[train]'")

from ringrift.db import GameDB  # noqa: E402
from ringrift.pipeline.loop import STEPS, Loop, LoopOptions, status_lines  # noqa: E402

TRAIN = dict(width=8, depth=1, batch_size=32, warmup=2, lr=3e-3)


def _opts(run_dir, generations, **kw):
    o = dict(run_dir=str(run_dir), board="square8", players=2, generations=generations, games=4, sims=4, top_k=4,
             window=2, epochs=1, max_batches=3, eval_games=4, eval_sims=2, max_moves=150, seed=1, threads=1,
             plot=True, train=TRAIN)
    o.update(kw)
    return LoopOptions(**o)


class Stop(Exception):
    pass


def test_two_generations_resume_after_an_interrupted_step(tmp_path):
    run = tmp_path / "loop"
    seen = []

    def stop_in_gen2_after_export(g, step):
        seen.append((g, step))
        if (g, step) == (2, "export"):
            raise Stop

    with pytest.raises(Stop):
        Loop(_opts(run, 2), log=lambda s: None, on_step=stop_in_gen2_after_export).run_generations()
    assert seen == [(1, s) for s in STEPS] + [(2, s) for s in STEPS[:3]]
    st2 = json.loads((run / "gen_002" / "state.json").read_text())
    assert st2["done"] == list(STEPS[:3])
    # gen 1 played with the net-free search, gen 2 with gen 1's net if it was promoted
    loop = json.loads((run / "loop.json").read_text())
    g1 = loop["generations"][0]
    assert g1["selfplay_policy"].startswith("gumbel:heuristic:sims=4")
    assert st2["results"]["selfplay"]["policy"].startswith(
        "gumbel:onnx:square8-" if g1["promoted"] else "gumbel:heuristic:")
    assert any("under way, steps done: selfplay, parity, export" in line for line in status_lines(run))
    games_before = (run / "gen_002" / "games.db").stat().st_mtime_ns

    resumed = []
    state = Loop(_opts(run, 2), log=lambda s: None, on_step=lambda g, s: resumed.append((g, s))).run_generations()
    assert resumed == [(2, s) for s in STEPS[3:]]  # only the steps not done
    assert (run / "gen_002" / "games.db").stat().st_mtime_ns == games_before  # self-play was not redone
    gens = state["generations"]
    assert [r["generation"] for r in gens] == [1, 2]
    for r in gens:
        ev = r["eval"]
        assert ev["games"] == 4 and ev["wins"] + ev["draws"] + ev["losses"] == 4
        assert r["promoted"] == (ev["win_rate"] >= 0.55 and ev["score_ci95"][0] > 0.5)
        assert (run / f"gen_{r['generation']:03d}" / "train" / "model.onnx").exists()
        assert (run / f"gen_{r['generation']:03d}" / "eval.json").exists()
    # gen 2 trained on the window of gens 1 and 2, warm-started from the best when there was one
    st2 = json.loads((run / "gen_002" / "state.json").read_text())
    assert sorted(p.name for p in (run / "gen_002" / "window").glob("w_part*.npz")) == ["w_part000.npz",
                                                                                   "w_part001.npz"]
    assert st2["results"]["train"]["warm_start"] == gens[0]["checkpoint"]  # the best, or before any the previous
    # the value head trained on the loop's value target (default: half outcome, half search root value)
    from ringrift.train.checkpoint import load

    assert st2["results"]["train"]["value_target"] == "mix:0.5"
    assert load(run / "gen_002" / "train" / "last.pt")["meta"]["hparams"]["value_target"] == "mix:0.5"
    # the search targets reached the training data: soft policies over several actions
    with np.load(run / "gen_001" / "data" / "soft.npz") as z:
        assert z["has_search_target"].all() and (np.diff(z["policy_offsets"]) > 1).any()
    with GameDB(run / "gen_001" / "games.db", create=False) as db:
        assert sum(1 for _ in db.iter_games()) == 4
    lines = status_lines(run)
    assert len([line for line in lines if line.lstrip().startswith("gen ")]) == 2
    assert (run / "elo.png").stat().st_size > 0
    # a finished loop asked for the same generations does nothing; for one more, runs only that one
    again = []
    Loop(_opts(run, 2), log=lambda s: None, on_step=lambda g, s: again.append(g)).run_generations()
    assert again == []


def test_a_generation_exported_before_the_export_wrote_soft_npz_is_exported_again(tmp_path):
    run = tmp_path / "loop"

    def stop_after_export(g, step):
        if step == "export":
            raise Stop

    with pytest.raises(Stop):
        Loop(_opts(run, 1), log=lambda s: None, on_step=stop_after_export).run_generations()
    data = run / "gen_001" / "data"
    for name in ("soft.npz", "soft_val.npz"):  # as an older loop left it: plain.npz, then a targets step
        (data / name).rename(data / name.replace("soft", "plain"))
    steps = []
    with pytest.raises(Stop):
        Loop(_opts(run, 1), log=lambda s: None,
             on_step=lambda g, s: (steps.append(s), stop_after_export(g, s))).run_generations()
    assert steps == ["export"] and (data / "soft.npz").exists()
    assert json.loads((run / "gen_001" / "state.json").read_text())["done"] == ["selfplay", "parity", "export"]


def test_a_selfplay_step_killed_half_way_plays_only_the_missing_games(tmp_path):
    from ringrift.pipeline.loop import search_spec
    from ringrift.selfplay.runner import run_selfplay

    run = tmp_path / "loop"
    stop = []

    def stop_after_selfplay(g, step):
        stop.append(step)
        raise Stop

    # what a kill leaves: the generation started (state.json, nothing done) and 2 of its 4 games committed
    with pytest.raises(Stop):
        Loop(_opts(run, 1), log=lambda s: None, on_step=stop_after_selfplay).run_generations()
    st = json.loads((run / "gen_001" / "state.json").read_text())
    full = st["results"]["selfplay"]
    (run / "gen_001" / "games.db").unlink()
    st["done"], st["results"] = [], {}
    (run / "gen_001" / "state.json").write_text(json.dumps(st))
    with GameDB(run / "gen_001" / "games.db") as db:
        run_selfplay(db, board="square8", num_players=2, num_games=2, seed=1001, policy=search_spec(None, 4, 4, 1.0),
                     threads=1, max_moves=150)
    with pytest.raises(Stop):
        Loop(_opts(run, 1), log=lambda s: None, on_step=stop_after_selfplay).run_generations()
    again = json.loads((run / "gen_001" / "state.json").read_text())["results"]["selfplay"]
    assert (again["already_present"], again["played"]) == (2, 2)
    assert again["moves_played"] < full["moves_played"]
    with GameDB(run / "gen_001" / "games.db", create=False) as db:
        assert sorted(g.game_index for g in db.iter_games()) == [0, 1, 2, 3]


def test_promotion_rule_and_a_foreign_run_folder(tmp_path):
    from ringrift.pipeline.loop import LoopError, should_promote
    from ringrift.train.evaluate import summarize

    assert should_promote(summarize(70, 0, 30), 0.55)        # 70%, interval 0.61-0.79
    assert not should_promote(summarize(6, 0, 4), 0.55)      # 60% but the interval reaches below 0.5
    assert not should_promote(summarize(540, 0, 460), 0.55)  # interval above 0.5 but 54% < 55%
    assert not should_promote(summarize(500, 200, 300), 0.55)  # score 0.6, win rate 0.5

    run = tmp_path / "loop"
    Loop(_opts(run, 1), log=lambda s: None)
    with pytest.raises(LoopError, match="a loop of square8 2p"):
        Loop(_opts(run, 1, players=3), log=lambda s: None)


def _pipeline(*args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ringrift.pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


CONFIG = """\
train:
  width: 8
  depth: 1
  batch_size: 32
  warmup: 2
loop:
  games: 2
  sims: 2
  top_k: 2
  epochs: 1
  max_batches: 2
  eval_games: 2
  eval_sims: 2
  max_moves: 100
  threads: 1
  plot: false
"""


def test_pipeline_run_loop_and_status(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    state = tmp_path / "state.json"
    r = _pipeline("--config", str(cfg), "--state", str(state), "run", "loop", "--generations", "1", "--loop-dir",
                  str(tmp_path / "L"), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "gen   1: W " in r.stdout
    s = _pipeline("--config", str(cfg), "--state", str(state), "status", cwd=tmp_path)
    assert s.returncode == 0 and "gen   1: W " in s.stdout and "loop: " in s.stdout, s.stdout
    # an explicit --backend ssh with no hosts file plays here, and says so (the rerun resumes: nothing to do)
    r = _pipeline("--backend", "ssh", "--config", str(cfg), "--state", str(state), "run", "loop", "--generations",
                  "1", "--loop-dir", str(tmp_path / "L"), "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and "gen   1: W " in r.stdout, r.stderr
    assert r.stderr == "note: --backend ssh, but no remote hosts are configured (no hosts file): playing on this " \
                       "machine\n", r.stderr
    # the loop: section is validated like the rest: file, line and key in one line
    cfg.write_text(CONFIG.replace("  sims: 2", "  sims: 0"))
    r = _pipeline("--config", str(cfg), "--state", str(state), "run", "loop", "--generations", "1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "loop.sims" in r.stderr and "cfg.yaml" in r.stderr, \
        r.stderr
    cfg.write_text(CONFIG + "  value_target: mix:3\n")
    r = _pipeline("--config", str(cfg), "--state", str(state), "run", "loop", "--generations", "1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "loop.value_target" in r.stderr, r.stderr
    cfg.write_text(CONFIG)
    r = _pipeline("--config", str(cfg), "--state", str(state), "run", "loop", "--generations", "1",
                  "--value-target", "searched", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--value-target 'searched'" in r.stderr, r.stderr
    # a flag has its config key's bounds, checked before the loop folder is made (a traceback once)
    r = _pipeline("--config", str(cfg), "--state", str(state), "run", "loop", "--generations", "1", "--sims",
                  "99999999999", "--loop-dir", str(tmp_path / "L2"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == ("ringrift-pipeline: error: --sims 99999999999: expected an "
                                                      "integer from 1 to 100000"), r.stderr
    assert not (tmp_path / "L2").exists()
