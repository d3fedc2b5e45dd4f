"""The random self-play policy draws from the listed legal-move surface.

The self-play driver picks a placement move from the surface's size and the drawn index alone,
without listing the surface (``choose_random_placement`` in csrc/selfplay/move_choice.h), and
the engine builds the placement surface from bitboards. Both must give the very move that a
uniform draw over ``Game.legal_moves()`` gives. This test replays self-play games through the
public API with its own copy of the per-game random stream (splitmix64 seeded by (seed, game),
csrc/selfplay/rng.h) and checks every step: the recorded move is the one the draw names in the
listed surface (a drawn recovery slide that the reference rejects is drawn again, as the policy
does).
"""

import pytest

from ringrift import Game, _core

MASK = (1 << 64) - 1


class Rng:
    """csrc/selfplay/rng.h, in Python."""

    def __init__(self, seed: int, index: int):
        self.state = ((seed * 0x9E3779B97F4A7C15) & MASK) ^ (((index + 0x632BE59BD9B4E019) * 0xBF58476D1CE4E5B9) & MASK)
        self.next()

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return ((self.next() >> 32) * n) >> 32


def replay_with_draws(board: str, players: int, seed: int, index: int, max_moves: int) -> tuple[int, int]:
    """Replays game `index` and checks each recorded move against the draw; returns (steps, placements)."""
    batch = _core.selfplay_batch(board, players, seed, [index], "random", threads=1, max_moves=max_moves)
    records = [bytes(r) for r in batch["moves"]]
    rng = Rng(seed, index)
    game = Game(board, players)
    placements = 0
    for step, rec in enumerate(records):
        played = _core.move_from_record(rec)
        moves = game.legal_moves()
        for _ in range(64):
            drawn = moves[rng.below(len(moves))]
            if drawn == played:
                break
            # Only a recovery slide the reference rejects is drawn again.
            assert drawn.type == "recovery_slide", f"{board} {players}p game {index} step {step}: drew {drawn}, played {played}"
        else:
            pytest.fail(f"{board} {players}p game {index} step {step}: 64 draws without the played move")
        placements += played.type == "place_ring"
        game.apply(played)
    return len(records), placements


@pytest.mark.parametrize("board,players,max_moves", [
    ("square8", 2, 2000), ("square8", 3, 2000), ("hex8", 4, 2000), ("square19", 2, 150), ("hexagonal", 3, 120),
])
def test_random_self_play_is_a_uniform_draw_over_the_listed_surface(board, players, max_moves):
    steps = placements = 0
    for index in range(2):
        s, p = replay_with_draws(board, players, 5, index, max_moves)
        steps += s
        placements += p
    assert placements > 10 and steps > placements
