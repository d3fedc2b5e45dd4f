"""Gumbel search (csrc/search, ringrift.search; docs/search.md): wins found in one move on every
board, improved policies over playable actions only, determinism per seed, the batched network
path against the net-free one, argument checks, and the device kernel's NVRTC compile."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_state, random_positions
from ringrift import _core
from ringrift.engine import Game, IllegalMoveError
from ringrift.gpu import gpu_status
from ringrift.gpu.nvrtc import find_libnvrtc
from ringrift.search import GumbelSearch, uniform_evaluator

BOARDS = ["square8", "hex8", "square19", "hexagonal"]
# P2's lone ring, far from P1's corner stack (an (x, y) of every board)
FAR = {"square8": (7, 7), "hex8": (-3, -1), "square19": (18, 18), "hexagonal": (-10, -2)}


def one_move_from_a_win(board: str) -> Game:
    """P1 needs one more eliminated ring; exactly one move (its height-2 stack landing on P2's
    marker, which eliminates P1's top ring, credited to P1) wins on the spot."""
    threshold = Game(board, 2).to_json()["victoryThreshold"]
    return Game.from_json(make_state(board, 2, stacks={(0, 0): [1, 1], FAR[board]: [2]}, markers={(0, 3): 2},
                                     hands=[0, 0], eliminated=[threshold - 1, 0]))


def winning_moves(game: Game) -> list:
    wins = []
    for m in game.legal_moves():
        child = game.clone()
        child.apply(m)
        if child.winner == game.current_player:
            wins.append(m)
    return wins


def playable_actions(game: Game) -> set:
    """Canonical actions of the legal moves the reference accepts."""
    out = set()
    for m in game.legal_moves():
        try:
            game.clone().apply(m)
        except IllegalMoveError:
            continue
        out.add(_core.export.canonical_action_index(game, m))
    return out


@pytest.mark.parametrize("board", BOARDS)
def test_a_uniform_net_finds_the_winning_move_on_every_board(board):
    game = one_move_from_a_win(board)
    wins = winning_moves(game)
    legal = game.legal_moves()
    assert len(wins) == 1 and len(legal) >= 17  # one move in many: chance would miss it
    search = GumbelSearch([game] * 6, simulations=100, top_k=64, seed=11, evaluator="zero")
    net = search.run(uniform_evaluator(_core.export.action_space(board)["size"]))
    free = search.run()  # the net-free "zero" evaluator is the same uniform net, in C++
    for r in net + free:
        assert r.move == wins[0]
        assert int(r.actions[np.argmax(r.policy)]) == r.action  # the improved policy agrees
        assert r.root_value > 0
    assert [r.action for r in net] == [r.action for r in free]
    assert all(np.array_equal(a.visits, b.visits) and np.allclose(a.policy, b.policy) for a, b in zip(net, free))


def test_too_few_simulations_are_a_coin_toss_so_the_win_test_can_fail():
    # the test above is only meaningful if the search, starved, misses the win sometimes
    game = one_move_from_a_win("square19")
    wins = winning_moves(game)
    results = GumbelSearch([game] * 12, simulations=8, top_k=64, seed=11, evaluator="zero").run()
    assert sum(r.move == wins[0] for r in results) < 12


def sample_positions():
    for board, players, seed in (("square8", 2, 1), ("hex8", 3, 2), ("square8", 4, 3)):
        for game in random_positions(board, players, seed, max_moves=320, every=23):
            if game.status == "active":
                yield game.clone()


def test_improved_policies_are_distributions_over_playable_actions_only():
    positions = list(sample_positions())
    phases = {g.phase for g in positions}
    assert {"ring_placement", "movement"} <= phases and len(phases) >= 3, phases
    by_board = {}
    for g in positions:
        by_board.setdefault(g.board, []).append(g)
    for board, games in by_board.items():
        for evaluator in ("heuristic", "rollout"):
            results = GumbelSearch(games, simulations=24, top_k=8, seed=5, evaluator=evaluator,
                                   rollout_moves=16).run()
            for g, r in zip(games, results):
                assert len(set(r.actions.tolist())) == len(r.actions)
                assert set(r.actions.tolist()) == playable_actions(g)
                assert np.all(r.policy >= 0) and abs(float(r.policy.sum()) - 1) < 1e-4
                assert abs(float(r.prior.sum()) - 1) < 1e-4
                assert r.action in set(r.actions.tolist())
                if len(r.actions) > 1:
                    assert int(r.visits.sum()) == 24 and r.simulations == 24
                # the chosen move is the game's own legal move with that action
                child = g.clone()
                child.apply(r.move)


def test_search_is_deterministic_per_seed_and_independent_of_threads():
    games = [Game("square8", 2), Game("square8", 2)]
    first = GumbelSearch(games * 3, simulations=32, top_k=16, seed=7, evaluator="rollout").run()
    again = GumbelSearch(games * 3, simulations=32, top_k=16, seed=7, evaluator="rollout", threads=2).run()
    other = GumbelSearch(games * 3, simulations=32, top_k=16, seed=8, evaluator="rollout").run()
    key = lambda rs: [(r.action, r.visits.tolist(), r.policy.tolist(), r.root_value) for r in rs]
    assert key(first) == key(again)
    assert key(first) != key(other)
    # the same game in two trees with different streams searches differently
    assert len({r.action for r in first}) > 1


def test_the_network_sees_the_leaf_features_of_the_export_and_the_root_first():
    games = [Game("hex8", 2), Game("hex8", 3)]
    seen = []

    def evaluate(planes, globals_):
        seen.append((planes.copy(), globals_.copy()))
        n = planes.shape[0]
        return np.zeros((n, _core.export.action_space("hex8")["size"]), np.float32), np.zeros((n, 4), np.float32)

    results = GumbelSearch(games, simulations=10, top_k=4, seed=1).run(evaluate)
    assert len(seen) == 11  # the roots, then one leaf per tree per simulation
    for i, g in enumerate(games):
        planes, globals_ = _core.export.encode_state(g)
        assert np.array_equal(seen[0][0][i], planes) and np.array_equal(seen[0][1][i], globals_)
    assert all(r.simulations == 10 for r in results)


def test_network_priors_steer_the_search():
    game = Game("square8", 2)
    size = _core.export.action_space("square8")["size"]
    favourite = int(sorted(playable_actions(game))[5])

    def evaluate(planes, globals_):
        logits = np.zeros((planes.shape[0], size), np.float32)
        logits[:, favourite] = 20.0
        return logits, np.zeros(planes.shape[0], np.float32)

    for r in GumbelSearch([game] * 4, simulations=16, top_k=4, seed=2).run(evaluate):
        assert r.action == favourite and r.prior.max() > 0.99


def test_run_searches_the_games_as_they_are_when_it_is_called():
    game = Game("square8", 2)
    search = GumbelSearch([game], simulations=4, top_k=4, seed=1)
    first = search.run()[0]
    game.apply(first.move)  # now P1 must move the placed stack
    second = search.run()[0]
    assert set(second.actions.tolist()) == playable_actions(game) != playable_actions(Game("square8", 2))


def test_finished_games_and_forced_moves():
    over = Game.from_json(make_state("square8", 2, stacks={(0, 0): [1]}, hands=[0, 0]))
    over.apply(next(m for m in over.legal_moves()))
    assert over.status == "completed"
    forced = Game.from_json(make_state("square8", 2, stacks={(0, 0): [1, 1], (7, 7): [2]}, hands=[0, 0],
                                       phase="line_processing"))
    n_forced = forced.num_legal_moves()
    r_over, r_forced = GumbelSearch([over, forced], simulations=16, seed=1, evaluator="heuristic").run()
    assert r_over.action == -1 and r_over.move is None and len(r_over.actions) == 0
    if n_forced == 1:  # a single playable action is chosen without spending simulations
        assert r_forced.simulations == 0 and r_forced.policy.tolist() == [1.0]


def test_bad_arguments_are_one_clear_error():
    g = Game("square8", 2)
    with pytest.raises(ValueError, match="top_k"):
        GumbelSearch([g], top_k=0)
    with pytest.raises(ValueError, match="max_nodes"):
        GumbelSearch([g], max_nodes=100)
    with pytest.raises(ValueError, match="one board"):
        GumbelSearch([g, Game("hex8", 2)])
    with pytest.raises(ValueError, match="evaluator"):
        GumbelSearch([g], evaluator="oracle")
    with pytest.raises(ValueError, match="c_scale"):
        GumbelSearch([g], c_scale=float("nan"))
    for big in ({"c_scale": 1e308}, {"c_visit": 1e39}):  # finite, but inf in float: an all-NaN improved policy
        with pytest.raises(ValueError, match="must be a number 0..1e6"):
            GumbelSearch([g], **big)
    # a numpy count sizes the node pool as an int does (it got the 8,193-node minimum and filled up)
    assert GumbelSearch([g], simulations=np.int64(1000)).max_nodes == GumbelSearch([g], simulations=1000).max_nodes
    assert GumbelSearch([g], simulations=1 << 20).max_nodes == 1 << 24  # the largest pool, not an error
    with pytest.raises(TypeError, match="ringrift.Game"):
        GumbelSearch(["square8"])
    with pytest.raises(ValueError, match="at least one"):
        GumbelSearch([])
    search = GumbelSearch([g], simulations=4)
    with pytest.raises(ValueError, match="logits of shape"):
        search.run(lambda p, q: (np.zeros((p.shape[0], 3), np.float32), np.zeros(p.shape[0], np.float32)))
    size = _core.export.action_space("square8")["size"]
    with pytest.raises(ValueError, match="non-finite"):
        search.run(lambda p, q: (np.full((p.shape[0], size), np.nan, np.float32), np.zeros(p.shape[0], np.float32)))
    with pytest.raises(ValueError, match="values of shape"):
        search.run(lambda p, q: (np.zeros((p.shape[0], size), np.float32), np.zeros((p.shape[0], 2), np.float32)))
    batch = _core.SearchBatch("square8", [g], 0, [0], 4, 4, 50.0, 1.0, 1.0, "net", 0, 9000, 1)
    with pytest.raises(ValueError, match="no leaves are waiting"):
        batch.apply(np.zeros((1, size), np.float32), np.zeros(1, np.float32))
    assert batch.select() == 1
    with pytest.raises(ValueError, match="have not been given"):
        batch.select()


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
def test_search_kernel_compiles_with_nvrtc():
    # NVRTC has no C library headers: this catches a search header that only compiles because a
    # host include brought something in. -G (no device optimisation) keeps it under a second; the
    # optimised device build is the nvcc compile check (scripts/check_cuda_compile.sh, in CI).
    from ringrift.gpu.nvrtc import compile_ptx

    assert ".entry rr_search_netfree" in compile_ptx("compute_90", ("-G",), source="search_kernel.cu")


def positions_on(board: str, players: int, seed: int) -> list:
    """Live positions of one random game (its start included), a few dozen moves apart."""
    every = 40 if board in ("square8", "hex8") else 120
    return [g.clone() for g in random_positions(board, players, seed, max_moves=12 * every, every=every)
            if g.status == "active"]


@pytest.mark.skipif(not gpu_status()[0], reason=f"no GPU: {gpu_status()[1]}")
@pytest.mark.parametrize("board, players", [("square8", 2), ("hex8", 3), ("square19", 2), ("hexagonal", 4)])
@pytest.mark.parametrize("leaf, gumbel_scale", [("rollout", 0.0), ("heuristic", 0.0), ("heuristic", 1.0)])
def test_cuda_search_kernel_equals_its_host_twin(board, players, leaf, gumbel_scale):
    # The device twin: one tree per GPU thread against the CPU SearchBatch with the same roots,
    # seed, streams and parameters. Integer play and basic float operations round the same on both
    # sides (the kernel is built without FMA contraction); logf and expf need not, so with Gumbel
    # noise (gumbel_scale 1) a root value may differ in its last bits and, rarely, a near-tie at
    # the root may break the other way.
    from ringrift.gpu.search_kernel import search_netfree_cuda

    games = positions_on(board, players, seed=17)
    streams = [1000 + i for i in range(len(games))]
    kw = dict(seed=5, streams=streams, simulations=24, top_k=8, gumbel_scale=gumbel_scale, rollout_moves=16)
    host = GumbelSearch(games, evaluator=leaf, max_nodes=16384, **kw).run()
    dev = search_netfree_cuda(games, leaf=leaf, max_nodes=16384, **kw)
    actions = np.array([r.action for r in host], dtype=np.int32)
    values = np.array([r.root_value for r in host], dtype=np.float32)
    if gumbel_scale == 0.0:
        assert np.array_equal(dev["action"], actions)
        assert np.array_equal(dev["root_value"], values)
    else:
        assert np.mean(dev["action"] == actions) >= 0.9
        same = dev["action"] == actions
        assert np.allclose(dev["root_value"][same], values[same], rtol=1e-4, atol=1e-5)


def test_the_search_kernel_launcher_without_a_gpu_says_so():
    if gpu_status()[0]:
        pytest.skip("a GPU is present here: the twin test runs instead")
    from ringrift.gpu import GpuUnavailable
    from ringrift.gpu.search_kernel import PARAMS_DTYPE, search_netfree_cuda

    assert _core.search_struct_sizes()["SearchParams"] == PARAMS_DTYPE.itemsize  # the bytes the launcher writes
    with pytest.raises(GpuUnavailable, match="the cuda search kernel"):
        search_netfree_cuda([Game("square8", 2)], seed=0, streams=[0], simulations=4, top_k=4)


def test_the_search_bench_and_match_scripts_run(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    out = tmp_path / "search.json"
    subprocess.run([sys.executable, str(bench / "search_bench.py"), "--quick", "--boards", "hex8", "--evaluators",
                    "heuristic,net", "--simulations", "8", "--json", str(out)], check=True, capture_output=True)
    rows = json.loads(out.read_text())["rows"]
    assert [r["evaluator"] for r in rows] == ["heuristic", "net"] and all(r["simulations"] > 0 for r in rows)
    proc = subprocess.run([sys.executable, str(bench / "search_match.py"), "--games", "2", "--max-moves", "40",
                           "--a", "heuristic:4", "--b", "zero:0"], check=True, capture_output=True, text=True)
    assert "of 2" in proc.stdout
