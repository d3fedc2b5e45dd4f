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


# Games that reach what the common games rarely do, found by scanning seed 21: the most
# recovery steps, and (hex8, 3-4 players) recovery slides on the surface that the reference
# rejects, which the streaming heuristic judges while the generator is still running.
RARE = [
    ("hex8", 3, "random", [528, 1033, 1081, 2238, 2636, 3527, 3606, 4738]),
    ("hex8", 4, "random", [30, 1121, 1542, 1832, 3051, 3543, 3626, 3741]),
    ("hex8", 3, "heuristic", [7216, 8110, 8254, 8650, 9986, 10194, 14045, 16620]),
    ("hex8", 2, "random", [284, 416, 472, 648, 681, 813, 1081, 1095]),
    ("hex8", 2, "heuristic", [229, 313, 387, 543, 717, 812, 1445, 1856]),
    ("square8", 2, "random", [25, 36, 38, 93, 143, 715, 1313, 1453]),
    ("square8", 2, "heuristic", [664, 7428, 9132, 9209, 12452, 14921, 18954, 19835]),
    ("hexagonal", 3, "random", [20, 27, 35, 58, 69, 79, 101, 135]),
]
COMPARED = [(b, p, pol, list(range(100, 100 + GAMES[b]))) for b, p, pol in CASES] + RARE
KEYS = ("move_offsets", "move_count", "winner", "reason", "capped", "moves", "hashes", "phases", "players")


# The twin chooses moves by streaming (no move list), the pool from a filled list: equal
# buffers mean the same moves, RNG draws and per-step hashes.
@pytest.mark.parametrize("board, players, policy, games", COMPARED)
def test_kernel_host_twin_equals_the_thread_pool(board, players, policy, games):
    pool = _core.selfplay_batch(board, players, 21, games, policy, threads=2, max_moves=3000)
    twin = slots_to_batch(_core.selfplay_slots_host(board, players, 21, games, policy, 3000), games)
    for key in KEYS:
        assert np.array_equal(pool[key], twin[key]), key


@pytest.mark.parametrize("board, policy", [("square8", "random"), ("hexagonal", "heuristic")])
def test_capped_games_match_the_thread_pool(board, policy):
    games = list(range(6))
    pool = _core.selfplay_batch(board, 3, 5, games, policy, threads=1, max_moves=40)
    twin = slots_to_batch(_core.selfplay_slots_host(board, 3, 5, games, policy, 40), games)
    assert list(pool["capped"]) == [1] * 6
    for key in KEYS:
        assert np.array_equal(pool[key], twin[key]), key


def _reference_rejects_something(game):
    return any(m.type == "recovery_slide" and m.context == 1 and game.clone()._apply(m) == 5
               for m in game.legal_moves())


