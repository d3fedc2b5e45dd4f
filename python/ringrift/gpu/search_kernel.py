"""The net-free Gumbel search on the GPU: csrc/search/search_kernel.cu launched with cupy, one tree
per thread, each running the same search_reset + search_run_netfree as a tree of the CPU
SearchBatch (its host twin, bindings/search.cpp): same roots, seed, streams and parameters give
the same chosen actions and root values (tests/test_search.py compares them on a GPU).

Compiled at run time by NVRTC like the other kernels (see device.py), with `--fmad=false`: the
host build does not contract a*b + c into one rounding, so neither may the device, or the
backed-up values would differ in their last bits.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .device import raise_stack_limit, require_gpu
from .sources import kernel_options, kernel_source

KERNEL = "rr_search_netfree"
# SearchParams (csrc/search/gumbel.h) as the kernel reads it from device memory
PARAMS_DTYPE = np.dtype([("simulations", "<i4"), ("top_k", "<i4"), ("c_visit", "<f4"), ("c_scale", "<f4"),
                         ("gumbel_scale", "<f4")])
_kernels: dict = {}


def search_kernel():
    """The cupy RawKernel for the current device; GpuUnavailable when there is no GPU."""
    require_gpu("the cuda search kernel")
    import cupy

    dev = cupy.cuda.Device().id
    if dev not in _kernels:
        sizes = _core.search_struct_sizes()
        if sizes["SearchParams"] != PARAMS_DTYPE.itemsize:
            raise RuntimeError(f"SearchParams is {sizes['SearchParams']} bytes in this build, the launcher writes "
                               f"{PARAMS_DTYPE.itemsize}: rebuild ringrift")
        module = cupy.RawModule(code=kernel_source("search_kernel.cu"), options=kernel_options("--fmad=false"))
        raise_stack_limit()
        _kernels[dev] = module.get_function(KERNEL)
    return _kernels[dev]


def search_netfree_cuda(games, *, seed: int, streams, simulations: int, top_k: int, c_visit: float = 50.0,
                        c_scale: float = 1.0, gumbel_scale: float = 1.0, leaf: str = "heuristic",
                        rollout_moves: int = 0, max_nodes: int = 16384, block: int = 32) -> dict:
    """Search every game's current position on the GPU; returns {"action": int32 (B,), "root_value":
    float32 (B,)} as SearchBatch.results() gives them (action -1: the game is over)."""
    games = list(games)
    if not games:
        raise ValueError("games: need at least one game to search")
    board = games[0].board
    if any(g.board != board for g in games):
        raise ValueError(f"games: every game must be a {board} game")
    leaves = list(_core.SEARCH_LEAF_EVALS)
    if leaf not in leaves or leaf == "net":
        raise ValueError(f"leaf must be one of {', '.join(x for x in leaves if x != 'net')} (the kernel has no net)")
    streams = np.asarray(list(streams), dtype=np.uint64)
    n = len(games)
    if streams.shape != (n,):
        raise ValueError(f"streams: expected one per game ({n}), got {streams.shape[0]}")
    if not 1 <= top_k <= _core.SEARCH_MAX_TOPK:
        raise ValueError(f"top_k must be 1..{_core.SEARCH_MAX_TOPK}")
    kernel = search_kernel()  # GpuUnavailable, with the reason, before cupy is touched
    import cupy as cp

    sizes = _core.search_struct_sizes()
    params = np.zeros(1, dtype=PARAMS_DTYPE)
    params[0] = (simulations, top_k, c_visit, c_scale, gumbel_scale)
    tables = cp.asarray(np.frombuffer(_core.env_tables(board), dtype=np.uint8))
    roots = cp.asarray(np.frombuffer(b"".join(_core.state_bytes(g) for g in games), dtype=np.uint8))
    trees = cp.zeros(n * sizes["SearchTree"], dtype=cp.uint8)
    pools = cp.zeros(n * max_nodes * sizes["SearchNode"], dtype=cp.uint8)
    work = cp.zeros(n * sizes["SearchWork"], dtype=cp.uint8)
    action = cp.full(n, -1, dtype=cp.int32)
    value = cp.zeros(n, dtype=cp.float32)
    kernel(((n + block - 1) // block,), (block,),
           (tables, roots, trees, pools, np.int32(max_nodes), work, np.uint64(seed), cp.asarray(streams),
            np.int32(n), cp.asarray(params.view(np.uint8)), np.int32(leaves.index(leaf)), np.int32(rollout_moves),
            action, value))
    cp.cuda.get_current_stream().synchronize()
    return {"action": action.get(), "root_value": value.get()}
