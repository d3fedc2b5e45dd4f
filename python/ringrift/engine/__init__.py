"""The RingRift rules engine: the compiled core and its Python face."""

from .errors import IllegalMoveError, MoveParseError, RingRiftError, StateParseError
from .game import Game, Move
from .json_io import move_from_json, move_key, move_to_json

__all__ = [
    "Game",
    "Move",
    "IllegalMoveError",
    "MoveParseError",
    "RingRiftError",
    "StateParseError",
    "move_from_json",
    "move_key",
    "move_to_json",
]
