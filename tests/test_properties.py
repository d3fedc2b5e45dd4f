"""Property tests: random legal play (hypothesis chooses the seeds) on every board and player
count, with the invariants of RULES.md 10 (and 4.3 / 4.4 / 9) checked after every move."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (ALLOWED_BY_PHASE, CONFIGS, NO_ACTION_TYPES, REFERENCE_REJECTS, expected_fingerprint,
                      reference_hash)
from ringrift.engine import Game, IllegalMoveError

SMALL = ("square8", "hex8")
MAX_MOVES = {"square8": 400, "hex8": 400, "square19": 900, "hexagonal": 700}
EXAMPLES = {"square8": 25, "hex8": 25, "square19": 3, "hexagonal": 2}
CAPTURING = {"move_stack", "overtaking_capture", "continue_capture_segment"}


def progress(game: Game) -> int:
    """S = markers + collapsed + eliminated rings (per-colour tally, RULES.md 10)."""
    return len(game.markers()) + len(game.collapsed()) + sum(p["eliminated_by_colour"] for p in game.players())


def cap_height(rings: list) -> int:
    k = 1
    while k < len(rings) and rings[k] == rings[0]:
        k += 1
    return k


def check_state(game: Game) -> None:
    """Invariants of one state."""
    players = game.players()
    n, R = game.num_players, game.rings_per_player
    stacks, markers, collapsed = game.stacks(), game.markers(), game.collapsed()
    stack_cells = [c for c, _ in stacks]
    marker_cells = [c for c, _ in markers]
    collapsed_cells = [c for c, _ in collapsed]
    # each cell holds at most one of stack / marker / collapsed, and appears once per list
    every = stack_cells + marker_cells + collapsed_cells
    assert len(every) == len(set(every)), "a cell holds two things"
    assert all(0 <= c < game.num_cells for c in every)
    on_board = Counter()
    controlled = Counter()
    for _, rings in stacks:
        assert rings and all(1 <= r <= n for r in rings)
        on_board.update(rings)
        controlled[rings[0]] += 1
    marker_owner = Counter(p for _, p in markers)
    collapsed_owner = Counter(p for _, p in collapsed)
    for p in players:
        q = p["player"]
        assert p["rings_in_hand"] >= 0
        # ring conservation per colour
        assert p["rings_in_hand"] + p["rings_on_board"] + p["eliminated_by_colour"] == R, p
        assert p["rings_on_board"] == on_board[q]
        assert p["stacks_controlled"] == controlled[q]
        assert p["markers"] == marker_owner[q]
        # territory counter == collapsed cells owned
        assert p["territory_spaces"] == p["collapsed"] == collapsed_owner[q]
    # every elimination is credited to someone
    assert sum(p["eliminated_rings"] for p in players) == sum(p["eliminated_by_colour"] for p in players)
    # the hash is the reference mix of the reference fingerprint of this state
    fp = game.fingerprint()
    assert fp == expected_fingerprint(game)
    assert game.hash() == reference_hash(fp)
    # serialise / parse keeps the hash
    again = Game.from_json(game.to_json())
    assert again.hash() == game.hash()
    assert (game.phase == "game_over") == (game.status == "completed")


def check_surface(game: Game) -> list:
    """Invariants of the legal-move surface; returns it."""
    moves = game.legal_moves()
    assert len(moves) == game.num_legal_moves()
    if game.status != "active":
        assert moves == [] and game.winner is not None
        return moves
    assert moves, f"empty surface while active: {game!r}"
    p, phase = game.current_player, game.phase
    kinds = [m.type for m in moves]
    assert set(kinds) <= ALLOWED_BY_PHASE[phase], (phase, set(kinds))
    assert all(m.player == p for m in moves)
    for t in NO_ACTION_TYPES & set(kinds):
        assert kinds == [t], f"{t} is not alone: {kinds}"
    stacks = dict(game.stacks())
    if game.pending_line_elimination:
        assert phase == "line_processing"
        for m in moves:
            assert (m.type, m.context, m.count) == ("eliminate_rings_from_stack", 1, 1)
            assert stacks[m.to][0] == p
    if game.pending_territory_elimination:
        assert set(kinds) == {"eliminate_rings_from_stack"}
        assert all(m.context in (2, 3) for m in moves)
    if phase == "forced_elimination":
        for m in moves:
            rings = stacks[m.to]
            assert rings[0] == p and m.count == cap_height(rings)
    if phase == "chain_capture":
        assert all(m.from_cell == game.chain_capture_position for m in moves)
    if phase == "capture":
        assert kinds[-1] == "skip_capture" and kinds.count("skip_capture") == 1
        assert len({m.from_cell for m in moves[:-1]}) <= 1
    if phase == "movement" and game.must_move_from is not None:
        assert all(m.from_cell == game.must_move_from for m in moves
                   if m.type in ("move_stack", "overtaking_capture"))
    if phase == "ring_placement":
        me = game.players()[p - 1]
        anyone = any(q["rings_in_hand"] + q["rings_on_board"] for q in game.players())
        assert me["rings_in_hand"] + me["rings_on_board"] > 0 or not anyone, "a ringless seat is playing"
        if me["rings_in_hand"] == 0:
            assert kinds == ["no_placement_action"]
    return moves


def apply_checked(game: Game, move) -> bool:
    """Apply a listed move; only a recovery slide the reference rejects may be refused."""
    try:
        game.apply(move)
        return True
    except IllegalMoveError as exc:
        assert move.type == "recovery_slide" and exc.reason == REFERENCE_REJECTS, str(exc)
        return False


def play_and_check(board: str, num_players: int, seed: int) -> Game:
    game = Game(board, num_players)
    rng = random.Random(seed)
    check_state(game)
    s_prev = progress(game)
    while game.status == "active" and game.move_count < MAX_MOVES[board]:
        moves = check_surface(game)
        if game.move_count % 7 == 0:
            # every listed move applies (on copies), not just the one we play
            for m in moves if len(moves) <= 24 else rng.sample(moves, 24):
                apply_checked(game.clone(), m)
        while True:
            move = rng.choice(moves)
            before_hash = game.hash()
            if apply_checked(game, move):
                break
            assert game.hash() == before_hash
            moves = [m for m in moves if m != move]
        check_state(game)
        s_now = progress(game)
        assert s_now >= s_prev, f"progress measure fell after {move.type}"
        if move.type in CAPTURING:
            assert s_now > s_prev, f"{move.type} did not raise the progress measure"
        s_prev = s_now
    check_surface(game)
    return game


@pytest.mark.parametrize("board,num_players", CONFIGS)
def test_random_play_keeps_invariants(board, num_players):
    @settings(max_examples=EXAMPLES[board], deadline=None, derandomize=False, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(min_value=0, max_value=2**32 - 1))
    def run(seed):
        play_and_check(board, num_players, seed)

    run()


@settings(max_examples=15, deadline=None, database=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), num_players=st.sampled_from([2, 3, 4]),
       board=st.sampled_from(SMALL))
def test_small_board_games_end_with_a_winner(seed, num_players, board):
    """Complete games on the small boards: they end, with a winner and a known reason."""
    game = Game(board, num_players)
    rng = random.Random(seed)
    while game.status == "active":
        assert game.move_count < 2000, "game did not end within the recorder's 2000-move cap"
        moves = game.legal_moves()
        move = rng.choice(moves)
        if not apply_checked(game, move):
            continue
    assert game.status == "completed" and game.phase == "game_over"
    assert game.winner in range(1, num_players + 1)
    assert game.victory_reason in {"ring_elimination", "territory_control", "last_player_standing",
                                   "tiebreaker_by_player_number"}
    assert game.legal_moves() == []


@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_no_op_moves_leave_the_hash_unchanged(seed):
    """RULES.md 10: a process_line on an overlength line and swap_sides change nothing hashed."""
    game = Game("square8", 2, swap_rule=True)
    rng = random.Random(seed)
    swaps = 0
    while game.status == "active" and game.move_count < 300:
        moves = game.legal_moves()
        if any(m.type == "swap_sides" for m in moves):
            assert game.current_player == 2 and game.phase == "ring_placement" and moves[-1].type == "swap_sides"
            probe = game.clone()
            probe.apply(moves[-1])
            assert probe.hash() == game.hash() and probe.phase == "ring_placement" and probe.current_player == 2
            assert not any(m.type == "swap_sides" for m in probe.legal_moves())
            swaps += 1
        for m in moves:
            if m.type == "process_line" and m.line_len > 4:
                probe = game.clone()
                probe.apply(m)
                assert probe.hash() == game.hash() and probe.legal_moves() == moves
        move = rng.choice(moves)
        apply_checked(game, move)
    assert swaps == 1
