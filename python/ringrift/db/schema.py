"""The game database's schema: version, tables and the fixed-width record formats.

Everything the store writes is defined here so that ``docs/game_db.md`` and the code have a
single source to agree with.  The schema is versioned by ``meta.schema_version``.  Version 2 packs
a game's moves, phases and players into one ``steps`` blob and stores a cheap per-step hash;
version 3 (this one) has the same columns and also admits the cells step hash (``hash_kind`` 3
and 4), which self-play records now.  Version 1 files (16-byte move records and the reference hash
per step) and version 2 files are read as they are and migrated to version 3 when opened for
writing (``store.py``).
"""

from __future__ import annotations

#: Version of the layout below, stored in ``meta`` as ``schema_version``.
SCHEMA_VERSION = 3

#: Older versions this package still reads (and migrates when it opens them for writing).
READABLE_VERSIONS = (1, 2, 3)

#: Value of ``meta.format``: tells our files from other SQLite databases.
FORMAT_NAME = "ringrift-gamedb"

#: Bytes per stored move (``struct Move`` in ``csrc/engine/defs.h``).
MOVE_RECORD_SIZE = 16

#: numpy view of one move record (little-endian, packed, 16 bytes): ``MOVE_RECORD_DTYPE``.
_MOVE_RECORD_FIELDS = [
    ("type", "u1"),        # index into ringrift._core.MOVE_TYPES
    ("player", "u1"),      # 1-based seat that makes the move
    ("count", "u1"),       # rings placed / removed; territory: controlling player
    ("line_dir", "u1"),    # direction index of a line or recovery run
    ("from", "<i2"),       # cell index or -1
    ("to", "<i2"),         # cell index or -1
    ("target", "<i2"),     # capture target cell or -1
    ("line_start", "<i2"), # first cell of a line / recovery run, or -1
    ("line_len", "u1"),
    ("window", "u1"),      # choose_line_option segment offset; 255 = whole line
    ("context", "u1"),     # elimination context or recovery mode
    ("option", "u1"),      # recovery option (1/2); territory region pass
]

#: Byte layout of the per-step blobs: ``HASH_DTYPE`` (<u8), ``FAST32_DTYPE`` (<u4),
#: ``PHASE_DTYPE`` and ``PLAYER_DTYPE`` (u1).

#: ``games.hash_kind``: which per-step hash a row stores (indices into ``_core.HASH_KINDS``) and
#: how many bytes each step's hash takes in the ``hashes`` blob.  Self-play stores the cells hash
#: (``cells32`` per step, the full 64 bits of the final state); schema-2 files hold ``fast32``.
HASH_KIND_REFERENCE, HASH_KIND_FAST64, HASH_KIND_FAST32, HASH_KIND_CELLS64, HASH_KIND_CELLS32 = 0, 1, 2, 3, 4
HASH_KIND_NAMES = ("reference", "fast64", "fast32", "cells64", "cells32")
HASH_WIDTH = {HASH_KIND_REFERENCE: 8, HASH_KIND_FAST64: 8, HASH_KIND_FAST32: 4, HASH_KIND_CELLS64: 8,
              HASH_KIND_CELLS32: 4}
#: A 64-bit kind as it is stored: its low 32 bits per step (and the final state's full hash).
HASH_STORED_AS = {HASH_KIND_FAST64: HASH_KIND_FAST32, HASH_KIND_CELLS64: HASH_KIND_CELLS32}

#: Values of ``games.parity_status`` the library itself writes.  Other short words are allowed.
PARITY_STATUSES = ("unchecked", "ok", "failed", "error", "skipped")

#: Columns of ``games`` that identify a game; a second insert of the same identity is ignored.
IDENTITY_COLUMNS = ("board", "num_players", "policy", "seed", "game_index")

#: The scalar columns of ``games`` (both versions), ``id`` first.
SCALAR_COLUMNS = (
    "id", "board", "num_players", "policy", "seed", "game_index",
    "engine_version", "host", "max_moves",
    "winner", "reason", "move_count", "capped",
    "started_at", "duration_ms", "created_at", "parity_status",
)

#: Every column of ``games`` in table order (``id`` first, the blobs last so that scans of the
#: scalar columns never touch the blobs' overflow pages).
GAME_COLUMNS = SCALAR_COLUMNS + ("hash_kind", "final_hash", "steps", "hashes")
BLOB_COLUMNS = ("steps", "hashes")

#: The columns a new row is written with (all but ``id``).
INSERT_COLUMNS = GAME_COLUMNS[1:]

