"""The Python face of one game: the compiled state plus validation errors and JSON I/O."""

from __future__ import annotations

from .. import _core
from .arg_errors import compiled_methods, one_line_type_errors
from .errors import IllegalMoveError, StateParseError

Move = _core.Move
one_line_type_errors(Move, "Move", ["__init__", "to_record"])


class Game(_core.Game):
    """A RingRift game whose rules run in the C++ core.

    ``Game("square8", 2)`` starts a game; ``legal_moves()`` lists the reference engine's legal-move
    surface; ``apply(move)`` validates and plays a move (raising :class:`IllegalMoveError` and
    leaving the state untouched when the move is not legal).

    Faithful to the reference, ``legal_moves()`` can list line-mode ``recovery_slide`` moves that
    the reference's own transition rejects (RULES.md 6.7); ``apply()`` refuses them with
    ``IllegalMoveError`` whose ``reason`` is "the reference engine rejects this listed move", and
    the caller picks another move.

    Every argument is checked (docs/engine_api.md lists each function's exceptions): an index
    out of range raises ValueError, malformed JSON StateParseError / MoveParseError, and a call
    that raises leaves the game unchanged.
    """

    def __init__(self, board: str = "square8", num_players: int = 2, *, swap_rule: bool = False):
        """ValueError for an unknown board or a player count other than 2, 3 or 4; TypeError for
        a board that is not a string or a player count that is not an int."""
        if not isinstance(board, str):
            raise TypeError(f"board must be a string, got {type(board).__name__}")
        if isinstance(num_players, bool) or not isinstance(num_players, int):
            raise TypeError(f"num_players must be an integer (2, 3 or 4), got {num_players!r}")
        super().__init__(board, num_players, bool(swap_rule))

    # -- copying ---------------------------------------------------------------------------
    def clone(self) -> "Game":
        other = Game.__new__(Game)
        _core.Game.__init__(other, self)
        return other

    __copy__ = clone

    def __deepcopy__(self, memo):
        return self.clone()

    # -- playing ---------------------------------------------------------------------------
    def apply(self, move: Move) -> None:
        """Play a legal move. Raises IllegalMoveError (state unchanged) otherwise."""
        if not isinstance(move, _core.Move):
            raise TypeError(f"apply() takes a ringrift.Move, got {type(move).__name__}")
        code = self._apply(move)
        if code:
            reason = _core.APPLY_ERRORS[code]
            from .json_io import describe_move

            raise IllegalMoveError(
                f"illegal move {describe_move(self, move)} by player {move.player} in phase "
                f"{self.phase} (current player {self.current_player}): {reason}",
                move=move,
                phase=self.phase,
                player=self.current_player,
                reason=reason,
            )

    def play(self, move_json: dict) -> Move:
        """Parse a reference Move JSON, check it against the surface, and play it.

        Raises MoveParseError (malformed JSON) or IllegalMoveError (not legal now); the state is
        unchanged on either.
        """
        from .json_io import move_from_json

        move = move_from_json(self, move_json)
        self.apply(move)
        return move

    def step_hash(self, kind: str) -> int:
        """The state's step hash as a game DB row of ``hash_kind`` stores it: ``cells32``/``cells64``
        (self-play now), ``fast32``/``fast64`` (rows written before the cells hash), each 32-bit kind
        the low 32 bits; ``reference`` is the reference hash as an int."""
        if kind in ("cells64", "cells32"):
            h = self.cells_hash()
        elif kind in ("fast64", "fast32"):
            h = self.fast_hash()
        elif kind == "reference":
            return int(self.hash(), 16)
        else:
            raise ValueError(f"unknown hash kind {kind!r} (expected one of {', '.join(_core.HASH_KINDS)})")
        return h & 0xFFFFFFFF if kind.endswith("32") else h

    @property
    def is_over(self) -> bool:
        return self.status != "active"

    # -- reference JSON -------------------------------------------------------------------
    @classmethod
    def from_json(cls, state: dict, board: str | None = None, num_players: int | None = None,
                  rules_options: dict | None = None) -> "Game":
        """Build a game from the reference's serialized state (e.g. a recording's initialState).

        ``board``, ``num_players`` and ``rules_options`` override the state's own. Raises
        StateParseError for anything that is not such a state: missing fields, other JSON types
        than the format's, values the rules cannot reach (docs/engine_api.md).
        """
        from .json_io import load_state

        if not isinstance(state, dict):
            raise StateParseError(f"state must be a JSON object, got {type(state).__name__}")
        for field in ("board", "players"):
            if field not in state:
                raise StateParseError(f"state is missing '{field}'")
        if board is None:
            if not isinstance(state["board"], dict):
                raise StateParseError(f"board: expected an object, got {type(state['board']).__name__}")
            if "type" not in state["board"]:
                raise StateParseError("state is missing 'type' in 'board'")
            board = state["board"]["type"]
        if not isinstance(board, str):
            raise StateParseError(f"board.type: expected a board name, got {board!r:.80}")
        if num_players is None:
            if not isinstance(state["players"], list):
                raise StateParseError("players: expected a list of player objects")
            num_players = len(state["players"])
        if isinstance(num_players, bool) or not isinstance(num_players, int):
            raise StateParseError(f"num_players: expected an integer, got {num_players!r:.80}")
        opts = rules_options if rules_options is not None else state.get("rulesOptions")
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise StateParseError(f"rulesOptions: expected an object, got {type(opts).__name__}")
        swap = opts.get("swapRuleEnabled", False)
        if swap is None:
            swap = False
        if not isinstance(swap, bool):
            raise StateParseError(f"rulesOptions.swapRuleEnabled: expected true or false, got {swap!r:.80}")
        try:
            game = cls(board, num_players, swap_rule=swap)
        except ValueError as exc:
            raise StateParseError(str(exc)) from None
        load_state(game, state)
        return game

    def to_json(self) -> dict:
        """The state in the reference's serialized shape (board, players, phase, flags)."""
        from .json_io import dump_state

        return dump_state(self)

    def __repr__(self) -> str:
        return (f"<ringrift.Game {self.board} {self.num_players}p move {self.move_count} "
                f"{self.phase} player {self.current_player} {self.status}>")


one_line_type_errors(Game, "Game", compiled_methods(Game, _core.Game))
