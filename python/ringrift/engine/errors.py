"""Exceptions raised by the ringrift engine API."""


class RingRiftError(Exception):
    """Base class of every error ringrift raises on purpose."""


class IllegalMoveError(RingRiftError, ValueError):
    """A move that is not legal in the current state. The state is left unchanged."""

    def __init__(self, message, *, move=None, phase=None, player=None, reason=None):
        super().__init__(message)
        self.move = move
        self.phase = phase
        self.player = player
        self.reason = reason


class MoveParseError(RingRiftError, ValueError):
    """A move in JSON form that is malformed (missing or ill-typed fields, unknown type)."""


class StateParseError(RingRiftError, ValueError):
    """A state in JSON form that is malformed or inconsistent."""
