"""The batch environment (ringrift.selfplay.BatchEnv): masks, features, steps and errors, checked
against the single-game engine API. The CPU tests run the kernels' host twin (the same per-slot
C++ code); the GPU tests compare the kernels with it and are skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from ringrift import Game, IllegalMoveError, _core
from ringrift.gpu import gpu_status
from ringrift.gpu.nvrtc import compile_ptx, find_libnvrtc
from ringrift.selfplay import BatchEnv, IllegalActionError

E = _core.export
CASES = [(b, p) for b in ("square8", "hex8", "square19", "hexagonal") for p in (2, 3, 4)]


def playable_surface(game: Game) -> list[tuple[int, int, object]]:
    """(canonical index, own index, move) of every legal move the engine's validated apply
    accepts, in surface order (from the engine's move list, not the env's streaming sinks)."""
    legal = game.legal_moves()
    out = []
    for m, a, own in zip(legal, E.legal_action_indices(game, True), E.legal_action_indices(game, False)):
        try:
            game.clone().apply(m)
        except IllegalMoveError:
            continue
        out.append((int(a), int(own), m))
    return out


def playable_actions(game: Game) -> set[int]:
    """Canonical indices of the legal moves the engine's validated apply accepts."""
    return {a for a, _, _ in playable_surface(game)}


def first_occurrences(surface) -> list[int]:
    """The distinct canonical actions in surface order: the order of a mask's action list."""
    seen = []
    for a, _, _ in surface:
        if a not in seen:
            seen.append(a)
    return seen


def named_move(surface, action: int):
    """The move an action decodes to: the one whose own index is the action, else the first alias."""
    aliases = [(own == a, m) for a, own, m in surface if a == action]
    return next((m for exact, m in aliases if exact), aliases[0][1])


def play_alongside(env: BatchEnv, games: list[Game], steps: int, rng, check_every: int = 1) -> set[str]:
    """Step env with random actions and replay each chosen move on `games` through the validated
    API, checking hashes, masks, features and info; returns the phases visited."""
    phases = set()
    for k in range(steps):
        if k % check_every == 0:
            surfaces = [playable_surface(g) for g in games]
            for i, g in enumerate(games):
                expected = {a for a, _, _ in surfaces[i]}
                assert set(np.flatnonzero(env.mask[i]).tolist()) == expected, (i, k)
                listed = env.legal_actions[i, :env.info["num_actions"][i]].tolist()
                assert listed == first_occurrences(surfaces[i]), (i, k)
                planes, globs = E.encode_state(g)
                assert np.array_equal(env.planes[i], planes) and np.array_equal(env.globals[i], globs), (i, k)
        acts = env.random_actions(rng)
        env.step(acts)
        for i, g in enumerate(games):
            if acts[i] < 0:
                continue
            move = _core.move_from_record(bytes(env.last_moves[i]))
            assert int(E.canonical_action_index(g, move)) == int(acts[i])
            if k % check_every == 0:
                assert move == named_move(surfaces[i], int(acts[i])), (i, k)
            g.apply(move)
            phases.add(g.phase)
        assert [g.hash() for g in games] == [f"{h:016x}" for h in env.hashes()], k
        assert list(env.info["move_count"]) == [g.move_count for g in games]
        assert list(env.info["done"]) == [int(g.is_over) for g in games]
        if all(g.is_over for g in games):
            break
    return phases


@pytest.mark.parametrize("board, players", CASES)
def test_host_twin_steps_exactly_like_the_engine(board, players):
    n = 3 if board in ("square8", "hex8") else 1
    steps = 150 if board in ("square8", "hex8") else 80
    env = BatchEnv(board, players, n)
    games = [Game(board, players) for _ in range(n)]
    play_alongside(env, games, steps, np.random.default_rng(players))


