"""A batch of games stepped together by an outside policy: the hook for a neural network in the loop.

``BatchEnv(board, players, n, device="cpu"|"cuda")`` owns every array it works on, numpy on the
CPU and cupy on the GPU, and updates them in place: the policy reads ``mask`` / ``planes`` /
``globals`` where they lie (on a GPU, cupy arrays with ``__cuda_array_interface__``, so torch or
jax take them without a copy) and hands back one action per game. On both devices the per-game
work is the same C++ code (csrc/selfplay/batch_env.h): CUDA kernels on the GPU, their host twin
on the CPU.

Actions are canonical indices of the board's action space (docs/npz_format.md): ``mask[i, a]``
is True exactly when ``a`` names a playable move of game i, and ``step`` accepts exactly those.
Give -1 for a game that should not move (a finished one, say). A batch with any bad action is
refused whole with :class:`IllegalActionError`, and no game moves.
"""

from __future__ import annotations

import operator
import threading

import numpy as np

from .. import BOARDS, _core
from ..engine.errors import RingRiftError
from ..engine.game import Game

_E = _core.export
INFO_U8 = ("current", "phase", "done", "winner", "reason")
INFO_I32 = ("move_count", "num_actions")


# Games per env: far above any batch a policy evaluates at once (the largest bench runs 4,096),
# low enough that a typo is refused before gigabytes of arrays are allocated.
MAX_ENVS = 1 << 17


def _count(value, name: str) -> int:
    """An integer argument (numpy ints too); a float or bool is refused rather than truncated."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def to_host(a) -> np.ndarray:
    """A numpy array of an env array: a copy from the GPU for cupy arrays, else a view."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


class IllegalActionError(RingRiftError, ValueError):
    """A step with actions that do not name playable moves; no game of the batch was changed."""

    def __init__(self, message, *, slots, actions, reasons):
        super().__init__(message)
        self.slots, self.actions, self.reasons = slots, actions, reasons


