"""Storing the games a BatchEnv plays, so games of an outside policy (a network) flow into the
same game database, parity check and NPZ export as the built-in self-play.

    env = BatchEnv("square8", 2, 256)
    with GameDB("data/games/canonical_square8.db") as db:
        rec = EnvRecorder(env, db, policy="nn-v3", seed=7)
        while rec.stored < 10_000:
            actions = my_policy(env)
            env.step(actions)
            env.reset(rec.record(actions))   # stores finished games, says which slots to restart

Each game gets the identity (board, players, policy, seed, game_index) with game indices
counted up from the highest one already stored for that run, so a rerun appends. Every step
keeps the move record, the state hash after it, and the phase and player to move, like
self-play, so ``ringrift-parity --db`` re-verifies these games too.
"""

from __future__ import annotations

import socket
import time

import numpy as np

from .batch_env import BatchEnv, to_host
from .runner import ENGINE_VERSION, integer_in


class EnvRecorder:
    """Collects each slot's moves since its last reset and stores games when they end.

    A game that reaches ``max_moves`` moves unfinished is stored as capped. The slots
    ``record`` returns must be reset (``env.reset(mask)``) before the next step; a slot reset
    for another reason should be passed to ``discard`` so its partial game is dropped.
    """

    def __init__(self, env: BatchEnv, db, *, policy: str = "external", seed: int = 0, max_moves: int = 2000,
                 host: str | None = None):
        if not isinstance(env, BatchEnv):
            raise TypeError(f"env must be a BatchEnv, got {type(env).__name__}")
        seed, max_moves = integer_in("seed", seed, 0, 2**63 - 1), integer_in("max_moves", max_moves, 1, 1_000_000)
        if not isinstance(policy, str) or not policy.strip():
            raise ValueError(f"policy must be a non-empty name, got {policy!r}")
        if not np.all(to_host(env.info["move_count"]) == 0):
            raise ValueError("EnvRecorder needs games from their start: create it right after BatchEnv() or reset()")
        self.env, self.db, self.policy, self.seed, self.max_moves = env, db, policy, seed, max_moves
        self.host = host or socket.gethostname()
        n = env.n
        self.moves = np.zeros((n, max_moves, 16), dtype=np.uint8)
        self.hashes = np.zeros((n, max_moves), dtype=np.uint64)
        self.phases = np.zeros((n, max_moves), dtype=np.uint8)
        self.players = np.zeros((n, max_moves), dtype=np.uint8)
        self.count = np.zeros(n, dtype=np.int64)
        self.started = np.full(n, time.monotonic())
        taken = db.existing_indices(board=env.board, num_players=env.num_players, seed=seed, policy=policy)
        self.next_index = max(taken) + 1 if taken else 0
        self.stored = 0
        # Set by a driver that gives each slot's game a fixed index (seeded players: game i of
        # seed S is the same game in any slot); None = indices in the order games finish.
        self.slot_game_index = None

    def record(self, actions) -> np.ndarray:
        """Call after ``env.step(actions)``: appends the step of every slot that moved, stores the
        games that ended or hit ``max_moves`` (one transaction), and returns a bool mask (n,) of
        the slots to reset."""
        env = self.env
        acts = to_host(actions)
        # Every slot's recorded moves must be the env's moves since its reset: a second record of
        # one step, other actions than those stepped, or a slot reset without discard() would
        # store games that do not replay
        if acts.shape != (env.n,):
            raise ValueError(f"EnvRecorder.record: actions must have shape ({env.n},), got {tuple(acts.shape)}")
        have = to_host(env.info["move_count"]).astype(np.int64)
        expect = self.count + (acts >= 0)
        if not np.array_equal(have, expect):
            bad = int(np.flatnonzero(have != expect)[0])
            raise ValueError(f"EnvRecorder.record: game {bad} has {int(have[bad])} moves in the env, but its record "
                             f"would have {int(expect[bad])}: call record(actions) once after each env.step(actions) "
                             f"with the same actions, reset the slots it returns, and discard() slots reset "
                             f"otherwise; nothing was recorded")
        moved = np.flatnonzero(acts >= 0)
        k = self.count[moved]
        self.moves[moved, k] = to_host(env.last_moves)[moved]
        self.hashes[moved, k] = to_host(env.hashes())[moved]
        self.phases[moved, k] = to_host(env.info["phase"])[moved]
        self.players[moved, k] = to_host(env.info["current"])[moved]
        self.count[moved] += 1
        done = to_host(env.info["done"]) != 0
        full = self.count >= self.max_moves
        finish = (done | full) & (self.count > 0)
        slots = np.flatnonzero(finish)
        if slots.size:
            self._store(slots, capped=~done[slots])
            self.discard(finish)
        return finish

    def discard(self, which) -> None:
        """Forget the partial games of the slots in ``which`` (a bool mask): they restart."""
        which = np.asarray(to_host(which), dtype=bool)
        self.count[which] = 0
        self.started[which] = time.monotonic()

    def _store(self, slots: np.ndarray, capped: np.ndarray) -> None:
        counts = self.count[slots]
        offsets = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        take = lambda a: np.concatenate([a[s, :c] for s, c in zip(slots, counts)])  # noqa: E731
        info = self.env.info
        batch = {
            "game_index": (np.arange(self.next_index, self.next_index + len(slots), dtype=np.int64)
                           if self.slot_game_index is None else np.asarray(self.slot_game_index)[slots].astype(np.int64)),
            "move_offsets": offsets, "move_count": counts,
            "winner": to_host(info["winner"])[slots], "reason": to_host(info["reason"])[slots],
            "capped": capped.astype(np.uint8), "seconds": time.monotonic() - self.started[slots],
            "moves": take(self.moves), "hashes": take(self.hashes), "phases": take(self.phases),
            "players": take(self.players), "hash_kind": "reference",  # env.hashes(): the reference hash
        }
        self.db.insert_batch(batch, board=self.env.board, num_players=self.env.num_players, seed=self.seed,
                             policy=self.policy, engine_version=ENGINE_VERSION, host=self.host,
                             max_moves=self.max_moves)
        self.next_index += len(slots)
        self.stored += len(slots)