def test_whole_games_to_the_end_visit_every_phase_and_score_the_result():
    env = BatchEnv("square8", 2, 6)
    games = [Game("square8", 2) for _ in range(6)]
    phases = play_alongside(env, games, 3000, np.random.default_rng(7), check_every=5)
    assert all(g.is_over for g in games)
    assert {"line_processing", "territory_processing", "capture", "chain_capture"} <= phases, phases
    for i, g in enumerate(games):
        assert env.info["winner"][i] == (g.winner or 0)
        assert np.allclose(env.info["values"][i, :2], E.outcome_values(g))
        assert not env.mask[i].any() and env.info["num_actions"][i] == 0
    # Finished games refuse an action and accept -1; reset(which) restarts only the chosen slots.
    with pytest.raises(IllegalActionError, match="game 0: .*game is over"):
        env.step(np.zeros(6, dtype=np.int32))
    env.step(np.full(6, -1))
    env.reset(np.array([1, 0, 0, 0, 0, 1]))
    assert list(env.info["move_count"][[0, 5]]) == [0, 0] and list(env.info["done"]) == [0, 1, 1, 1, 1, 0]
    assert env.game(0).hash() == Game("square8", 2).hash()


def test_aliased_territory_options_list_and_decode_like_the_engines_move_list():
    # Territory options with the same effect share one action, the lowest index among them. The
    # env streams the surface with the options put aside until all are in: its action list must
    # still be in surface order, and each action must play the move the engine's list names.
    env, probe = BatchEnv("square8", 2, 64, features=False), BatchEnv("square8", 2, 1, features=False)
    territory = list(_core.PHASES).index("territory_processing")
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(3000):
        for i in np.flatnonzero(env.info["phase"] == territory):
            surface = playable_surface(env.game(int(i)))
            if all(a == own for a, own, _ in surface):
                continue
            assert env.legal_actions[i, :env.info["num_actions"][i]].tolist() == first_occurrences(surface)
            for a in first_occurrences(surface):
                probe.states[0] = env.states[i]
                probe.observe()
                probe.step(np.array([a]))
                assert _core.move_from_record(bytes(probe.last_moves[0])) == named_move(surface, a)
            checked += 1
        if checked >= 20:
            break
        env.step(env.random_actions(rng))
        done = env.info["done"].astype(bool)
        if done.any():
            env.reset(done)
    assert checked >= 20, checked


def test_a_bad_action_refuses_the_whole_batch_and_changes_nothing():
    env = BatchEnv("hex8", 3, 4)
    rng = np.random.default_rng(3)
    for _ in range(10):
        env.step(env.random_actions(rng))
    before = env.states.copy(), env.mask.copy(), env.hashes().copy()
    acts = env.random_actions(rng)
    illegal = int(np.flatnonzero(~env.mask[2])[0])
    acts[2] = illegal
    acts[3] = env.action_size + 5
    with pytest.raises(IllegalActionError) as err:
        env.step(acts)
    assert err.value.slots == [2, 3] and err.value.actions == [illegal, env.action_size + 5]
    assert "game 2: action" in str(err.value) and "mask bit is 0" in str(err.value) and "1 more" in str(err.value)
    assert "not an index of the action space" in err.value.reasons[1]
    assert np.array_equal(env.states, before[0]) and np.array_equal(env.mask, before[1])
    assert np.array_equal(env.hashes(), before[2])
    with pytest.raises(ValueError, match=r"actions must have shape \(4,\)"):
        env.step(np.zeros(3, dtype=np.int32))


def test_minus_one_leaves_a_game_alone():
    env = BatchEnv("square8", 2, 3)
    acts = env.random_actions(np.random.default_rng(1))
    acts[1] = -1
    env.step(acts)
    assert list(env.info["move_count"]) == [1, 0, 1]
    assert env.game(1).hash() == Game("square8", 2).hash()


