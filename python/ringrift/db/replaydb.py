"""Conversion between our game database and the upstream ``GameReplayDB`` format (schema v18).

The upstream AI service keeps games in a SQLite file whose central tables are ``games``,
``game_players``, ``game_initial_state`` and ``game_moves`` (one row per move, the move as the
reference engine's camelCase Move JSON).  :data:`REPLAYDB_SCHEMA_SQL` recreates the complete
v18 layout (all ten tables, their indexes and the two triggers) so that files written here are
indistinguishable in shape from files the upstream code creates.

* :func:`to_replaydb` replays each stored game through the engine (records -> Move JSON needs
  the state: line and region cells are derived from it) and writes it with its initial state,
  its moves, its players' final tallies and state snapshots at upstream's cadence, every state
  in the shape upstream's ``GameState`` parses (:mod:`.upstream_state`);
* :func:`from_replaydb` matches every ``move_json`` to the engine's legal move that does the
  same thing (:func:`match_move`), replays it, checks the recorded snapshot hashes and winner,
  recomputes the per-step (fast) hashes, phases and players and stores the games.  A game that is not
  legal under the canonical rules is skipped with its move number and the reason.

The mapping of fields is documented in ``docs/game_db.md`` and ``docs/upstream.md``.
"""

from __future__ import annotations

import json
import numbers
import os
import sqlite3
import uuid
import zlib
import gzip
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .. import BOARDS, _core
from ..engine import Game, RingRiftError, move_from_json, move_to_json
from ..engine.json_io import engine_move_key, move_key
from .errors import DBError, DBSchemaError
from .schema import HASH_DTYPE, MOVE_RECORD_SIZE
from .store import GameDB, GameRow, _check_header, connect_readonly, connect_writable, utc_now, write_error
from .upstream_state import upstream_state

#: The upstream schema version this module reads and writes.
REPLAYDB_SCHEMA_VERSION = 18

#: ``games.source`` of games written by :func:`to_replaydb`.
SOURCE = "ringrift-gamedb"

#: Key in ``games.metadata_json`` under which our own columns travel (for an exact round trip).
META_KEY = "ringrift_gamedb"

#: Extra Move JSON field carrying our 16-byte move record (hex).  The reference's content key
#: cannot tell apart legal moves that differ only in engine-internal bytes (a territory region
#: found by two flood-fill passes is listed twice), so the record keeps the round trip exact.
#: Readers that do not know the field ignore it.
RECORD_FIELD = "ringriftRecord"

#: Upstream's default snapshot interval (``GameReplayDB.store_game(snapshot_interval=20)``).
SNAPSHOT_INTERVAL = 20

#: Namespace of the deterministic ``game_id`` (uuid5 of the game identity).
GAME_ID_NAMESPACE = uuid.UUID("5d8f3c2e-8a61-4f0b-9a57-6f0c2b1d7e43")

