"""The GPU path: one rules code, compiled for the device at run time, bit-identical to the CPU.

What runs everywhere: the kernel's host twin (the same play_slot code) against the CPU thread
pool on every board and player count, and an NVRTC compilation of the sources the wheel ships.
What needs a GPU: the kernel itself against its host twin (skipped here with the reason).
"""

from __future__ import annotations

import numpy as np
import pytest

import ringrift
from ringrift import _core
from ringrift.gpu import gpu_status, slots_to_batch
from ringrift.gpu.nvrtc import compile_ptx, find_libnvrtc

BOARDS = ("square8", "hex8", "square19", "hexagonal")
GAMES = {"square8": 8, "hex8": 8, "square19": 2, "hexagonal": 2}
CASES = [(b, p, pol) for b in BOARDS for p in (2, 3, 4) for pol in ("random", "heuristic")]


@pytest.mark.parametrize("board, players, policy", CASES)
def test_kernel_host_twin_equals_the_thread_pool(board, players, policy):
    games = list(range(100, 100 + GAMES[board]))
    pool = _core.selfplay_batch(board, players, 21, games, policy, threads=2, max_moves=3000)
    twin = slots_to_batch(_core.selfplay_slots_host(board, players, 21, games, policy, 3000), games)
    for key in ("move_offsets", "move_count", "winner", "reason", "capped", "moves", "hashes", "phases", "players"):
        assert np.array_equal(pool[key], twin[key]), key


def test_capped_games_fill_exactly_their_slots():
    twin = _core.selfplay_slots_host("square8", 2, 1, [0, 1, 2], "random", 25)
    assert list(twin["move_count"]) == [25, 25, 25] and list(twin["capped"]) == [1, 1, 1]
    assert twin["moves"].shape == (75, 16)


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
def test_shipped_kernel_sources_compile_with_nvrtc():
    ptx = compile_ptx("compute_80")
    assert ".entry rr_selfplay" in ptx
    assert ".target sm_80" in ptx


def test_cuda_device_request_fails_with_one_clear_line_without_a_gpu(tmp_path):
    ok, why = gpu_status()
    if ok:
        pytest.skip("a GPU is present here")
    assert ringrift.gpu_available() is False
    from ringrift.db import GameDB
    from ringrift.gpu import GpuUnavailable
    from ringrift.selfplay import run_selfplay

    with GameDB(tmp_path / "g.db") as db, pytest.raises(GpuUnavailable, match="needs a CUDA GPU and cupy"):
        run_selfplay(db, board="square8", num_games=2, device="cuda")


@pytest.mark.skipif(not gpu_status()[0], reason=f"no GPU: {gpu_status()[1]}")
@pytest.mark.parametrize("board, players, policy", CASES)
def test_gpu_kernel_equals_host_twin(board, players, policy):
    from ringrift.gpu import selfplay_gpu

    games = list(range(GAMES[board] * 8))
    gpu = slots_to_batch(selfplay_gpu(board, players, 77, games, policy, 3000), games)
    twin = slots_to_batch(_core.selfplay_slots_host(board, players, 77, games, policy, 3000), games)
    for key in ("move_offsets", "winner", "reason", "capped", "moves", "hashes", "phases", "players"):
        assert np.array_equal(gpu[key], twin[key]), key


def test_cli_device_cuda_without_gpu_is_one_line(tmp_path):
    import subprocess
    import sys

    if gpu_status()[0]:
        pytest.skip("a GPU is present here")
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--state", str(tmp_path / "s.json"), "run",
                        "canonical_selfplay", "--board", "square8", "--num-games", "3", "--output-db",
                        str(tmp_path / "g.db"), "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "--device cuda needs a CUDA GPU and cupy" in r.stderr
    assert not (tmp_path / "g.db").exists()