#: Schema 1's columns: the scalars and four fixed-width blobs (16-byte move records, the
#: reference hash, the phase and the player after each step).
V1_GAME_COLUMNS = SCALAR_COLUMNS + ("moves", "hashes", "phases", "players")

#: A game as the library passes it around before packing (``GameDB._insert_rows``): the scalar
#: columns but ``id``, then the four fixed-width step blobs of schema 1.
LOGICAL_COLUMNS = V1_GAME_COLUMNS[1:]

#: Columns ``count_games`` and ``iter_games`` may filter on with equality.
FILTER_COLUMNS = (
    "id", "board", "num_players", "policy", "seed", "game_index", "engine_version", "host",
    "max_moves", "winner", "reason", "move_count", "capped", "parity_status",
)

# The CHECKs are written without IN lists: SQLite 3.40 evaluates `x IN (0, 1, 2)` in a CHECK by
# building an ephemeral table for every inserted row (two page-sized memsets), which cost about a
# third of a square8 game's insert (callgrind: ~92k -> ~61k instructions per game). An OR chain is
# the same constraint (NULL passes both; the columns are NOT NULL anyway). Files written with the
# IN form read and write the same rows.
GAMES_TABLE_SQL = """
CREATE TABLE {name} (
    id             INTEGER PRIMARY KEY,
    board          TEXT    NOT NULL,
    num_players    INTEGER NOT NULL CHECK (num_players BETWEEN 2 AND 4),
    policy         TEXT    NOT NULL,
    seed           INTEGER NOT NULL,
    game_index     INTEGER NOT NULL CHECK (game_index >= 0),
    engine_version TEXT,
    host           TEXT,
    max_moves      INTEGER,
    winner         INTEGER NOT NULL CHECK (winner BETWEEN 0 AND num_players),
    reason         TEXT,
    move_count     INTEGER NOT NULL CHECK (move_count >= 0),
    capped         INTEGER NOT NULL CHECK (capped = 0 OR capped = 1),
    started_at     TEXT,
    duration_ms    INTEGER,
    created_at     TEXT    NOT NULL,
    parity_status  TEXT    NOT NULL DEFAULT 'unchecked',
    hash_kind      INTEGER NOT NULL CHECK (hash_kind BETWEEN 0 AND 4),
    final_hash     INTEGER,
    steps          BLOB    NOT NULL CHECK (length(steps) >= 2 * move_count),
    hashes         BLOB    NOT NULL CHECK (length(hashes) = move_count * (CASE hash_kind WHEN 2 THEN 4 WHEN 4 THEN 4 ELSE 8 END)),
    UNIQUE (seed, game_index, board, num_players, policy)
)"""

# The identity's index leads with seed and game_index, which differ from game to game, so the
# insert's uniqueness probe settles each comparison on two integers; led by board and policy
# (text that every row of a run shares) each probe compared both strings first at every step
# of the b-tree search. The parity index holds only games someone has checked: every new game
# is `unchecked`, so none pays an index insert (both: callgrind, 20-column square8 rows, about
# 27.3k down to 20.0k instructions a row). Files created before keep the older layout (the
# identity led by board, every game in the parity index); they read and write the same rows,
# the same statements serve both, and the queries add PARITY_INDEXED where the partial index
# can serve them (parity_index_serves). The UNIQUE order is no part of the game's identity: ON
# CONFLICT names the same columns in IDENTITY_COLUMNS order, which SQLite matches as a set.
PARITY_INDEXED = "parity_status <> 'unchecked'"
INDEX_SQL = f"CREATE INDEX idx_games_parity ON games (parity_status) WHERE {PARITY_INDEXED}"


def parity_index_serves(statuses) -> bool:
    """Whether a filter on these parity statuses may add ``PARITY_INDEXED``: the same rows,
    served by the partial index. Not when 'unchecked' is among them (those rows are not in it)."""
    return "unchecked" not in statuses


SCHEMA_SQL = f"""
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
{GAMES_TABLE_SQL.format(name="games")};
{INDEX_SQL};
"""

TABLES = ("meta", "games")


# The numpy dtypes above are made on first use (PEP 562): the schema is read by every process
# that opens a DB, and the CPU self-play path never touches an array.
_DTYPE_SPECS = {"MOVE_RECORD_DTYPE": _MOVE_RECORD_FIELDS, "HASH_DTYPE": "<u8", "FAST32_DTYPE": "<u4",
                "PHASE_DTYPE": "u1", "PLAYER_DTYPE": "u1"}


def __getattr__(name):
    spec = _DTYPE_SPECS.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import numpy as np

    value = globals()[name] = np.dtype(spec)
    if name == "MOVE_RECORD_DTYPE":
        assert value.itemsize == MOVE_RECORD_SIZE
    return value
