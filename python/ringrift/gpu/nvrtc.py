"""Run-time compilation of the self-play kernel with NVRTC, through ctypes.

The GPU path compiles the shipped C++ sources on the worker (cupy does that with its own kernel
cache); this module gives the same compilation without cupy or a GPU, so CI can prove that the
sources the wheel ships compile under NVRTC.
"""

from __future__ import annotations

import ctypes
import glob
import os

from .sources import include_dir, kernel_options, kernel_source

NVRTC_OPTIONS = ("--std=c++17", "-default-device")
# What cupy 14's RawModule adds to our own options (cupy/cuda/compiler.py): flush denormals
# (the kernels' only floats are feature ratios far from the denormal range) and device code by
# default; `as_cupy=True` compiles with exactly that set.
CUPY_ADDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


class NvrtcError(RuntimeError):
    pass


def find_libnvrtc() -> str | None:
    """Path of libnvrtc from the nvidia-cuda-nvrtc wheel, CUDA_HOME or the CUDA install."""
    candidates = []
    try:
        import nvidia.cuda_nvrtc as pkg  # installed with cupy-cuda12x[ctk] or nvidia-cuda-nvrtc-cu12

        for base in pkg.__path__:
            candidates += sorted(glob.glob(os.path.join(base, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    candidates = [c for c in candidates if "builtins" not in c and ".alt." not in c]
    return candidates[0] if candidates else None


def compile_ptx(arch: str = "compute_90", extra_options: tuple = (), source: str = "selfplay_kernel.cu",
                as_cupy: bool = False) -> str:
    """Compile a shipped kernel source to PTX for `arch`; raises NvrtcError with NVRTC's log.
    With `as_cupy`, the options are the launchers' own (layout guard included) plus what cupy
    adds to them."""
    path = find_libnvrtc()
    if path is None:
        raise NvrtcError("libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12, or set CUDA_HOME)")
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    prog = ctypes.c_void_p()
    src = kernel_source(source).encode()

    def check(code, what):
        if code != 0:
            raise NvrtcError(f"{what}: {lib.nvrtcGetErrorString(code).decode()}")

    check(lib.nvrtcCreateProgram(ctypes.byref(prog), src, source.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        base = (*kernel_options(), *CUPY_ADDED_OPTIONS) if as_cupy else (f"-I{include_dir()}", *NVRTC_OPTIONS)
        opts = [f"--gpu-architecture={arch}", *base, *extra_options]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        code = lib.nvrtcCompileProgram(prog, len(opts), arr)
        if code != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise NvrtcError(f"NVRTC compilation failed:\n{log.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
