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


def gpu_available() -> bool:
    """Whether the CUDA self-play path can run here (a GPU and cupy); see ringrift.gpu.gpu_status."""
    from .gpu import gpu_available as _available

    return _available()


BOARDS = ("square8", "hex8", "square19", "hexagonal")

__all__ = [
    "BOARDS",
    "gpu_available",
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
