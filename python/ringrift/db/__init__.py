"""SQLite storage of self-play games (``GameDB``) and conversion to/from the upstream
``GameReplayDB`` format.  Reference: ``docs/game_db.md``."""

from .errors import DBError, DBSchemaError
from .schema import MOVE_RECORD_SIZE, SCHEMA_VERSION
from .store import GameDB, GameRow

__all__ = [
    "DBError",
    "DBSchemaError",
    "GameDB",
    "GameRow",
    "MOVE_RECORD_DTYPE",
    "MOVE_RECORD_SIZE",
    "SCHEMA_VERSION",
    "from_replaydb",
    "to_replaydb",
]


def to_replaydb(*args, **kwargs):
    """See :func:`ringrift.db.replaydb.to_replaydb`."""
    from .replaydb import to_replaydb as impl
    return impl(*args, **kwargs)


def from_replaydb(*args, **kwargs):
    """See :func:`ringrift.db.replaydb.from_replaydb`."""
    from .replaydb import from_replaydb as impl
    return impl(*args, **kwargs)


def __getattr__(name):  # MOVE_RECORD_DTYPE loads numpy: made on first use (ringrift.db.schema)
    if name == "MOVE_RECORD_DTYPE":
        from . import schema

        return schema.MOVE_RECORD_DTYPE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
