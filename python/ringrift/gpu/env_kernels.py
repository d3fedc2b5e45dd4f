"""Launching the batch-environment kernels (csrc/selfplay/env_kernel.cu) with cupy.

Compiled at run time by NVRTC like the self-play kernel (see device.py for why), once per device
and process; cupy caches the compiled module on disk across processes.
"""

from __future__ import annotations

import numpy as np

from .device import raise_stack_limit, require_gpu
from .sources import kernel_options, kernel_source

KERNEL_NAMES = ("rr_env_reset", "rr_env_observe", "rr_env_decode", "rr_env_apply", "rr_env_hash")
_modules: dict = {}


def env_kernels() -> dict:
    """name -> cupy RawKernel for the current device; GpuUnavailable when there is no GPU."""
    require_gpu("the cuda batch environment")
    import cupy

    dev = cupy.cuda.Device().id
    if dev not in _modules:
        module = cupy.RawModule(code=kernel_source("env_kernel.cu"), options=kernel_options())
        raise_stack_limit()
        _modules[dev] = {name: module.get_function(name) for name in KERNEL_NAMES}
    return _modules[dev]


def launch(name: str, n: int, args: tuple, block: int = 64) -> None:
    """Run kernel `name` over n slots (one thread per slot)."""
    if n <= 0:
        return
    env_kernels()[name](((n + block - 1) // block,), (block,), args)


def i32(v: int) -> np.int32:
    return np.int32(v)