def test_arrays_are_updated_in_place_never_reallocated():
    env = BatchEnv("square8", 2, 2)
    arrays = (env.states, env.mask, env.planes, env.globals, env.last_moves, *env.info.values())
    ids = [id(a) for a in arrays]
    planes_before = env.planes.copy()
    env.step(env.random_actions(np.random.default_rng(0)))
    assert [id(a) for a in (env.states, env.mask, env.planes, env.globals, env.last_moves, *env.info.values())] == ids
    assert not np.array_equal(env.planes, planes_before)  # written through the same buffer
    assert np.shares_memory(env.mask, env._mask_u8) and env.mask.dtype == np.bool_
    assert env.mask.shape == (2, E.action_space("square8")["size"])
    assert env.planes.shape == (2, E.NUM_PLANES, 8, 8) and env.globals.shape == (2, E.NUM_GLOBALS)


def test_without_features_only_the_mask_is_computed():
    env = BatchEnv("hexagonal", 2, 2, features=False)
    assert env.planes.size == 1 and env.mask.shape[1] == E.action_space("hexagonal")["size"]
    env.step(env.random_actions(np.random.default_rng(0)))
    assert env.info["num_actions"].min() > 0


def test_nbytes_counts_every_array_per_game():
    small, big = BatchEnv("square8", 2, 3), BatchEnv("square8", 2, 7)
    A, K = E.action_space("square8")["size"], _core.ENV_MAX_ACTIONS
    per_game = (big.nbytes - small.nbytes) / 4
    # state, mask row, action list, 26 planes of 8x8 floats, globals, move record, info, 2 flag bytes
    arrays = (big.states, big.mask, big.legal_actions, big.planes, big.globals, big.last_moves, *big.info.values())
    assert per_game == sum(a.nbytes for a in arrays) / 7 + 2
    assert per_game > _core.struct_sizes()["State"] + A + 4 * K + 26 * 64 * 4


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="unknown board 'square9'"):
        BatchEnv("square9", 2, 1)
    with pytest.raises(ValueError, match="num_players must be 2, 3 or 4, got 5"):
        BatchEnv("square8", 5, 1)
    with pytest.raises(ValueError, match="num_envs must be 1..131072"):
        BatchEnv("square8", 2, 0)
    with pytest.raises(ValueError, match="num_envs must be 1..131072"):  # refused before gigabytes are allocated
        BatchEnv("square8", 2, 250_000)
    for args in ((2, 1.9), (2.0, 1), (2, True)):  # truncated (or read as 1) before
        with pytest.raises(TypeError, match="must be an integer"):
            BatchEnv("square8", *args)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        BatchEnv("square8", 2, 1, device="tpu")
    env = BatchEnv("square8", 2, 2)
    with pytest.raises(TypeError, match="states: expected dtype uint8, got float64"):
        _core.env_hash_host("square8", np.zeros(10), 2)
    with pytest.raises(ValueError, match=r"mask: expected 28950 elements, got 5"):
        _core.env_observe_host("square8", env.states, env._all, np.zeros(5, np.uint8), env.legal_actions, None, None,
                               env.info)
    with pytest.raises(ValueError, match="not a game of this board"):
        _core.load_state_bytes(Game("hex8", 2), bytes(env.states[0]))
    with pytest.raises(IndexError, match=r"game 2 out of range \[0, 2\)"):
        env.game(2)
    # actions are never cast: a float, bool or string array, or an integer beyond int32, would
    # have played another action (2**32 + a played a; True played action 1)
    a = int(env.legal_actions[0, 0])
    before = env.states.copy()
    for acts, error in ((np.array([a + 0.7, -1]), TypeError), (np.array([True, False]), TypeError),
                        (["0", "-1"], TypeError), (np.array([2**32 + a, -1]), ValueError),
                        (np.array([2**64 - 1, 0], dtype=np.uint64), ValueError)):
        with pytest.raises(error, match="action"):
            env.step(acts)
    assert np.array_equal(env.states, before)


