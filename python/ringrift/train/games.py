"""Playing numbered games in a BatchEnv with players (a net and/or built-in policies), and the
``onnx:PATH`` self-play policy on top of it.

Every slot of the env holds one game index; when its game ends the slot takes the next index.
Each player's randomness is keyed by (seed, game index) (see players.py), so game i is the same
game in any slot, batch size or run. With a game DB, finished games are stored with that index
through EnvRecorder, like any self-play game (parity check, export)."""

from __future__ import annotations

import time

import numpy as np

from .. import _core
from ..selfplay.batch_env import BatchEnv, to_host
from ..selfplay.env_recorder import EnvRecorder
from .players import make_player, play_step


def play_games(board: str, num_players: int, players: list, indices, seats_of, *, seed: int, batch_size: int,
               max_moves: int, threads: int = 0, db=None, policy_name: str = "external", on_game=None,
               device: str = "cpu", host: str | None = None) -> None:
    """Play the games ``indices`` (an iterable of game indices). ``seats_of(i)`` gives, for game
    i, the player index (into ``players``) of each seat 1..n as a sequence. ``players[k]`` draws
    with the run seed mixed with k. ``on_game(index, winner, reason, capped, moves)`` is called
    for every finished game (winner 0 = none)."""
    it = iter(indices)
    env = BatchEnv(board, num_players, batch_size, threads=threads, device=device)
    for k, p in enumerate(players):
        p.bind(env, _player_seed(seed, k))
    n = env.n
    game = np.full(n, -1, dtype=np.int64)
    owner_of_seat = np.zeros((n, 4), dtype=np.int64)
    active = np.zeros(n, dtype=bool)
    rec = None
    if db is not None:
        rec = EnvRecorder(env, db, policy=policy_name, seed=seed, max_moves=max_moves, host=host)
        rec.slot_game_index = game

    def fill(slots):
        taken = []
        for s in slots.tolist():
            i = next(it, None)
            if i is None:
                active[s], game[s] = False, -1
                continue
            game[s], active[s] = i, True
            owner_of_seat[s, :num_players] = seats_of(i)
            taken.append(s)
        taken = np.asarray(taken, dtype=np.int64)
        for p in players:
            p.start(taken, game[taken])

    fill(np.arange(n))
    while active.any():
        cur = to_host(env.info["current"]).astype(np.int64)
        owner = owner_of_seat[np.arange(n), np.clip(cur - 1, 0, 3)]
        actions = play_step(env, players, owner, active)
        done = to_host(env.info["done"]) != 0
        if rec is not None:
            finish = rec.record(actions) & active
        else:
            finish = active & (done | (to_host(env.info["move_count"]) >= max_moves))
        slots = np.flatnonzero(finish)
        if not len(slots):
            continue
        if on_game:
            info = {k: to_host(v) for k, v in env.info.items()}
            for s in slots.tolist():
                on_game(int(game[s]), int(info["winner"][s]), int(info["reason"][s]), not done[s],
                        int(info["move_count"][s]))
        env.reset(finish)
        fill(slots)


def _player_seed(seed: int, k: int) -> int:
    """Player k's stream seed: the run seed for the first player, a distinct mix for the others."""
    return seed if k == 0 else (seed * 0x9E3779B97F4A7C15 + k * 0xD1B54A32D192ED03) & (2**63 - 1)


def run_onnx_selfplay(db, *, board: str, num_games: int, num_players: int = 2, seed: int = 0, policy: str,
                      threads: int = 0, max_moves: int = 2000, batch_size: int | None = None, progress=None,
                      device: str = "cpu", temperature: float | None = None):
    """Self-play in a BatchEnv with a net (policy ``onnx:PATH[:temperature=T][:lookahead=K][:horizon=H]``)
    or with ``heuristic:random=P`` into ``db``: fills the game indices 0..num_games-1 that the DB
    does not hold for (board, players, the player's name (a net's id), seed).
    Returns a SelfplayResult whose ``policy`` is the name stored with the games."""
    from ..selfplay.runner import SelfplayResult, games_to_play

    player = make_player(policy, temperature=temperature, device=device, threads=threads)
    name = player.name
    result = SelfplayResult(board, num_players, seed, name, num_games)
    todo = games_to_play(db, result)
    if not todo:
        return result
    t0 = time.perf_counter()
    size = max(1, min(batch_size or 256, todo.count))

    def on_game(i, winner, reason, capped, moves):
        result.games += 1
        result.moves += moves
        result.capped += int(capped)
        if winner:
            result.wins[winner] += 1
        if reason:
            result.reasons[_core.REASONS[reason]] += 1
        result.seconds = time.perf_counter() - t0
        if progress:
            progress(result.already_present + result.games, num_games, result.games_per_sec)

    play_games(board, num_players, [player], iter(todo), lambda i: [0] * num_players, seed=seed, batch_size=size,
               max_moves=max_moves, threads=threads, db=db, policy_name=name, on_game=on_game, device=device)
    result.seconds = time.perf_counter() - t0
    return result