class BatchEnv:
    """``num_envs`` games of ``board`` with ``num_players`` seats, stepped in lock step.

    Arrays (all updated in place, never reallocated, and written only by the env: the mask is
    cleared through the previous action list, so an outside write to it would stick):
      states   (n, STATE_BYTES) uint8   the raw game states (host layout == device layout)
      mask     (n, A) bool              playable canonical actions of each game (A = action space)
      legal_actions (n, K) int32        the same actions as a list: row i holds
                                        info["num_actions"][i] of them, in surface order
      planes   (n, C, H, W) float32     feature planes from the mover's view (features=True)
      globals  (n, G) float32           global features
      info     dict of (n,) arrays      current, phase, done, winner, reason, move_count,
                                        num_actions, and values (n, 4): outcome per seat 1..4
      last_moves (n, 16) uint8          the move record each game played in the last step

    On the CPU the per-game work runs on ``threads`` native threads (0 = all cores).
    """

    def __init__(self, board: str, num_players: int, num_envs: int, *, device: str = "cpu",
                 features: bool = True, threads: int = 0, block: int = 64):
        if board not in BOARDS:
            raise ValueError(f"unknown board {board!r} (expected square8, hex8, square19 or hexagonal)")
        num_players, num_envs, threads = (_count(v, name) for v, name in ((num_players, "num_players"),
                                                                           (num_envs, "num_envs"), (threads, "threads")))
        if num_players not in (2, 3, 4):
            raise ValueError(f"num_players must be 2, 3 or 4, got {num_players}")
        if not 1 <= num_envs <= MAX_ENVS:
            raise ValueError(f"num_envs must be 1..{MAX_ENVS}, got {num_envs}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r} (expected cpu or cuda)")
        self.board, self.num_players, self.n, self.device = board, num_players, int(num_envs), device
        self.features, self.threads, self.block = bool(features), threads, block
        # step/reset/observe write the shared arrays without the GIL: calls from several Python
        # threads are serialised (unserialised, they corrupted games and crashed the interpreter)
        self._lock = threading.RLock()
        if device == "cuda":
            from ..gpu import env_kernels

            env_kernels.env_kernels()  # GpuUnavailable, with the reason, before cupy is touched
            import cupy as xp

            self._k = env_kernels
            self._tables = xp.asarray(np.frombuffer(_core.env_tables(board), dtype=np.uint8))
        else:
            xp = np
        self.xp = xp
        sizes = _core.struct_sizes()
        self.action_size = _E.action_space(board)["size"]
        h, w = _E.spatial_size(board)
        n = self.n
        self.states = xp.zeros((n, sizes["State"]), dtype=xp.uint8)
        self._mask_u8 = xp.zeros((n, self.action_size), dtype=xp.uint8)
        self.mask = self._mask_u8.view(xp.bool_)
        self.legal_actions = xp.zeros((n, _core.ENV_MAX_ACTIONS), dtype=xp.int32)
        fshape = (n, _E.NUM_PLANES, h, w) if features else (1, 1)
        self.planes = xp.zeros(fshape, dtype=xp.float32)
        self.globals = xp.zeros((n, _E.NUM_GLOBALS) if features else (1, 1), dtype=xp.float32)
        self.info = {k: xp.zeros(n, dtype=xp.uint8) for k in INFO_U8}
        self.info.update({k: xp.zeros(n, dtype=xp.int32) for k in INFO_I32})
        self.info["values"] = xp.zeros((n, 4), dtype=xp.float32)
        self.last_moves = xp.zeros((n, sizes["Move"]), dtype=xp.uint8)
        self._error = xp.zeros(n, dtype=xp.uint8)
        self._all = xp.ones(n, dtype=xp.uint8)
        if device == "cuda":
            self._scratch = xp.empty(n * sizes["Scratch"], dtype=xp.uint8)
        self.reset()

    # ---- the loop ----------------------------------------------------------------------------

    def reset(self, which=None) -> None:
        """Start new games in the slots where ``which`` is true (all when None), then observe them."""
        with self._lock:
            self._reset(which)

    def observe(self, only=None) -> None:
        """Recompute ``mask`` (and ``planes`` / ``globals``) and ``info`` from the states: of every
        game, or of the games where the uint8 mask ``only`` is nonzero (the others did not change)."""
        with self._lock:
            self._observe(only)

    def step(self, actions) -> None:
        """Play one action per game (-1 = leave the game as it is), then observe.

        Raises IllegalActionError, changing nothing, when any action is not a playable move, and
        TypeError / ValueError for actions that are not integers in int32's range (no cast).
        """
        with self._lock:
            self._step(actions)

    def _reset(self, which=None) -> None:
        xp = self.xp
        flags = xp.ones(self.n, dtype=xp.uint8) if which is None else self._slot_flags(which)
        if self.device == "cuda":
            self._k.launch("rr_env_reset", self.n, (self._tables, self.states, flags, self._k.i32(self.n),
                                                   self._k.i32(self.num_players), *self._info_args()), self.block)
        else:
            _core.env_reset_host(self.board, self.states, flags, self.num_players, self.info)
        self._observe(flags)

    def _observe(self, only=None) -> None:
        only = self._all if only is None else only
        if self.device == "cuda":
            self._k.launch("rr_env_observe", self.n, (self._tables, self.states, self._scratch, only,
                                                     self._k.i32(self.n), self._mask_u8, self.legal_actions,
                                                     self._k.i32(1 if self.features else 0), self.planes,
                                                     self.globals, *self._info_args()), self.block)
        else:
            planes = self.planes if self.features else None
            _core.env_observe_host(self.board, self.states, only, self._mask_u8, self.legal_actions, planes,
                                   self.globals, self.info, self.threads)
        if int(self.info["num_actions"].min()) < 0:
            bad = int(self.xp.argmin(self.info["num_actions"]))
            raise RingRiftError(f"game {bad}: the legal-move surface exceeds MAX_MOVES ({_core.MAX_MOVES}); "
                                "its mask is left empty")

    def _step(self, actions) -> None:
        xp = self.xp
        raw = xp.asarray(actions)
        if raw.shape != (self.n,):
            raise ValueError(f"actions must have shape ({self.n},), got {tuple(raw.shape)}")
        if raw.dtype.kind not in "iu":  # floats, bools, strings: a cast would play another action
            raise TypeError(f"actions must be integers (action indices, -1 = no move), got dtype {raw.dtype}")
        # a wider integer type is range-checked before the cast (int32 itself needs none: the step
        # refuses any value that names no playable move)
        if raw.dtype != xp.int32 and raw.size and (int(raw.max()) > np.iinfo(np.int32).max or int(raw.min()) < -1):
            bad = int(xp.argmax(raw)) if int(raw.max()) > np.iinfo(np.int32).max else int(xp.argmin(raw))
            raise ValueError(f"game {bad}: action {int(raw[bad])} is no action index (0..{self.action_size - 1}, "
                             f"or -1 = no move); no game was stepped")
        acts = xp.ascontiguousarray(raw, dtype=xp.int32)
        if self.device == "cuda":
            self._k.launch("rr_env_decode", self.n, (self._tables, self.states, self._scratch, acts,
                                                    self._k.i32(self.n), self.last_moves, self._error), self.block)
        else:
            _core.env_decode_host(self.board, self.states, acts, self.last_moves, self._error, self.threads)
        if int(self._error.max()) != 0:
            self._raise_illegal(acts)
        if self.device == "cuda":
            self._k.launch("rr_env_apply", self.n, (self._tables, self.states, self._scratch, acts, self.last_moves,
                                                   self._k.i32(self.n), *self._info_args()), self.block)
        else:
            _core.env_apply_host(self.board, self.states, acts, self.last_moves, self.info, self.threads)
        self._observe(xp.ascontiguousarray(acts >= 0, dtype=xp.uint8))  # only the games that moved

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this env holds (on its device): what sizing a batch must budget.
        A GPU env also keeps each game's rules scratch (6 KB) there."""
        arrays = [self.states, self._mask_u8, self.legal_actions, self.planes, self.globals, self.last_moves,
                  self._error, self._all, *self.info.values()]
        if self.device == "cuda":
            arrays.append(self._scratch)
        return int(sum(a.nbytes for a in arrays))

    # ---- helpers -----------------------------------------------------------------------------

    def random_actions(self, rng=None):
        """One uniformly random playable action per game (-1 for finished games), on the env's device."""
        xp = self.xp
        rng = rng if rng is not None else xp.random.default_rng()
        counts = xp.maximum(self.info["num_actions"], 0)
        rank = xp.minimum((rng.random(self.n) * counts).astype(xp.int64), xp.maximum(counts - 1, 0))
        acts = self.legal_actions[xp.arange(self.n), rank]
        return xp.where(counts > 0, acts, xp.int32(-1)).astype(xp.int32)

    def hashes(self):
        """The reference state hash of every game (uint64), on the env's device."""
        if self.device == "cuda":
            out = self.xp.empty(self.n, dtype=self.xp.uint64)
            self._k.launch("rr_env_hash", self.n, (self._tables, self.states, self._k.i32(self.n), out), self.block)
            return out
        return _core.env_hash_host(self.board, self.states, self.n)

    def game(self, i: int) -> Game:
        """A Game holding a copy of game i (for inspection, JSON export, or replay checks)."""
        i = _count(i, "game index")
        if not 0 <= i < self.n:
            raise IndexError(f"game {i} out of range [0, {self.n})")
        raw = self.states[i]
        raw = to_host(raw)
        g = Game(self.board, self.num_players)
        _core.load_state_bytes(g, bytes(np.ascontiguousarray(raw)))
        return g

    def _slot_flags(self, which):
        xp = self.xp
        flags = xp.asarray(which)
        if flags.shape != (self.n,):
            raise ValueError(f"which must have shape ({self.n},), got {tuple(flags.shape)}")
        return xp.ascontiguousarray(flags != 0, dtype=xp.uint8)

    def _info_args(self) -> tuple:
        i = self.info
        return (i["current"], i["phase"], i["done"], i["winner"], i["reason"], i["move_count"], i["num_actions"],
                i["values"])

    def _raise_illegal(self, acts):
        err, a = to_host(self._error), to_host(acts)
        slots = np.flatnonzero(err)
        reasons = [_core.ENV_ERRORS[int(err[s])] for s in slots]
        first = int(slots[0])
        more = f" (and {len(slots) - 1} more)" if len(slots) > 1 else ""
        raise IllegalActionError(f"game {first}: action {int(a[first])}: {reasons[0]}{more}; no game was stepped",
                                 slots=slots.tolist(), actions=[int(a[s]) for s in slots], reasons=reasons)