# The v18 layout, table by table.  Column order, types, defaults and constraints follow the
# upstream definition exactly (sqlite reports them back through PRAGMA table_info).
REPLAYDB_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS schema_metadata (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS games (
    game_id                TEXT PRIMARY KEY,
    board_type             TEXT NOT NULL,
    num_players            INTEGER NOT NULL,
    rng_seed               INTEGER,
    created_at             TEXT NOT NULL,
    completed_at           TEXT,
    game_status            TEXT NOT NULL,
    winner                 INTEGER,
    termination_reason     TEXT,
    total_moves            INTEGER NOT NULL,
    total_turns            INTEGER NOT NULL,
    duration_ms            INTEGER,
    source                 TEXT,
    schema_version         INTEGER NOT NULL,
    time_control_type      TEXT DEFAULT 'none',
    initial_time_ms        INTEGER,
    time_increment_ms      INTEGER,
    metadata_json          TEXT,
    quality_score          REAL,
    quality_category       TEXT,
    engine_mode            TEXT,
    parity_status          TEXT DEFAULT 'pending',
    parity_checked_at      TEXT,
    parity_divergence_move INTEGER,
    opponent_type          TEXT,
    opponent_model_id      TEXT
);

CREATE INDEX IF NOT EXISTS idx_games_board_type      ON games(board_type);
CREATE INDEX IF NOT EXISTS idx_games_winner          ON games(winner);
CREATE INDEX IF NOT EXISTS idx_games_termination     ON games(termination_reason);
CREATE INDEX IF NOT EXISTS idx_games_created         ON games(created_at);
CREATE INDEX IF NOT EXISTS idx_games_source          ON games(source);
CREATE INDEX IF NOT EXISTS idx_games_board_players   ON games(board_type, num_players);
CREATE INDEX IF NOT EXISTS idx_games_created_board   ON games(created_at, board_type);
CREATE INDEX IF NOT EXISTS idx_games_board_created   ON games(board_type, created_at);
CREATE INDEX IF NOT EXISTS idx_games_quality         ON games(quality_score DESC);
CREATE INDEX IF NOT EXISTS idx_games_quality_board   ON games(board_type, quality_score DESC);
CREATE INDEX IF NOT EXISTS idx_games_engine_mode     ON games(engine_mode);
CREATE INDEX IF NOT EXISTS idx_games_board_engine    ON games(board_type, engine_mode);
CREATE INDEX IF NOT EXISTS idx_games_parity_status   ON games(parity_status);
CREATE INDEX IF NOT EXISTS idx_games_board_parity    ON games(board_type, parity_status);
CREATE INDEX IF NOT EXISTS idx_games_parity_created  ON games(parity_status, created_at);
CREATE INDEX IF NOT EXISTS idx_games_config          ON games(board_type, num_players, game_status);
CREATE INDEX IF NOT EXISTS idx_games_opponent_type   ON games(opponent_type);
CREATE INDEX IF NOT EXISTS idx_games_board_opponent  ON games(board_type, opponent_type);

CREATE TABLE IF NOT EXISTS game_players (
    game_id                TEXT NOT NULL,
    player_number          INTEGER NOT NULL,
    player_type            TEXT NOT NULL,
    ai_type                TEXT,
    ai_difficulty          INTEGER,
    ai_profile_id          TEXT,
    final_eliminated_rings INTEGER,
    final_territory_spaces INTEGER,
    final_rings_in_hand    INTEGER,
    PRIMARY KEY (game_id, player_number),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS game_initial_state (
    game_id            TEXT PRIMARY KEY,
    initial_state_json TEXT NOT NULL,
    compressed         INTEGER DEFAULT 0,
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS game_moves (
    game_id            TEXT NOT NULL,
    move_number        INTEGER NOT NULL,
    turn_number        INTEGER NOT NULL,
    player             INTEGER NOT NULL,
    phase              TEXT NOT NULL,
    move_type          TEXT NOT NULL,
    move_json          TEXT NOT NULL,
    timestamp          TEXT,
    think_time_ms      INTEGER,
    time_remaining_ms  INTEGER,
    engine_eval        REAL,
    engine_eval_type   TEXT,
    engine_depth       INTEGER,
    engine_nodes       INTEGER,
    engine_pv          TEXT,
    engine_time_ms     INTEGER,
    move_probs         TEXT,
    search_stats_json  TEXT,
    heuristic_features BLOB,
    PRIMARY KEY (game_id, move_number),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_moves_game_turn ON game_moves(game_id, turn_number);
CREATE INDEX IF NOT EXISTS idx_moves_lookup    ON game_moves(game_id, move_number);

CREATE TABLE IF NOT EXISTS game_state_snapshots (
    game_id     TEXT NOT NULL,
    move_number INTEGER NOT NULL,
    state_json  TEXT NOT NULL,
    compressed  INTEGER DEFAULT 0,
    state_hash  TEXT,
    PRIMARY KEY (game_id, move_number),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS game_choices (
    game_id              TEXT NOT NULL,
    move_number          INTEGER NOT NULL,
    choice_type          TEXT NOT NULL,
    player               INTEGER NOT NULL,
    options_json         TEXT NOT NULL,
    selected_option_json TEXT NOT NULL,
    ai_reasoning         TEXT,
    PRIMARY KEY (game_id, move_number, choice_type),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS game_history_entries (
    game_id                   TEXT NOT NULL,
    move_number               INTEGER NOT NULL,
    player                    INTEGER NOT NULL,
    phase_before              TEXT NOT NULL,
    phase_after               TEXT NOT NULL,
    status_before             TEXT NOT NULL,
    status_after              TEXT NOT NULL,
    progress_before_json      TEXT NOT NULL,
    progress_after_json       TEXT NOT NULL,
    state_hash_before         TEXT,
    state_hash_after          TEXT,
    board_summary_before_json TEXT,
    board_summary_after_json  TEXT,
    state_before_json         TEXT,
    state_after_json          TEXT,
    compressed_states         INTEGER DEFAULT 0,
    available_moves_json      TEXT,
    available_moves_count     INTEGER,
    engine_eval               REAL,
    engine_depth              INTEGER,
    fsm_valid                 INTEGER,
    fsm_error_code            TEXT,
    PRIMARY KEY (game_id, move_number),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_history_game        ON game_history_entries(game_id);
CREATE INDEX IF NOT EXISTS idx_history_game_phase  ON game_history_entries(game_id, phase_before);
CREATE INDEX IF NOT EXISTS idx_history_game_player ON game_history_entries(game_id, player);
CREATE INDEX IF NOT EXISTS idx_moves_player        ON game_moves(game_id, player);

CREATE TABLE IF NOT EXISTS game_nnue_features (
    game_id            TEXT NOT NULL,
    move_number        INTEGER NOT NULL,
    player_perspective INTEGER NOT NULL,
    features           BLOB NOT NULL,
    value              REAL NOT NULL,
    board_type         TEXT NOT NULL,
    feature_dim        INTEGER NOT NULL,
    PRIMARY KEY (game_id, move_number, player_perspective),
    FOREIGN KEY (game_id) REFERENCES games(game_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_nnue_game       ON game_nnue_features(game_id);
CREATE INDEX IF NOT EXISTS idx_nnue_board_type ON game_nnue_features(board_type);

CREATE TABLE IF NOT EXISTS orphaned_games (
    game_id         TEXT PRIMARY KEY,
    detected_at     TEXT NOT NULL,
    reason          TEXT,
    original_status TEXT,
    board_type      TEXT,
    num_players     INTEGER
);
CREATE INDEX IF NOT EXISTS idx_orphaned_detected ON orphaned_games(detected_at);

-- A game may only be marked completed/finished once it has at least 5 moves ...
CREATE TRIGGER IF NOT EXISTS enforce_moves_on_complete
BEFORE UPDATE ON games
WHEN NEW.game_status IN ('completed', 'finished') AND NEW.total_moves < 5
BEGIN
    SELECT RAISE(ABORT, 'Cannot complete game with fewer than 5 moves (MIN_MOVES_REQUIRED). Games with insufficient moves are useless for training.');
END;

-- ... and a row inserted as completed/finished must already have 5 move rows.
CREATE TRIGGER IF NOT EXISTS enforce_moves_on_insert
AFTER INSERT ON games
WHEN NEW.game_status IN ('completed', 'finished')
BEGIN
    SELECT CASE
        WHEN (SELECT COUNT(*) FROM game_moves WHERE game_id = NEW.game_id) < 5
        THEN RAISE(ABORT, 'Cannot insert completed game with fewer than 5 moves. Move data must be inserted before completing the game.')
    END;
END;
"""

# Our ``games.reason`` -> upstream ``termination_reason`` vocabulary.
_REASON_TO_UPSTREAM = {
    "ring_elimination": "ring_elimination",
    "territory_control": "territory",
    "last_player_standing": "last_player_standing",
    "tiebreaker_by_player_number": "tiebreaker_by_player_number",
    "resignation": "resignation",
    "timeout": "timeout",
}
#: ``termination_reason`` of a game stopped by the move cap (no winner).
CAPPED_REASON = "max_moves"

# Our ``parity_status`` -> upstream ``parity_status`` vocabulary (others are kept as they are).
_PARITY_TO_UPSTREAM = {"unchecked": "pending", "ok": "passed"}
_PARITY_FROM_UPSTREAM = {v: k for k, v in _PARITY_TO_UPSTREAM.items()}

_PHASE_INDEX = {name: i for i, name in enumerate(_core.PHASES)}
_REASON_INDEX = {name: i for i, name in enumerate(_core.REASONS)}


# ---- helpers -------------------------------------------------------------------------------

def game_id_for(row: GameRow) -> str:
    """The deterministic replay-DB ``game_id`` of one of our games (uuid5 of its identity)."""
    key = "|".join(str(v) for v in row.identity)
    return str(uuid.uuid5(GAME_ID_NAMESPACE, key))


def _game_index_for(game_id: str) -> int:
    """A stable non-negative 63-bit index for a foreign game id (used when no identity was kept)."""
    return int.from_bytes(uuid.uuid5(GAME_ID_NAMESPACE, f"foreign|{game_id}").bytes[:8], "big") >> 1


def completed_at(started_at: str | None, duration_ms: int | None) -> str | None:
    """The ``completed_at`` the converter writes: start + duration, UTC, milliseconds (None if unknown,
    as for a start or a duration no clock can hold: a damaged or foreign row)."""
    if not isinstance(started_at, str) or not started_at or isinstance(duration_ms, bool) \
            or not isinstance(duration_ms, numbers.Integral):
        return None
    try:
        start = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        return (start + timedelta(milliseconds=int(duration_ms))).astimezone(timezone.utc).isoformat(
            timespec="milliseconds")
    except (ValueError, OverflowError):
        return None


def _json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


class _ReplayConn:
    """A connection to a replay DB with errors mapped to DBError."""

    def __init__(self, path: Path, *, readonly: bool):
        self.path = path
        where = str(path)
        if path.is_dir():
            raise DBError(f"{where}: is a directory, not a replay database", path=where)
        if readonly and not path.exists():
            raise DBError(f"{where}: no such replay database", path=where)
        if path.exists() and not path.is_file():  # a FIFO would block the header read
            raise DBError(f"{where}: not a regular file, not a replay database", path=where)
        if not readonly and not path.parent.is_dir():
            raise DBError(f"{where}: directory {path.parent} does not exist", path=where)
        try:
            if path.exists():
                _check_header(path)
            if readonly:
                self.conn = connect_readonly(path, timeout=30)
            else:
                self.conn = connect_writable(path, timeout=30)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.tables = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise DBError(f"{where}: not a readable SQLite database ({exc})", path=where) from None

    def version(self) -> int | None:
        if "schema_metadata" not in self.tables:
            return None
        row = self.conn.execute("SELECT value FROM schema_metadata WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else None
        except (TypeError, ValueError):
            return None

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass


def create_replaydb_schema(conn: sqlite3.Connection) -> None:
    """Create the complete v18 layout in an empty database and record its version."""
    conn.executescript(REPLAYDB_SCHEMA_SQL)
    conn.execute("INSERT OR REPLACE INTO schema_metadata (key, value) VALUES ('schema_version', ?)",
                 (str(REPLAYDB_SCHEMA_VERSION),))


# ---- ours -> replay DB ---------------------------------------------------------------------

@dataclass
class ConversionResult:
    """Outcome of a conversion: games read, games written, games skipped (with reasons)."""

    read: int = 0
    written: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"{self.read} games read, {self.written} written"
        if self.duplicates:
            s += f", {self.duplicates} already present"
        if self.skipped:
            s += f", {len(self.skipped)} skipped"
        return s


def is_snapshot_move(i: int, total: int) -> bool:
    """Upstream's snapshot cadence (``GameReplayDB.store_game``): after every
    :data:`SNAPSHOT_INTERVAL`-th move (0-based move numbers 19, 39, ...) and after the last."""
    return (i + 1) % SNAPSHOT_INTERVAL == 0 or i == total - 1


def _move_doc(i: int, phase: str, m, mj: dict) -> dict:
    return {"id": f"move-{i + 1}", **mj, "moveNumber": i + 1, "phase": phase, RECORD_FIELD: m.to_record().hex()}


def _replay_with_snapshots(row: GameRow, *, game_id: str | None, created_at: str,
                           last_move_at: str | None = None):
    """Replay one stored game, checking each stored hash.  Returns the per-move
    (phase_before, move, move_doc) list, the final game and, when ``game_id`` is given, the
    upstream-shaped snapshots [(move_number, state_json, state_hash)] at upstream's cadence."""
    g = Game(row.board, row.num_players)
    out, snaps, history = [], [], []
    hashes = row.hashes.tolist()
    kind = row.hash_kind
    n = row.move_count
    for i in range(n):
        m = _core.move_from_record(row.moves[i].tobytes())
        phase = g.phase
        doc = _move_doc(i, phase, m, move_to_json(g, m))
        g.apply(m)
        if kind == "reference":
            if g.hash() != f"{hashes[i]:016x}":
                raise ValueError(f"step {i}: state hash {g.hash()} differs from the stored {hashes[i]:016x}")
        elif g.step_hash(kind) != hashes[i]:
            raise ValueError(f"step {i}: {kind} step hash {g.step_hash(kind):x} differs from the "
                             f"stored {hashes[i]:x}")
        out.append((phase, m, doc))
        if game_id is not None:
            history.append(doc)
            if is_snapshot_move(i, n):
                state = upstream_state(g, game_id=game_id, created_at=created_at,
                                       last_move_at=last_move_at if i == n - 1 else created_at,
                                       move_history=history)
                snaps.append((i, _json(state), g.hash()))
    return out, g, snaps


def _parity_upstream(status: str) -> str:
    return _PARITY_TO_UPSTREAM.get(status, status)


def _write_game(conn: sqlite3.Connection, row: GameRow) -> None:
    gid = game_id_for(row)
    created = row.started_at or row.created_at
    completed = completed_at(row.started_at, row.duration_ms)
    steps, final, snaps = _replay_with_snapshots(row, game_id=gid, created_at=created,
                                                 last_move_at=completed or created)
    # The row's result is what upstream's tools train on: it must be the replay's (the hashes alone
    # do not cover it), else the game is refused as any other that does not replay
    if (row.winner or None) != final.winner or (row.reason or None) != final.victory_reason \
            or bool(row.capped) != (final.status == "active"):
        raise ValueError(f"stored result winner {row.winner}, reason {row.reason}, capped {bool(row.capped)} but the "
                         f"replay ends with winner {final.winner}, reason {final.victory_reason}, {final.status}")
    status = final.status
    reason = _REASON_TO_UPSTREAM.get(row.reason or "", row.reason)
    if reason is None and row.capped:
        reason = CAPPED_REASON
    meta = {
        "source": SOURCE,
        "engine_mode": row.policy,
        "termination_reason": reason,
        META_KEY: {
            "board": row.board, "num_players": row.num_players, "policy": row.policy,
            "seed": row.seed, "game_index": row.game_index, "engine_version": row.engine_version,
            "host": row.host, "max_moves": row.max_moves, "winner": row.winner,
            "reason": row.reason, "move_count": row.move_count, "capped": bool(row.capped),
            "started_at": row.started_at, "duration_ms": row.duration_ms,
            "created_at": row.created_at, "parity_status": row.parity_status,
            "final_hash": final.hash(),
        },
    }
    initial = upstream_state(Game(row.board, row.num_players), game_id=gid, created_at=created)
    # Inserted as in progress, then completed once the moves are in (the v18 triggers).
    conn.execute(
        "INSERT INTO games (game_id, board_type, num_players, rng_seed, created_at, game_status, "
        "total_moves, total_turns, source, schema_version, metadata_json) "
        "VALUES (?, ?, ?, ?, ?, 'in_progress', 0, 0, ?, ?, ?)",
        (gid, row.board, row.num_players, row.seed, created, SOURCE, REPLAYDB_SCHEMA_VERSION, _json(meta)))
    conn.execute("INSERT INTO game_initial_state (game_id, initial_state_json, compressed) VALUES (?, ?, 0)",
                 (gid, _json(initial)))
    move_rows = []
    turn, current = 0, 1
    for i, (phase, m, doc) in enumerate(steps):
        if m.player != current:
            turn += 1
            current = m.player
        move_rows.append((gid, i, turn, m.player, phase, m.type, _json(doc)))
    conn.executemany(
        "INSERT INTO game_moves (game_id, move_number, turn_number, player, phase, move_type, move_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", move_rows)
    conn.executemany(
        "INSERT INTO game_state_snapshots (game_id, move_number, state_json, compressed, state_hash) "
        "VALUES (?, ?, ?, 0, ?)", [(gid, i, text, h) for i, text, h in snaps])
    conn.execute(
        "UPDATE games SET completed_at = ?, game_status = ?, winner = ?, termination_reason = ?, "
        "total_moves = ?, total_turns = ?, duration_ms = ?, engine_mode = ?, parity_status = ?, "
        "opponent_type = ? WHERE game_id = ?",
        (completed if status == "completed" else None,
         status, row.winner or None, reason, len(steps), turn + 1, row.duration_ms, row.policy,
         _parity_upstream(row.parity_status), row.policy, gid))
    conn.executemany(
        "INSERT INTO game_players (game_id, player_number, player_type, ai_type, ai_difficulty, "
        "ai_profile_id, final_eliminated_rings, final_territory_spaces, final_rings_in_hand) "
        "VALUES (?, ?, 'ai', ?, NULL, NULL, ?, ?, ?)",
        [(gid, p["player"], row.policy, p["eliminated_rings"], p["territory_spaces"], p["rings_in_hand"])
         for p in final.players()])


def to_replaydb(our_db_path, out_path, *, strict: bool = True) -> ConversionResult:
    """Write every game of our database ``our_db_path`` into the replay DB ``out_path``.

    A new ``out_path`` is built in a temporary file and renamed into place at the end; an
    existing v18 replay DB is appended to in one transaction (games already present, by their
    deterministic ``game_id``, are skipped).  Each game is replayed through the engine and its
    stored hashes are checked on the way; a game that fails raises :class:`DBError`
    (``strict=True``) or is skipped and listed in the result.
    """
    out_path = Path(out_path)
    result = ConversionResult()
    if out_path.is_dir():
        raise DBError(f"{out_path}: is a directory, not a replay database", path=str(out_path))
    if not out_path.parent.is_dir():
        raise DBError(f"{out_path}: directory {out_path.parent} does not exist", path=str(out_path))
    src = GameDB(our_db_path, create=False, readonly=True)
    try:
        if out_path.exists():
            target, tmp = out_path, None
            rc = _ReplayConn(out_path, readonly=False)
            version = rc.version()
            if version is None:
                rc.close()
                raise DBError(f"{out_path}: exists and is not a replay database (no schema_metadata)",
                              path=str(out_path))
            if version != REPLAYDB_SCHEMA_VERSION:
                rc.close()
                raise DBSchemaError(str(out_path), version, REPLAYDB_SCHEMA_VERSION, what="replay database")
        else:
            target = out_path
            tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
            if tmp.exists():
                tmp.unlink()
            rc = None
        try:
            if rc is None:  # a new file's schema: a full disk can fail it too, and the clean-up below is the same
                rc = _ReplayConn(tmp, readonly=False)
                rc.conn.execute("PRAGMA journal_mode = DELETE")
                create_replaydb_schema(rc.conn)
            conn = rc.conn
            conn.execute("BEGIN IMMEDIATE")

            def corrupt(game_id, why):  # a row that cannot be decoded: skipped with its reason, or strict's error
                result.read += 1
                if strict:
                    raise DBError(f"{our_db_path}: cannot convert game id {game_id}: {why}", path=str(our_db_path))
                result.skipped.append((str(game_id), f"corrupt row: {why}"))

            for row in src.iter_games(on_corrupt=corrupt):
                result.read += 1
                gid = game_id_for(row)
                if conn.execute("SELECT 1 FROM games WHERE game_id = ?", (gid,)).fetchone():
                    result.duplicates += 1
                    continue
                conn.execute("SAVEPOINT game")
                try:
                    _write_game(conn, row)
                    conn.execute("RELEASE game")
                    result.written += 1
                except (RingRiftError, ValueError, sqlite3.IntegrityError) as exc:
                    conn.execute("ROLLBACK TO game")
                    conn.execute("RELEASE game")
                    why = f"game id {row.id} {row.identity}: {exc}"
                    if strict:
                        raise DBError(f"{our_db_path}: cannot convert {why}", path=str(our_db_path)) from None
                    result.skipped.append((str(row.id), str(exc)))
            conn.execute("COMMIT")
        except BaseException:
            if rc is not None:
                if rc.conn.in_transaction:
                    rc.conn.execute("ROLLBACK")
                rc.close()
            if tmp is not None:  # the temporary file, and the journal of a schema a full disk stopped
                for p in (tmp, tmp.with_name(tmp.name + "-journal")):
                    try:
                        p.unlink()
                    except FileNotFoundError:
                        pass
            raise
        rc.close()
        if tmp is not None:
            os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise write_error(exc)(f"{out_path}: writing the replay database failed: {exc}",
                               path=str(out_path)) from None
    finally:
        src.close()
    return result


# ---- replay DB -> ours ---------------------------------------------------------------------

def _read_text(value, compressed) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        if compressed or value[:2] == b"\x1f\x8b":
            value = gzip.decompress(value)
        return value.decode("utf-8")
    return value


def effect_key(key: tuple, move: dict) -> tuple:
    """The part of a move's content key that says what the move does.

    Dropped: a territory region's ``controllingPlayer`` (upstream's Python generator writes the
    mover there; applying a region reads only its cells).  A missing ``eliminationContext``
    stays ``territory``, as the TS engine reads it (RULES.md 5.5)."""
    if key[0] == "choose_territory_option":
        return key[:3]
    return key


def match_move(game, move: dict):
    """The legal move of ``game`` that does what the Move JSON ``move`` does (see
    :func:`effect_key`); ids, timestamps, think times and move numbers play no part.
    Raises IllegalMoveError (a RingRiftError) when none does."""
    key = move_key(move)
    if key[0] in ("resign", "timeout"):
        return move_from_json(game, move)
    want = effect_key(key, move)
    fallback = None
    for m in game.legal_moves():
        if m.type != key[0]:
            continue
        have = engine_move_key(game, m)
        if have == key:  # every field agrees: the move the writer meant (e.g. the same region of two passes)
            return m
        if fallback is None and effect_key(have, move) == want:
            fallback = m
    if fallback is not None:
        return fallback
    return move_from_json(game, move)  # raises with the standard "not in the legal-move list" message


def _hint(game, move: dict, prev_noop_line: bool) -> str:
    """Why a move of another engine is not on the canonical surface, where a known rule
    difference explains it (RULES.md: the canonical TS rules win)."""
    if prev_noop_line:
        return (" (the move before, process_line on an over-length line, changes nothing under the "
                "canonical rules: RULES.md 5.5)")
    if move.get("type") == "process_line":
        try:
            line = move_key(move)[2]
        except (RingRiftError, ValueError, IndexError):
            return ""
        if any(m.type == "choose_line_option" and engine_move_key(game, m)[2] == line for m in game.legal_moves()):
            return (" (the canonical rules offer this line only as choose_line_option: "
                    "RULES.md 6.4.4, hex8 with 3-4 players)")
    return ""


def _replay_from_json(board: str, num_players: int, move_jsons: list[str],
                      snapshot_hashes: dict[int, str] | None = None, territory_note: str = ""):
    g = Game(board, num_players)
    n = len(move_jsons)
    recs = bytearray(n * MOVE_RECORD_SIZE)
    hashes = np.zeros(n, dtype=HASH_DTYPE)
    phases = np.zeros(n, dtype=np.uint8)
    players = np.zeros(n, dtype=np.uint8)
    snapshot_hashes = snapshot_hashes or {}
    prev_hash, prev_noop_line = g.hash(), False
    for i, text in enumerate(move_jsons):
        try:
            mj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"move {i}: bad move_json ({exc})") from None
        if g.status != "active":
            raise ValueError(
                f"move {i}: the game is over under the canonical rules after move {i - 1} "
                f"({g.status}, winner {g.winner or 'none'}, {g.victory_reason or 'no reason'}) "
                f"but the recording goes on with {n - i} more move(s)"
                + (territory_note if g.victory_reason == "territory_control" else ""))
        try:
            if not isinstance(mj, dict):
                raise ValueError(f"a move must be a JSON object, got {type(mj).__name__}")
            m = match_move(g, mj)
            rec = mj.get(RECORD_FIELD)
            if rec is not None:
                try:
                    exact = _core.move_from_record(bytes.fromhex(rec))
                except (TypeError, ValueError):
                    raise ValueError(f"malformed {RECORD_FIELD} {rec!r}") from None
                if effect_key(engine_move_key(g, exact), mj) != effect_key(engine_move_key(g, m), mj):
                    raise ValueError(f"{RECORD_FIELD} does not describe the same move as the JSON")
                m = exact
            recs[i * MOVE_RECORD_SIZE:(i + 1) * MOVE_RECORD_SIZE] = m.to_record()
            g.apply(m)
        except (RingRiftError, ValueError) as exc:
            hint = _hint(g, mj, prev_noop_line) if isinstance(mj, dict) else ""
            raise ValueError(f"move {i}: {exc}{hint}") from None
        h = g.hash()
        prev_noop_line = mj.get("type") == "process_line" and h == prev_hash
        prev_hash = h
        want = snapshot_hashes.get(i)
        if want and want != h:
            raise ValueError(f"move {i}: the canonical state after this move (hash {h}) differs from the "
                             f"recorded snapshot (hash {want})")
        hashes[i] = g.cells_hash()  # stored as the cells step hash, as self-play stores it
        phases[i] = _PHASE_INDEX[g.phase]
        players[i] = g.current_player
    return g, bytes(recs), hashes, phases, players


def _standard_start(board: str, num_players: int, state: dict) -> bool:
    if (state.get("rulesOptions") or {}).get("swapRuleEnabled"):
        return False
    try:
        return Game.from_json(state, board, num_players).hash() == Game(board, num_players).hash()
    except RingRiftError:
        return False


_NEEDED = {
    "games": ("game_id", "board_type", "num_players", "rng_seed", "created_at", "winner",
              "duration_ms", "metadata_json", "engine_mode", "parity_status"),
    "game_moves": ("game_id", "move_number", "move_json"),
    "game_initial_state": ("game_id", "initial_state_json", "compressed"),
}


def from_replaydb(path, our_db_path, *, strict: bool = False, batch_size: int = 500) -> ConversionResult:
    """Read every game of the replay DB ``path`` into our database ``our_db_path`` (created if
    missing).

    Each ``move_json`` is matched to the legal move that does the same thing (:func:`match_move`)
    and replayed; the per-step hashes, phases and players are recomputed by the engine, and the
    recorded snapshot hashes and winner must agree.  Games that began from a non-standard
    position, or that are not legal under the canonical rules, are skipped and listed in the result
    (``strict=True`` raises :class:`DBError` instead).  Games are stored in transactions of
    ``batch_size``; identities already stored are ignored.
    """
    path = Path(path)
    rc = _ReplayConn(path, readonly=True)
    result = ConversionResult()
    try:
        version = rc.version()
        if version is None or "games" not in rc.tables or "game_moves" not in rc.tables:
            raise DBError(f"{path}: not a replay database (no schema_metadata/games/game_moves tables)",
                          path=str(path))
        if version > REPLAYDB_SCHEMA_VERSION:
            raise DBSchemaError(str(path), version, REPLAYDB_SCHEMA_VERSION, what="replay database")
        for table, cols in _NEEDED.items():
            have = set(rc.columns(table)) if table in rc.tables else set()
            missing = [c for c in cols if c not in have]
            if missing:
                raise DBSchemaError(str(path), f"{version} (table {table} lacks {', '.join(missing)})",
                                    REPLAYDB_SCHEMA_VERSION, what="replay database")
        has_snapshots = ("game_state_snapshots" in rc.tables
                         and {"move_number", "state_hash"} <= set(rc.columns("game_state_snapshots")))
        created = not Path(our_db_path).exists()
        try:
            with GameDB(our_db_path) as dst:
                pending: list[tuple] = []
                conn = rc.conn
                games = conn.execute(
                    "SELECT g.game_id, g.board_type, g.num_players, g.rng_seed, g.created_at, g.winner, "
                    "g.duration_ms, g.metadata_json, g.engine_mode, g.parity_status, "
                    "s.initial_state_json, s.compressed "
                    "FROM games g LEFT JOIN game_initial_state s ON s.game_id = g.game_id "
                    "ORDER BY g.created_at, g.game_id")  # streamed; per-game reads share the connection
                for (gid, board, num_players, rng_seed, created_at, winner, duration_ms, meta_json,
                     engine_mode, parity, init_json, init_comp) in games:
                    result.read += 1
                    try:
                        tup = _convert_one(conn, gid, board, num_players, rng_seed, created_at, winner,
                                           duration_ms, meta_json, engine_mode, parity, init_json, init_comp,
                                           has_snapshots)
                    except (ValueError, RingRiftError, KeyError, TypeError, OSError, zlib.error) as exc:
                        if strict:
                            raise DBError(f"{path}: game {gid}: {exc}", path=str(path)) from None
                        result.skipped.append((gid, str(exc)))
                        continue
                    pending.append(tup)
                    if len(pending) >= batch_size:
                        n = dst._insert_rows(pending, hash_kind="cells64")
                        result.written += n
                        result.duplicates += len(pending) - n
                        pending = []
                if pending:
                    n = dst._insert_rows(pending, hash_kind="cells64")
                    result.written += n
                    result.duplicates += len(pending) - n
        except BaseException:
            if created and result.written == 0:  # a strict import that stopped before any game: no empty DB left
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{our_db_path}{suffix}").unlink(missing_ok=True)
            raise
    except sqlite3.Error as exc:
        raise DBError(f"{path}: reading the replay database failed: {exc}", path=str(path)) from None
    finally:
        rc.close()
    return result


def _checked_ours(ours: dict) -> dict:
    """Our columns as a round trip carries them in metadata_json, each of the type and range our
    schema stores; a value that is not (a seed of 10**23, a game index of -1, capped 7) is a
    ValueError, so that game is skipped with the reason instead of failing the whole import or
    storing a row our own checks reject."""
    def bad(key):
        raise ValueError(f"metadata_json.{META_KEY}.{key} is {ours.get(key)!r}, not a value the game DB stores")

    def is_int(v) -> bool:
        return type(v) is int

    for key in ("policy",):
        if not isinstance(ours.get(key), str) or not ours[key]:
            bad(key)
    for key in ("seed", "game_index"):
        if not is_int(ours.get(key)) or not 0 <= ours[key] <= 2**63 - 1:
            bad(key)
    if ours.get("capped") not in (None, 0, 1, True, False):
        bad("capped")
    for key in ("engine_version", "host", "started_at", "created_at", "parity_status"):
        if ours.get(key) is not None and not isinstance(ours[key], str):
            bad(key)
    for key in ("max_moves", "duration_ms"):
        if ours.get(key) is not None and (not is_int(ours[key]) or not -2**63 <= ours[key] <= 2**63 - 1):
            bad(key)
    return ours


def _convert_one(conn, gid, board, num_players, rng_seed, created_at, winner, duration_ms,
                 meta_json, engine_mode, parity, init_json, init_comp, has_snapshots=False) -> tuple:
    if board not in BOARDS:
        raise ValueError(f"unsupported board {board!r}")
    num_players = int(num_players)
    territory_note = ""
    if init_json is not None:
        state = json.loads(_read_text(init_json, init_comp))
        if not _standard_start(board, num_players, state):
            raise ValueError("starts from a non-standard position (our format stores standard starts only)")
        # Upstream's create_initial_state leaves territoryVictoryMinimum null; its engine then uses
        # the legacy territoryVictoryThreshold.  We replay from the standard start, whose minimum is
        # floor(cells / n) + 1 (RULES.md 2.2); a game whose result depends on it is named.
        if isinstance(state, dict) and state.get("territoryVictoryMinimum") is None:
            standard = Game(board, num_players).territory_minimum
            legacy = state.get("territoryVictoryThreshold")
            if legacy not in (None, standard):
                territory_note = (f"; the recording's initial state has no territoryVictoryMinimum, so its "
                                  f"engine used territoryVictoryThreshold {legacy} where the standard start "
                                  f"has {standard} (RULES.md 2.2)")
    meta = {}
    if meta_json:
        try:
            meta = json.loads(meta_json) or {}
        except ValueError:
            meta = {}
    if not isinstance(meta, dict):  # valid JSON of another shape ([1], "s", 1): no metadata
        meta = {}
    ours = meta.get(META_KEY)
    ours = _checked_ours(ours) if isinstance(ours, dict) else {}

    moves = [r[0] for r in conn.execute(
        "SELECT move_json FROM game_moves WHERE game_id = ? ORDER BY move_number", (gid,))]
    snapshot_hashes = {}
    if has_snapshots:
        snapshot_hashes = {int(mn): h for mn, h in conn.execute(
            "SELECT move_number, state_hash FROM game_state_snapshots WHERE game_id = ? AND state_hash IS NOT NULL",
            (gid,))}
    g, recs, hashes, phases, players = _replay_from_json(board, num_players, [_read_text(m, 0) for m in moves],
                                                         snapshot_hashes, territory_note)
    n = len(moves)
    final_winner = g.winner or 0
    if winner is not None and int(winner) != final_winner:
        raise ValueError(f"recorded winner {winner} but the replay ends with winner {final_winner or 'none'}"
                         + (territory_note if g.victory_reason == "territory_control" else ""))
    reason = g.victory_reason if g.status == "completed" else None
    if reason is not None and reason not in _REASON_INDEX:
        reason = str(reason)
    if ours.get("final_hash") and ours["final_hash"] != g.hash():
        raise ValueError(f"final state hash {g.hash()} differs from the recorded {ours['final_hash']}")

    if ours:
        policy, seed, game_index = str(ours["policy"]), int(ours["seed"]), int(ours["game_index"])
        capped = 1 if ours.get("capped") else 0
        engine_version, host = ours.get("engine_version"), ours.get("host")
        max_moves = ours.get("max_moves")
        started_at = ours.get("started_at")
        created = ours.get("created_at") or utc_now()
        parity_status = ours.get("parity_status") or "unchecked"
    else:
        policy = str(engine_mode or meta.get("engine_mode") or "replaydb")
        seed = int(rng_seed) if rng_seed is not None else 0
        game_index = _game_index_for(gid)
        capped = 0
        engine_version = meta.get("engine_version") if isinstance(meta.get("engine_version"), str) else None
        host = None
        max_moves = None
        started_at = created_at
        created = utc_now()
        parity_status = _PARITY_FROM_UPSTREAM.get(parity or "", parity or "unchecked")
    duration = ours.get("duration_ms", duration_ms)
    return (board, num_players, policy, seed, game_index, engine_version, host, max_moves,
            final_winner, reason, n, capped, started_at, duration, created, parity_status,
            recs, hashes.tobytes(), phases.tobytes(), players.tobytes())


def replaydb_summary(path) -> dict:
    """Counts of a replay DB: schema version, games, moves, per board/players."""
    path = Path(path)
    rc = _ReplayConn(path, readonly=True)
    try:
        version = rc.version()
        if version is None or "games" not in rc.tables:
            raise DBError(f"{path}: not a replay database", path=str(path))
        q = rc.conn.execute
        games = q("SELECT COUNT(*) FROM games").fetchone()[0]
        moves = q("SELECT COUNT(*) FROM game_moves").fetchone()[0] if "game_moves" in rc.tables else 0
        configs = [{"board": b, "num_players": n, "games": c} for b, n, c in q(
            "SELECT board_type, num_players, COUNT(*) FROM games GROUP BY board_type, num_players "
            "ORDER BY board_type, num_players")]
        statuses = dict(q("SELECT game_status, COUNT(*) FROM games GROUP BY game_status").fetchall())
        return {"path": str(path), "format": "GameReplayDB", "schema_version": version, "games": games,
                "moves": moves, "game_status": statuses, "by_config": configs}
    except sqlite3.Error as exc:
        raise DBError(f"{path}: reading the replay database failed: {exc}", path=str(path)) from None
    finally:
        rc.close()
