"""Launching the self-play kernel with cupy.

Why NVRTC at run time rather than a prebuilt fatbin: the wheel then builds on any machine with
no CUDA toolkit (CPU-only workers install the same package), the kernel is compiled for the
exact GPU it runs on (no sm_80 / sm_90 / PTX matrix to maintain), and cupy caches the compiled
module on disk, so the cost is a few seconds once per worker and engine version.
"""

from __future__ import annotations

import re

import numpy as np

from .. import _core
from .sources import kernel_options, kernel_source

# Deepest per-thread stack the rules need (flood-fill queues and region buffers), with margin:
# nvcc 13 reports 4.9 KB for rr_selfplay on sm_90. Per game the kernel needs only its State and
# Scratch in global memory (about 16 KB): it chooses moves without a move list.
KERNEL_STACK_BYTES = 32 * 1024
POLICIES = {name: code for code, name in enumerate(_core.POLICIES)}  # the kernel's policy codes


from ..engine.errors import RingRiftError


class GpuUnavailable(RingRiftError, RuntimeError):
    """No usable CUDA GPU, or cupy is not installed."""


_CUPY_PACKAGE = re.compile(r"^cupy(-cuda\d+x?|-rocm-[\d-]+)?$")


def cupy_packages() -> list[str]:
    """The cupy distributions installed (cupy, cupy-cuda12x, cupy-cuda13x, ...): each installs the
    same `cupy` module, so with two of them one has overwritten the other's files."""
    from importlib import metadata

    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    return sorted(n for n in names if _CUPY_PACKAGE.match(n))


def gpu_status() -> tuple[bool, str]:
    """(available, explanation)."""
    packages = cupy_packages()
    if len(packages) > 1:
        return False, (f"several cupy packages are installed ({', '.join(packages)}) and overwrite one another: "
                       f"keep the one for this machine's CUDA (pip uninstall {' '.join(packages)}, then "
                       "pip install 'ringrift[gpu]' or 'ringrift[gpu-cuda13]')")
    try:
        import cupy
    except ImportError:
        return False, "cupy is not installed (pip install 'ringrift[gpu]')"
    except Exception as exc:  # a broken CUDA install can fail at import
        return False, f"cupy failed to import: {exc}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no usable CUDA device: {exc}"
    if n < 1:
        return False, "no CUDA device found"
    try:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        name = name.decode() if isinstance(name, bytes) else name
    except Exception:
        name = "CUDA device"
    return True, f"{n} device(s), device 0: {name}"


def gpu_available() -> bool:
    return gpu_status()[0]


def require_gpu(what: str = "--device cuda", on: str | None = None) -> None:
    """Raise GpuUnavailable, in one line with the reason, when the GPU path cannot run here."""
    ok, why = gpu_status()
    if not ok:
        raise GpuUnavailable(f"{what} needs a CUDA GPU and cupy{f' on {on}' if on else ''}: {why}")


# Games per kernel launch (and DB commit) when no batch size is given: enough to fill a GPU.
GPU_BATCH = {"square8": 65536, "hex8": 65536, "square19": 8192, "hexagonal": 8192}


def selfplay_batch_gpu(board: str, num_players: int, seed: int, games, policy: str, max_moves: int) -> dict:
    """The GPU counterpart of ``_core.selfplay_batch``: the same games, in the same flat layout."""
    games = list(games)
    return slots_to_batch(selfplay_gpu(board, num_players, seed, games, policy, max_moves, as_cupy=True), games)


_kernels: dict = {}


def raise_stack_limit() -> None:
    """Give every GPU thread KERNEL_STACK_BYTES of stack (the rules' local buffers need ~5 KB)."""
    import cupy

    runtime = cupy.cuda.runtime
    # cudaLimitStackSize is 0 in CUDA's enum; the fallback covers a cupy that does not export it
    runtime.deviceSetLimit(getattr(runtime, "cudaLimitStackSize", 0), KERNEL_STACK_BYTES)


REGISTERS_PER_SM = 65536  # every architecture from sm_50 to sm_90