def test_one_env_stepped_from_several_threads_stays_consistent():
    # step/reset/observe work without the GIL on shared arrays: unserialised, three threads
    # corrupted games and crashed or hung the interpreter
    import threading

    env = BatchEnv("square8", 2, 32, features=False, threads=1)
    errors, steps = [], [0]

    def worker(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(300):
                try:  # actions drawn before another thread's step may no longer be playable: refused whole
                    env.step(env.random_actions(rng))
                    steps[0] += 1
                except IllegalActionError:
                    pass
                env.reset(env.info["done"])
        except BaseException as exc:  # anything else fails the test, not just a thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and steps[0] > 0, errors
    for i in range(env.n):  # every slot holds a consistent state (load_state_bytes checks it)
        env.game(i)


def test_cuda_env_without_a_gpu_fails_with_the_reason():
    ok, why = gpu_status()
    if ok:
        pytest.skip("a GPU is present here")
    from ringrift.gpu import GpuUnavailable

    with pytest.raises(GpuUnavailable, match="needs a CUDA GPU and cupy"):
        BatchEnv("square8", 2, 4, device="cuda")


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
def test_env_kernel_sources_compile_with_nvrtc():
    ptx = compile_ptx("compute_80", source="env_kernel.cu")
    for name in ("rr_env_reset", "rr_env_observe", "rr_env_decode", "rr_env_apply", "rr_env_hash"):
        assert f".entry {name}" in ptx


@pytest.mark.skipif(not gpu_status()[0], reason=f"no GPU: {gpu_status()[1]}")
@pytest.mark.parametrize("board, players", CASES)
def test_cuda_env_equals_host_twin(board, players):
    import cupy as cp

    n = 256 if board in ("square8", "hex8") else 32
    cpu, gpu = BatchEnv(board, players, n), BatchEnv(board, players, n, device="cuda")
    rng = np.random.default_rng(11)
    for _ in range(200):
        acts = cpu.random_actions(rng)
        cpu.step(acts)
        gpu.step(cp.asarray(acts))
        assert hasattr(gpu.mask, "__cuda_array_interface__")
        assert np.array_equal(cpu.states, gpu.states.get())
        assert np.array_equal(cpu.mask, gpu.mask.get())
        assert np.array_equal(cpu.planes, gpu.planes.get()) and np.array_equal(cpu.globals, gpu.globals.get())
        if cpu.info["done"].all():
            break
    assert np.array_equal(cpu.hashes(), gpu.hashes().get())


def test_the_documented_example_runs():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "batch_env.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/batch_env.md", "exec"), scope)
    env = scope["env"]
    assert env.info["move_count"].sum() > 0 and env.mask.shape == (64, E.action_space("square8")["size"])


# ---- storing env games (EnvRecorder) --------------------------------------------------------------

def play_and_record(env, rec, rng, games: int, limit: int = 20000):
    for step in range(limit):
        if rec.stored >= games:
            return
        acts = env.random_actions(rng)
        acts[step % 5::5] = -1  # some slots sit a step out: their games must not gain a step
        env.step(acts)
        env.reset(rec.record(acts))
    raise AssertionError("not enough games finished")


def test_recorded_env_games_verify_replay_and_export(tmp_path):
    from ringrift.db import GameDB
    from ringrift.export import export_db
    from ringrift.parity.db_check import verify_db
    from ringrift.selfplay import EnvRecorder

    path = tmp_path / "env.db"
    env = BatchEnv("hex8", 3, 6)
    with GameDB(path) as db:
        rec = EnvRecorder(env, db, policy="nn-test", seed=4)
        play_and_record(env, rec, np.random.default_rng(2), 12)
        stored = rec.stored
        assert db.count_games(policy="nn-test") == stored >= 12
        rows = list(db.iter_games(policy="nn-test"))
    assert sorted(r.game_index for r in rows) == list(range(stored))
    assert verify_db(path, quiet=True) == (stored, stored, sum(r.move_count for r in rows))
    # Replaying a stored game through the validated API ends where the env's game ended.
    row = next(r for r in rows if not r.capped)
    g = Game("hex8", 3)
    for rec_bytes in row.move_records():
        g.apply(_core.move_from_record(bytes(rec_bytes)))
    assert g.is_over and (g.winner or 0) == row.winner and g.move_count == row.move_count
    out = tmp_path / "env.npz"
    export_db(path, out, board="hex8")
    with np.load(out) as z:
        assert len(z["features"]) > 0


