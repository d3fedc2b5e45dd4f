"""The rules core's host-only fast paths play the same games as the portable code the device runs.

csrc/engine has a few paths that only an x86-64 host compiles (SSE2 masks of the region scan and
the placement surface, state.h), a host-only cache (the region scan's components, territory.h),
and the CPU picker's random moves drawn from counts instead of a listed surface (rules.h:
placement_index, movement_index; the GPU kernel's streaming picker lists).
bench/engine_profile.cpp prints a digest of every move of a run of seeded games; built with them
and without them (-DRR_NO_HOST_SIMD), and with the list picker and the GPU kernel's streaming
picker, every digest must agree. Both pickers draw a random placement by index
(placement_move_at), so the profiler's check mode also lists every random decision's surface and
compares each index-drawn move with the listed one. The GPU kernel itself is compared with the
host where a GPU is (tests/test_gpu.py)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# (board, players, games, policy): each a second or two at -O1, together every board and player count
RUNS = [("square8", 2, 300, 0), ("square8", 4, 80, 1), ("hex8", 3, 150, 0), ("hex8", 2, 40, 1),
        ("square19", 4, 6, 0), ("hexagonal", 2, 3, 0), ("hexagonal", 3, 2, 1)]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build bench/engine_profile.cpp")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the SSE2 paths exist on x86-64 hosts only (this is {platform.machine()})")
    out = tmp_path_factory.mktemp("engine_builds")
    exes = {}
    procs = []
    for name, flags in (("simd", []), ("portable", ["-DRR_NO_HOST_SIMD"])):
        exes[name] = out / f"engine_profile_{name}"
        procs.append(subprocess.Popen([cxx, "-O1", "-std=c++17", *flags, "-I", str(REPO / "csrc"),
                                       str(REPO / "bench" / "engine_profile.cpp"), "-o", str(exes[name])],
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return exes


def run_profiler(exe: Path, board: str, players: int, games: int, policy: int, picker: str = "list") -> str:
    r = subprocess.run([str(exe), board, str(players), str(games), "7", str(policy), picker],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def digest(exe: Path, board: str, players: int, games: int, policy: int, picker: str = "list") -> str:
    out = run_profiler(exe, board, players, games, policy, picker)
    m = re.search(r"games=(\d+) moves=(\d+) capped=(\d+) digest=([0-9a-f]{16})", out)
    assert m and int(m.group(1)) == games and int(m.group(3)) == 0, out
    return m.group(4)


@pytest.mark.parametrize("board,players,games,policy", RUNS)
def test_host_fast_paths_play_the_portable_games(builds, board, players, games, policy):
    want = digest(builds["portable"], board, players, games, policy)
    assert digest(builds["simd"], board, players, games, policy) == want
    assert digest(builds["simd"], board, players, games, policy, "stream") == want
    assert digest(builds["portable"], board, players, games, policy, "stream") == want


@pytest.mark.parametrize("board,players,games", [(b, p, n) for b, p, n, policy in RUNS if policy == 0])
def test_index_drawn_moves_are_the_listed_moves(builds, board, players, games):
    # The random policy draws placements and movements by index from counts (rules.h), and both
    # pickers take placements that way: only a comparison with the listed surface can see a
    # wrong index there. Check mode compares every index of every such decision, on both builds.
    for name in ("simd", "portable"):
        out = run_profiler(builds[name], board, players, games, 0, "check")
        m = re.search(r"compared=(\d+) ", out)
        assert m and int(m.group(1)) > 1000, out
        assert re.search(r"digest=([0-9a-f]{16})", out).group(1) == digest(builds[name], board, players, games, 0)
