"""The Python side of the GPU path, run on a machine with no GPU.

A GPU is lent to few sessions, for minutes, so a slip in the launch code (an argument missing,
swapped or of the wrong width) must not wait for one to show. Here the stand-in `cupy` of
tests/standin_gpu keeps arrays in host memory and runs each kernel launch as the kernel's host
twin (the same C++ per-slot code), after checking the launch against the kernel's parameter
list parsed from the shipped .cu source: count, pointer or scalar, and the element type behind
each pointer. What this cannot check is the device itself; tests/test_gpu.py and
test_batch_env.py do that when a GPU is present.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ringrift import _core

STANDIN = Path(__file__).resolve().parent / "standin_gpu" / "cupy" / "__init__.py"
_spec = importlib.util.spec_from_file_location("ringrift_test_standin_cupy", STANDIN)
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)
SIGNATURES, BOARDS, _wrap = standin.SIGNATURES, standin.BOARDS, standin._wrap


def test_the_parser_reads_every_kernel():
    assert set(SIGNATURES) == {"rr_selfplay", "rr_env_reset", "rr_env_observe", "rr_env_decode", "rr_env_apply",
                               "rr_env_hash"}
    assert len(SIGNATURES["rr_env_observe"]) == 18 and SIGNATURES["rr_env_observe"][3] == ("unsigned char", True)
    assert SIGNATURES["rr_selfplay"][3] == ("unsigned long long", False)


@pytest.fixture
def stand_in_gpu(monkeypatch):
    import ringrift.gpu.device as device
    import ringrift.gpu.env_kernels as env_kernels

    monkeypatch.setitem(sys.modules, "cupy", standin)
    monkeypatch.setattr(device, "_kernels", {})
    monkeypatch.setattr(env_kernels, "_modules", {})
    assert device.gpu_status() == (True, "1 device(s), device 0: stand-in")


@pytest.mark.parametrize("board, players", [("square8", 2), ("hex8", 3), ("square19", 4), ("hexagonal", 2)])
def test_cuda_batch_env_glue_matches_the_cpu_env(stand_in_gpu, board, players):
    from ringrift.selfplay import BatchEnv

    cpu, gpu = BatchEnv(board, players, 5), BatchEnv(board, players, 5, device="cuda")
    rng = np.random.default_rng(0)
    for _ in range(30):
        acts = cpu.random_actions(rng)
        cpu.step(acts)
        gpu.step(_wrap(acts))
        for a, b in ((cpu.states, gpu.states), (cpu.mask, gpu.mask), (cpu.planes, gpu.planes),
                     (cpu.legal_actions, gpu.legal_actions), (cpu.info["values"], gpu.info["values"])):
            assert np.array_equal(a, b.get())
    assert np.array_equal(cpu.hashes(), gpu.hashes().get())
    assert gpu.game(1).hash() == cpu.game(1).hash()
    g_acts = gpu.random_actions(gpu.xp.random.default_rng(1))
    assert g_acts.dtype == np.int32 and g_acts.shape == (5,)


def test_cuda_env_nbytes_adds_only_the_device_scratch(stand_in_gpu):
    from ringrift.selfplay import BatchEnv

    sizes = _core.struct_sizes()
    cpu, gpu = BatchEnv("hex8", 2, 5), BatchEnv("hex8", 2, 5, device="cuda")
    assert gpu.nbytes - cpu.nbytes == 5 * sizes["Scratch"]  # no move list per game


def test_cuda_selfplay_glue_plays_the_cpu_games_into_a_verified_db(stand_in_gpu, tmp_path):
    from ringrift.db import GameDB
    from ringrift.gpu import selfplay_gpu, slots_to_batch
    from ringrift.parity.db_check import verify_db
    from ringrift.selfplay import run_selfplay

    games = list(range(6))
    gpu = slots_to_batch(selfplay_gpu("hex8", 2, 3, games, "heuristic", 500, max_registers=128), games)
    cpu = _core.selfplay_batch("hex8", 2, 3, games, "heuristic", threads=1, max_moves=500)
    for key in ("move_offsets", "moves", "hashes", "winner", "reason", "capped"):
        assert np.array_equal(gpu[key], cpu[key]), key
    with GameDB(tmp_path / "g.db") as db:
        run_selfplay(db, board="square8", num_games=12, seed=5, device="cuda", batch_size=5)
    assert verify_db(tmp_path / "g.db", quiet=True)[:2] == (12, 12)


def test_gpu_slots_are_compacted_on_the_device_into_the_cpu_layout(stand_in_gpu):
    from ringrift.gpu import selfplay_batch_gpu
    from ringrift.gpu.device import played_rows

    # counts with empty and full games: rows must skip the unplayed tail of every slot
    counts = np.array([0, 3, 0, 4, 1], dtype=np.int32)
    want = [4, 5, 6, 12, 13, 14, 15, 16]
    for arr in (counts, _wrap(counts)):
        offsets, rows = played_rows(arr, 4)
        assert np.asarray(rows).tolist() == want and np.asarray(offsets).tolist() == [0, 0, 3, 3, 7, 8]
        assert (type(rows) is np.ndarray) == (arr is counts)  # device input stays on the device
    # a cap short enough that some games stop at it and others end before it
    games = [3, 9, 4, 11]  # 132, 118, 110 and 127 moves uncapped
    gpu = selfplay_batch_gpu("square8", 2, 2, games, "random", 125)
    cpu = _core.selfplay_batch("square8", 2, 2, games, "random", threads=1, max_moves=125)
    assert 0 < int(np.sum(cpu["capped"])) < len(games)
    for key in ("move_offsets", "move_count", "moves", "hashes", "phases", "players", "winner", "reason", "capped"):
        assert np.array_equal(gpu[key], cpu[key]) and type(gpu[key]) is np.ndarray, key


def test_env_bench_cuda_differential_runs(stand_in_gpu, monkeypatch):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "bench"))
    try:
        import env_bench
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(env_bench, "DIFF_ENVS", {b: 3 for b in BOARDS})
    assert env_bench.main(["--device", "cuda", "--envs", "4", "--steps", "2", "--boards", "square8", "hex8"]) == 0


def test_recorder_stores_games_from_a_cuda_env(stand_in_gpu, tmp_path):
    from ringrift.db import GameDB
    from ringrift.parity.db_check import verify_db
    from ringrift.selfplay import BatchEnv, EnvRecorder

    env = BatchEnv("square8", 2, 4, device="cuda")
    rng = env.xp.random.default_rng(3)
    with GameDB(tmp_path / "e.db") as db:
        rec = EnvRecorder(env, db, policy="nn", seed=1)
        for _ in range(5000):
            if rec.stored >= 6:
                break
            acts = env.random_actions(rng)
            env.step(acts)
            env.reset(rec.record(acts))
        assert rec.stored >= 6
    assert verify_db(tmp_path / "e.db", quiet=True)[0] == rec.stored
