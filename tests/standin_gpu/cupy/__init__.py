"""A stand-in `cupy` for machines with no GPU (tests only; never installed with the package).

Arrays live in host memory; RawModule kernels are the shipped ones, and every launch is first
checked against the kernel's parameter list parsed from the .cu source (count, pointer or
scalar, element type behind each pointer), then run as that kernel's host twin, the same C++
per-slot code. tests/test_gpu_glue.py loads it in-process; the SSH test puts this folder on a
host's PYTHONPATH so a real remote worker runs its `--device cuda` path.
"""

from __future__ import annotations

import re
import types

import numpy as np

from ringrift import BOARDS, _core
from ringrift.gpu.sources import kernel_source

STAND_IN = True

POINTEE_DTYPES = {"unsigned char": np.uint8, "int": np.int32, "float": np.float32, "unsigned long long": np.uint64,
                  "long long": np.int64, "rr::State": np.uint8, "rr::Scratch": np.uint8,
                  "rr::Move": np.uint8, "rr::Geometry": np.uint8, "rr::EnvTables": np.uint8}
SCALAR_DTYPES = {"int": np.int32, "unsigned long long": np.uint64, "long long": np.int64}


def kernel_params(source: str) -> dict[str, list[tuple[str, bool]]]:
    """name -> [(base type, is pointer)] for every extern "C" __global__ kernel of `source`."""
    macros = {m.group(1): m.group(2).replace("\\\n", " ")
              for m in re.finditer(r"#define (\w+)((?:[^\n]*\\\n)*[^\n]*)", source)}
    out = {}
    for m in re.finditer(r'extern "C" __global__ void (?:\w+ )?(\w+)\((.*?)\)\s*\{', source, re.S):
        text = m.group(2)
        for name, body in macros.items():
            text = re.sub(rf"\b{name}\b", body, text)
        params = []
        for p in text.split(","):
            p = " ".join(p.replace("const ", "").split())
            ptr = "*" in p
            base = re.sub(r"\s*\*?\s*\w+$", "", p.replace("*", " * ")).replace("*", "").strip()
            params.append((" ".join(base.split()), ptr))
        out[m.group(1)] = params
    return out


SIGNATURES = {**kernel_params(kernel_source("selfplay_kernel.cu")), **kernel_params(kernel_source("env_kernel.cu"))}


class DeviceArray(np.ndarray):
    """A host array that answers like a cupy array where the package uses one."""

    def get(self):
        return np.asarray(self).copy()


def _wrap(a):
    return np.asarray(a).view(DeviceArray)


def _wrap_all(v):
    return tuple(_wrap(x) for x in v) if isinstance(v, tuple) else _wrap(v) if isinstance(v, np.ndarray) else v


def board_of(table: np.ndarray, maker) -> str:
    raw = np.asarray(table).tobytes()
    for b in BOARDS:
        if maker(b) == raw:
            return b
    raise AssertionError("the table passed to the kernel is no board's")


class RawModule:
    def __init__(self, code: str, options=()):
        assert "#include" in code and any(o.startswith("-I") for o in options)
        assert "-DRR_HOST_LAYOUT" in options, "kernels must be compiled with the layout guard (sources.kernel_options)"
        self.code = code

    def get_function(self, name):
        assert name in SIGNATURES, name
        return Kernel(name)


class Kernel:
    def __init__(self, name):
        self.name = name

    def __call__(self, grid, block, args):
        params = SIGNATURES[self.name]
        assert len(args) == len(params), f"{self.name}: {len(args)} arguments for {len(params)} parameters"
        for k, (arg, (base, ptr)) in enumerate(zip(args, params)):
            if ptr:
                assert isinstance(arg, np.ndarray), f"{self.name} arg {k}: {base}* needs a device array"
                assert arg.dtype == POINTEE_DTYPES[base], f"{self.name} arg {k}: {arg.dtype} for {base}*"
                assert arg.flags.c_contiguous, f"{self.name} arg {k} is not contiguous"
            else:
                assert isinstance(arg, np.generic) and arg.dtype == SCALAR_DTYPES[base], \
                    f"{self.name} arg {k}: {type(arg).__name__} for {base}"
        assert grid[0] * block[0] >= int(args[SLOT_COUNT_ARG[self.name]])
        getattr(self, self.name)(*[np.asarray(a) if isinstance(a, np.ndarray) else a for a in args])

    # Each launch runs as the host twin of that kernel.
    def rr_selfplay(self, geo, states, scratch, seed, indices, games, players, policy, max_moves, moves, hashes,
                    phases, who, move_count, winner, reason, capped):
        board = board_of(geo, _core.geometry_bytes)
        out = _core.selfplay_slots_host(board, int(players), int(seed), indices[:int(games)].tolist(),
                                        ["random", "heuristic"][int(policy)], int(max_moves))
        for dst, key in ((moves, "moves"), (hashes, "hashes"), (phases, "phases"), (who, "players"),
                         (move_count, "move_count"), (winner, "winner"), (reason, "reason"), (capped, "capped")):
            dst.reshape(-1)[:] = np.asarray(out[key]).reshape(-1)

    @staticmethod
    def _info(a):
        return dict(zip(("current", "phase", "done", "winner", "reason", "move_count", "num_actions", "values"), a))

    def rr_env_reset(self, t, states, reset, n, players, *info):
        _core.env_reset_host(board_of(t, _core.env_tables), states, reset, int(players), self._info(info))

    def rr_env_observe(self, t, states, scratch, only, n, mask, actions, features, planes, globs, *info):
        _core.env_observe_host(board_of(t, _core.env_tables), states, only, mask, actions,
                               planes if features else None, globs, self._info(info))

    def rr_env_decode(self, t, states, scratch, actions, n, chosen, error):
        _core.env_decode_host(board_of(t, _core.env_tables), states, actions, chosen, error)

    def rr_env_apply(self, t, states, scratch, actions, chosen, n, *info):
        _core.env_apply_host(board_of(t, _core.env_tables), states, actions, chosen, self._info(info))

    def rr_env_hash(self, t, states, n, out):
        out[:] = _core.env_hash_host(board_of(t, _core.env_tables), states, int(n))


SLOT_COUNT_ARG = {"rr_selfplay": 5, "rr_env_reset": 3, "rr_env_observe": 4, "rr_env_decode": 4, "rr_env_apply": 5,
                  "rr_env_hash": 2}


# ---- the part of cupy's API the package uses ---------------------------------------------------
uint8, int32, int64, uint64, float32, bool_ = np.uint8, np.int32, np.int64, np.uint64, np.float32, np.bool_
for _name in ("where", "maximum", "minimum", "cumsum", "nonzero", "flatnonzero", "searchsorted"):
    globals()[_name] = (lambda _fn: lambda *a, **k: _wrap_all(_fn(*a, **k)))(getattr(np, _name))
for _name in ("zeros", "empty", "ones", "full", "arange", "asarray", "ascontiguousarray"):
    globals()[_name] = (lambda _fn: lambda *a, **k: _wrap(_fn(*a, **k)))(getattr(np, _name))
asnumpy = lambda a: np.asarray(a).copy()  # noqa: E731
random = types.SimpleNamespace(default_rng=np.random.default_rng)
cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"stand-in"},
                                  deviceSetLimit=lambda *a: None, cudaLimitStackSize=0),
    Device=lambda: types.SimpleNamespace(id=0),
    Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=lambda: None)))
