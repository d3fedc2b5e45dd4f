"""The Python side of the GPU path, run on a machine with no GPU.

A GPU is lent to few sessions, for minutes, so a slip in the launch code (an argument missing,
swapped or of the wrong width) must not wait for one to show. Here a stand-in `cupy` keeps
arrays in host memory and runs each kernel launch as the kernel's host twin (the same C++ per
slot code), after checking the launch against the kernel's parameter list parsed from the
shipped .cu source: count, pointer or scalar, and the element type behind each pointer. What
this cannot check is the device itself; tests/test_gpu.py and test_batch_env.py do that when a
GPU is present.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from ringrift import _core
from ringrift.gpu.sources import kernel_source

BOARDS = ("square8", "hex8", "square19", "hexagonal")
POINTEE_DTYPES = {"unsigned char": np.uint8, "int": np.int32, "float": np.float32, "unsigned long long": np.uint64,
                  "long long": np.int64, "rr::State": np.uint8, "rr::Scratch": np.uint8, "rr::MoveList": np.uint8,
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


def test_the_parser_reads_every_kernel():
    assert set(SIGNATURES) == {"rr_selfplay", "rr_env_reset", "rr_env_observe", "rr_env_decode", "rr_env_apply",
                               "rr_env_hash"}
    assert len(SIGNATURES["rr_env_observe"]) == 18 and SIGNATURES["rr_env_observe"][5] == ("unsigned char", True)
    assert SIGNATURES["rr_selfplay"][3] == ("unsigned long long", False)


class DeviceArray(np.ndarray):
    """A host array that answers like a cupy array where the package uses one."""

    def get(self):
        return np.asarray(self).copy()


def _wrap(a):
    return np.asarray(a).view(DeviceArray)


def fake_cupy() -> types.ModuleType:
    cp = types.ModuleType("cupy")
    for name in ("uint8", "int32", "int64", "uint64", "float32", "bool_"):
        setattr(cp, name, getattr(np, name))
    for name in ("where", "maximum", "minimum", "cumsum", "nonzero", "flatnonzero"):
        fn = getattr(np, name)
        setattr(cp, name, lambda *a, _fn=fn, **k: _wrap_all(_fn(*a, **k)))
    for name in ("zeros", "empty", "ones", "full", "arange", "asarray", "ascontiguousarray"):
        fn = getattr(np, name)
        setattr(cp, name, lambda *a, _fn=fn, **k: _wrap(_fn(*a, **k)))
    cp.asnumpy = lambda a: np.asarray(a).copy()
    cp.random = types.SimpleNamespace(default_rng=np.random.default_rng)
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"stand-in"},
                                    deviceSetLimit=lambda *a: None, cudaLimitStackSize=0)
    cp.cuda = types.SimpleNamespace(runtime=runtime, Device=lambda: types.SimpleNamespace(id=0),
                                    Stream=types.SimpleNamespace(null=types.SimpleNamespace(synchronize=lambda: None)))
    cp.RawModule = RawModule
    return cp


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

    def rr_env_observe(self, t, states, scratch, lists, n, mask, actions, features, planes, globs, *info):
        _core.env_observe_host(board_of(t, _core.env_tables), states, mask, actions, planes if features else None,
                               globs, self._info(info))

    def rr_env_decode(self, t, states, scratch, lists, actions, n, chosen, error):
        _core.env_decode_host(board_of(t, _core.env_tables), states, actions, chosen, error)

    def rr_env_apply(self, t, states, scratch, actions, chosen, n, *info):
        _core.env_apply_host(board_of(t, _core.env_tables), states, actions, chosen, self._info(info))

    def rr_env_hash(self, t, states, n, out):
        out[:] = _core.env_hash_host(board_of(t, _core.env_tables), states, int(n))


SLOT_COUNT_ARG = {"rr_selfplay": 5, "rr_env_reset": 3, "rr_env_observe": 4, "rr_env_decode": 5, "rr_env_apply": 5,
                  "rr_env_hash": 2}


@pytest.fixture
def stand_in_gpu(monkeypatch):
    import ringrift.gpu.device as device
    import ringrift.gpu.env_kernels as env_kernels

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
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