def launch_bounds_options(block: int, max_registers: int | None) -> tuple:
    """NVRTC options for the kernel's optional occupancy hint (see selfplay_kernel.cu): enough
    blocks of `block` threads per SM that each thread gets at most `max_registers`."""
    if not max_registers:
        return ()
    min_blocks = max(1, REGISTERS_PER_SM // (block * int(max_registers)))
    return (f"-DRR_LAUNCH_BLOCK={int(block)}", f"-DRR_LAUNCH_MIN_BLOCKS={min_blocks}")


def _kernel(block: int = 64, max_registers: int | None = None):
    """The compiled kernel for the current device. ``max_registers`` caps registers per thread
    (fewer registers, more resident games, perhaps spills; bench/gpu_bench.py measures which
    is faster); None leaves the choice to the compiler."""
    import cupy

    key = (cupy.cuda.Device().id, block if max_registers else None, max_registers)
    if key not in _kernels:
        options = kernel_options(*launch_bounds_options(block, max_registers))
        module = cupy.RawModule(code=kernel_source(), options=options)
        _kernels[key] = module.get_function("rr_selfplay")
        raise_stack_limit()
    return _kernels[key]


def selfplay_gpu(board: str, num_players: int, seed: int, games, policy: str = "random",
                 max_moves: int = 2000, block: int = 64, as_cupy: bool = False,
                 max_registers: int | None = None) -> dict:
    """Play the given game indices on the GPU, one game per thread.

    Returns the fixed-capacity layout of ``_core.selfplay_slots_host`` (the kernel's host twin):
    per game ``move_count``, ``winner``, ``reason``, ``capped``; per slot ``max_moves`` rows of
    ``moves`` (16-byte records), ``hashes``, ``phases``, ``players``. With ``as_cupy`` the arrays
    stay on the device (cupy arrays, ``__cuda_array_interface__``), else they are numpy.
    """
    ok, why = gpu_status()
    if not ok:
        raise GpuUnavailable(why)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (expected random or heuristic)")
    import cupy as cp

    sizes = _core.struct_sizes()
    idx = np.asarray(list(games), dtype=np.int64)
    G = len(idx)
    cap = G * max_moves
    geometry = cp.asarray(np.frombuffer(_core.geometry_bytes(board), dtype=np.uint8))
    states = cp.empty(max(G, 1) * sizes["State"], dtype=cp.uint8)
    scratch = cp.empty(max(G, 1) * sizes["Scratch"], dtype=cp.uint8)
    out = {
        "moves": cp.empty((cap, sizes["Move"]), dtype=cp.uint8),
        "hashes": cp.empty(cap, dtype=cp.uint64),
        "phases": cp.empty(cap, dtype=cp.uint8),
        "players": cp.empty(cap, dtype=cp.uint8),
        "move_count": cp.zeros(G, dtype=cp.int32),
        "winner": cp.zeros(G, dtype=cp.uint8),
        "reason": cp.zeros(G, dtype=cp.uint8),
        "capped": cp.zeros(G, dtype=cp.uint8),
    }
    if G:
        kernel = _kernel(block, max_registers)
        grid = (G + block - 1) // block
        kernel((grid,), (block,), (geometry, states, scratch, np.uint64(seed), cp.asarray(idx), np.int32(G),
                                   np.int32(num_players), np.int32(POLICIES[policy]), np.int32(max_moves),
                                   out["moves"], out["hashes"], out["phases"], out["players"], out["move_count"],
                                   out["winner"], out["reason"], out["capped"]))
        cp.cuda.Stream.null.synchronize()
    if not as_cupy:
        out = {k: cp.asnumpy(v) for k, v in out.items()}
    out["max_moves"] = max_moves
    return out


def _array_module(a):
    """numpy for host arrays, cupy for device arrays (anything else numpy-like with ``get``)."""
    if type(a) is np.ndarray or not hasattr(a, "get"):
        return np
    import cupy

    return cupy


def played_rows(counts, max_moves: int):
    """(offsets, rows): per game the offset of its first move in the flat layout, and, move after
    move, the row of the fixed-capacity slot buffers that holds it (game i's moves sit in rows
    i * max_moves ... i * max_moves + count_i - 1). Vectorised on the arrays' own device."""
    xp = _array_module(counts)
    counts = counts.astype(xp.int64)
    offsets = xp.zeros(len(counts) + 1, dtype=xp.int64)
    offsets[1:] = xp.cumsum(counts)
    k = xp.arange(int(offsets[-1]), dtype=xp.int64)
    shift = xp.arange(len(counts), dtype=xp.int64) * max_moves - offsets[:-1]  # slot row minus flat offset
    if xp is np:  # numpy repeats by an array of counts (on the host, faster than the search below)
        return offsets, k + np.repeat(shift, counts)
    # cupy's repeat takes no device array of counts: find each move's game by binary search instead
    return offsets, k + shift[xp.searchsorted(offsets[1:], k, side="right")]


def slots_to_batch(slots: dict, games) -> dict:
    """Fixed-capacity slot buffers -> the flat layout of ``_core.selfplay_batch`` (for the DB).
    Slots still on the GPU (``selfplay_gpu(as_cupy=True)``) are compacted there, so only the
    moves played cross to the host, not every game's ``max_moves`` rows."""
    from ..selfplay.batch_env import to_host

    offsets, rows = played_rows(slots["move_count"], slots["max_moves"])
    counts = to_host(slots["move_count"]).astype(np.int64)
    G = len(counts)
    return {
        "game_index": np.asarray(list(games), dtype=np.int64),
        "move_offsets": to_host(offsets),
        "move_count": counts.astype(np.int32),
        "winner": to_host(slots["winner"]).astype(np.uint8),
        "reason": to_host(slots["reason"]).astype(np.uint8),
        "capped": to_host(slots["capped"]).astype(np.uint8),
        "seconds": np.zeros(G),
        "moves": to_host(slots["moves"][rows]),
        "hashes": to_host(slots["hashes"][rows]),
        "hash_kind": "cells64",  # the kernel records cells_state_hash (engine/fast_hash.h), as the CPU runner
        "phases": to_host(slots["phases"][rows]),
        "players": to_host(slots["players"][rows]),
        "total_moves": int(counts.sum()),
        "wall_seconds": 0.0,
        "threads": 0,
    }
