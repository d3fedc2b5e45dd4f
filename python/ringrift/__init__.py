"""ringrift: a compiled RingRift rules engine and a pipeline that turns games into training data."""

from .engine import (
    Game,
    IllegalMoveError,
    Move,
    MoveParseError,
    RingRiftError,
    StateParseError,
    move_from_json,
    move_key,
    move_to_json,
)

__version__ = "0.1.0"

BOARDS = ("square8", "hex8", "square19", "hexagonal")

__all__ = [
    "BOARDS",
    "Game",
    "IllegalMoveError",
    "Move",
    "MoveParseError",
    "RingRiftError",
    "StateParseError",
    "move_from_json",
    "move_key",
    "move_to_json",
]