def test_recorder_caps_resumes_numbering_and_refuses_games_already_started(tmp_path):
    from ringrift.db import GameDB
    from ringrift.selfplay import EnvRecorder

    with GameDB(tmp_path / "cap.db") as db:
        env = BatchEnv("square8", 2, 4)
        rec = EnvRecorder(env, db, policy="p", seed=1, max_moves=10)
        play_and_record(env, rec, np.random.default_rng(0), 8)
        rows = list(db.iter_games())
        assert all(r.capped and r.move_count == 10 for r in rows)
        first = rec.stored
        rec2 = EnvRecorder(BatchEnv("square8", 2, 2), db, policy="p", seed=1, max_moves=10)
        assert rec2.next_index == first
        env.step(env.random_actions(np.random.default_rng(1)))
        with pytest.raises(ValueError, match="needs games from their start"):
            EnvRecorder(env, db, policy="p", seed=2)  # env's games are mid-way
        # a record that is not the env's step stores nothing (these stored games that do not replay)
        env2 = BatchEnv("square8", 2, 2)
        rec3 = EnvRecorder(env2, db, policy="q", seed=3)
        acts = env2.random_actions(np.random.default_rng(4))
        env2.step(acts)
        rec3.record(acts)
        with pytest.raises(ValueError, match="EnvRecorder.record: game 0 has 1 moves in the env, but its record "
                                             "would have 2"):
            rec3.record(acts)  # the same step recorded twice
        env2.step(env2.random_actions(np.random.default_rng(5)))
        with pytest.raises(ValueError, match="game 0 has 2 moves in the env, but its record would have 1"):
            rec3.record(np.full(2, -1, np.int32))  # other actions than those stepped
        for kw in ({"seed": -1}, {"seed": 1.5}, {"policy": ""}, {"max_moves": 10**9}):
            with pytest.raises(ValueError, match="must be"):
                EnvRecorder(BatchEnv("square8", 2, 1), db, **{"policy": "q", **kw})
        assert db.count_games(policy="q") == 0


# ---- property: any interleaving of moves, sit-outs and resets keeps every slot a real game --------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

STEP = st.tuples(st.integers(0, 2**32 - 1), st.lists(st.sampled_from("mwr"), min_size=4, max_size=4))


@settings(max_examples=40, deadline=None, database=None)
@given(board=st.sampled_from(["square8", "hex8"]), players=st.integers(2, 4), steps=st.lists(STEP, max_size=40))
def test_any_interleaving_of_moves_sit_outs_and_resets_matches_single_games(board, players, steps):
    """Per slot and step: m = play a random playable action, w = sit out (-1), r = reset."""
    env = BatchEnv(board, players, 4, threads=1)
    games = [Game(board, players) for _ in range(4)]
    for seed, ops in steps:
        rng = np.random.default_rng(seed)
        acts = env.random_actions(rng)
        for i, op in enumerate(ops):
            if op != "m":
                acts[i] = -1
        env.step(acts)
        for i in np.flatnonzero(acts >= 0):
            games[i].apply(_core.move_from_record(bytes(env.last_moves[i])))
        resets = np.array([op == "r" for op in ops])
        env.reset(resets)
        for i in np.flatnonzero(resets):
            games[i] = Game(board, players)
        assert [g.hash() for g in games] == [f"{h:016x}" for h in env.hashes()]
        assert list(env.info["move_count"]) == [g.move_count for g in games]
        for i, g in enumerate(games):  # sat-out and reset games included: their rows must be right too
            assert set(np.flatnonzero(env.mask[i]).tolist()) == playable_actions(g)
            assert env.info["num_actions"][i] == len(np.flatnonzero(env.mask[i]))
            planes, _ = E.encode_state(g)
            assert np.array_equal(env.planes[i], planes)