def test_the_compared_games_reach_every_phase_and_the_rare_surfaces():
    """Guards the comparison above against becoming vacuous: its games must choose moves in
    every phase, with every kind of decision, and on surfaces with rejected recovery slides."""
    types, phases = _core.MOVE_TYPES, _core.PHASES
    by_type, by_phase = {}, {}
    recovery_surfaces, rejecting = 0, {"random": 0, "heuristic": 0}
    for board, players, policy, games in COMPARED:
        pool = _core.selfplay_batch(board, players, 21, games, policy, threads=2, max_moves=3000)
        off = pool["move_offsets"]
        for gi in range(len(games)):
            kinds = [types[t] for t in pool["moves"][off[gi]:off[gi + 1], 0]]
            # the phase a move was chosen in is the one the previous move left
            before = ["ring_placement"] + [phases[x] for x in pool["phases"][off[gi]:off[gi + 1] - 1]]
            for k, ph in zip(kinds, before):
                by_type[k] = by_type.get(k, 0) + 1
                by_phase[ph] = by_phase.get(ph, 0) + 1
            if not {"recovery_slide", "skip_recovery"} & set(kinds):
                continue
            game = ringrift.Game(board, players)
            for i, k in enumerate(kinds):
                if k in ("recovery_slide", "skip_recovery"):  # a recovery surface has nothing else
                    recovery_surfaces += 1
                    rejecting[policy] += _reference_rejects_something(game)
                game._apply_unchecked(_core.move_from_record(pool["moves"][off[gi] + i].tobytes()))
    for ph in ("ring_placement", "movement", "capture", "chain_capture", "line_processing", "territory_processing"):
        assert by_phase.get(ph, 0) >= 1000, (ph, by_phase)
    assert by_phase.get("forced_elimination", 0) >= 100, by_phase
    for k in ("process_line", "choose_line_option", "choose_territory_option", "eliminate_rings_from_stack",
              "skip_territory_processing", "forced_elimination", "recovery_slide", "skip_recovery",
              "skip_placement", "no_movement_action", "skip_capture"):
        assert by_type.get(k, 0) >= 5, (k, by_type)
    assert by_type["process_line"] + by_type["choose_line_option"] >= 100, by_type
    assert recovery_surfaces >= 200
    assert rejecting["random"] >= 20 and rejecting["heuristic"] >= 10, rejecting


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


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
def test_both_kernels_compile_with_the_options_cupy_uses():
    from ringrift.gpu.device import launch_bounds_options

    for source, extra in (("selfplay_kernel.cu", launch_bounds_options(64, 128)), ("env_kernel.cu", ())):
        assert ".entry" in compile_ptx("compute_90", extra, source=source, as_cupy=True)


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
@pytest.mark.parametrize("source", ["selfplay_kernel.cu", "env_kernel.cu"])
def test_layout_guard_refuses_a_kernel_laid_out_unlike_the_binding(source):
    from ringrift.gpu.nvrtc import NvrtcError
    from ringrift.gpu.sources import layout_options

    layout = _core.struct_layout()
    assert layout["SIZEOF_STATE"] == _core.struct_sizes()["State"] and layout["SIZEOF_MOVE"] == 16
    assert len(layout_options()) == len(layout) + 1
    # the binding's real layout compiles (test above); a kernel that disagreed on one struct,
    # standing in for a compiler that pads differently, must not
    for name in ("SIZEOF_STATE", "ALIGNOF_GEOMETRY"):
        wrong = f"-DRR_HOST_{name}={layout[name] * 2}"
        with pytest.raises(NvrtcError, match=f"{name} differs"):
            compile_ptx("compute_90", (f"-URR_HOST_{name}", wrong), source=source, as_cupy=True)


@pytest.mark.skipif(find_libnvrtc() is None, reason="libnvrtc not installed (the test extra brings "
                    "nvidia-cuda-nvrtc-cu12 on Linux x86_64)")
def test_register_cap_travels_in_the_ptx():
    from ringrift.gpu.device import launch_bounds_options

    assert launch_bounds_options(64, None) == ()
    ptx = compile_ptx("compute_80", extra_options=launch_bounds_options(64, 128))
    # 65536 registers / (64 threads x 128) = 8 blocks per SM, kept through the driver's PTX JIT
    assert ".maxntid 64, 1, 1" in ptx and ".minnctapersm 8" in ptx


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


def test_two_cupy_packages_are_named_instead_of_failing_somewhere_inside_cupy(tmp_path, monkeypatch):
    # pip installs cupy-cuda12x beside an image's cupy-cuda13x without a word; both write `cupy/`
    for name in ("cupy_cuda12x-14.0.0", "cupy_cuda13x-14.2.0", "cupy_xarray-0.1"):
        info = tmp_path / f"{name}.dist-info"
        info.mkdir()
        dist, version = name.rsplit("-", 1)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from ringrift.gpu import GpuUnavailable, require_gpu
    from ringrift.gpu.device import cupy_packages

    assert cupy_packages() == ["cupy-cuda12x", "cupy-cuda13x"]  # cupy-xarray is no cupy build
    ok, why = gpu_status()
    assert not ok and "several cupy packages are installed (cupy-cuda12x, cupy-cuda13x)" in why
    with pytest.raises(GpuUnavailable, match="pip uninstall cupy-cuda12x cupy-cuda13x"):
        require_gpu("--device cuda", on="worker-3")


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


def test_device_wheel_is_used_only_on_the_sources_it_was_built_from(tmp_path):
    # scripts/gpu_device_run.sh installs the carried wheel only when this digest matches the one
    # recorded at build time: any edit to a source it was built from must change it
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for part in ("scripts", "csrc", "python"):
        shutil.copytree(root / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("CMakeLists.txt", "pyproject.toml"):
        shutil.copy(root / name, tmp_path / name)

    def digest() -> str:
        return subprocess.run(["bash", str(tmp_path / "scripts" / "source_digest.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()

    first = digest()
    assert len(first) == 64 and digest() == first
    (tmp_path / "python" / "ringrift" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "python" / "ringrift" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"cache")
    assert digest() == first  # caches are not sources
    header = tmp_path / "csrc" / "engine" / "defs.h"
    header.write_text(header.read_text() + "\n// an edit\n")
    assert digest() != first

