"""ringrift: a compiled RingRift rules engine and a pipeline that turns games into training data."""

from . import _core

# The names the rules core knows, defined before the submodules that validate against them.
BOARDS = tuple(_core.BOARDS)  # square8, hex8, square19, hexagonal
POLICIES = tuple(_core.POLICIES)  # self-play policies: random, heuristic

from .engine import (  # noqa: E402
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

from .engine.arg_errors import one_line_module_errors  # noqa: E402

# The compiled module's functions answer arguments that fit none of their signatures in one line,
# as Game's and Move's methods do (engine/arg_errors.py).
for _module, _prefix in ((_core, "_core."), (_core.export, "_core.export."), (_core.upstream, "_core.upstream.")):
    one_line_module_errors(_module, _prefix)
del _module, _prefix

__version__ = "0.1.0"


def gpu_available() -> bool:
    """Whether the CUDA self-play path can run here (a GPU and cupy); see ringrift.gpu.gpu_status."""
    from .gpu import gpu_available as _available

    return _available()


__all__ = [
    "BOARDS",
    "POLICIES",
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
