"""Game-DB work of the nodes. Every function here is blocking and runs in a worker thread
(`asyncio.to_thread`), never on the event loop; SQLite and hashing release the GIL while they
work, so the loop stays responsive."""

from __future__ import annotations

import os
from pathlib import Path

from ..db import GameDB
from ..db.errors import DBError
from ..pipeline.models import sha256_file  # noqa: F401  (also node.py's, through this module)
from ..pipeline.ranges import IndexSet, index_runs


def seal(path: Path) -> dict:
    """Fold a job DB's WAL into the file (a read-write open and close checkpoints it) and
    describe it: {"games", "size", "sha256"}; {"games": 0, ...} when there is no file. Raises
    DBError for an unusable file."""
    if not path.exists():
        return {"games": 0, "size": 0, "sha256": None}
    with GameDB(path, create=False) as db:
        games = db.conn.execute("SELECT COUNT(*) FROM games").fetchone()[0]
    for suffix in ("-wal", "-shm"):
        try:
            if os.path.getsize(f"{path}{suffix}") == 0:
                os.unlink(f"{path}{suffix}")
        except OSError:
            pass
    return {"games": games, "size": path.stat().st_size, "sha256": sha256_file(path)}


def check_job_db(path: Path, ident: dict, lo: int, hi: int, engine_version: str) -> None:
    """Raise ValueError unless every game of `path` belongs to the run `ident` (board,
    num_players, policy, seed), lies in [lo, hi) and was played by `engine_version`."""
    try:
        with GameDB(path, create=False) as db:
            groups = db.conn.execute(
                "SELECT board, num_players, policy, seed, engine_version, MIN(game_index), MAX(game_index) "
                "FROM games GROUP BY board, num_players, policy, seed, engine_version").fetchall()
    except DBError as exc:
        raise ValueError(f"unusable game DB: {exc}") from None
    want = (ident["board"], ident["num_players"], ident["policy"], ident["seed"])
    for board, players, policy, seed, version, mn, mx in groups:
        if (board, players, policy, seed) != want:
            raise ValueError(f"holds games of another run ({board} {players}p {policy} seed {seed})")
        if version != engine_version:
            raise ValueError(f"played by engine {version}, this node runs {engine_version}")
        if mn < lo or mx >= hi:
            raise ValueError(f"holds indices {mn}..{mx} outside [{lo}, {hi})")


def merge_into(dst: Path, src: Path, ident: dict, lo: int, hi: int) -> tuple[int, IndexSet]:
    """Merge `src` into `dst` (one transaction, known identities skipped); returns (games
    added, indices of [lo, hi) that `dst` now holds)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with GameDB(dst) as db:
        added = db.merge_from(src)
        have = present(db, ident, lo, hi)
    return added, have


def present(db, ident: dict, lo: int, hi: int) -> IndexSet:
    """The indices of [lo, hi) of the run `ident` that `db` holds, as index runs (built here,
    in the worker thread, so the loop only ever handles runs)."""
    return index_runs(db.conn.execute(
        "SELECT game_index FROM games WHERE board = ? AND num_players = ? AND policy = ? AND seed = ? "
        "AND game_index >= ? AND game_index < ? ORDER BY game_index",
        (ident["board"], ident["num_players"], ident["policy"], ident["seed"], lo, hi)))


def present_in_file(path: Path, ident: dict, lo: int, hi: int) -> IndexSet:
    if not path.exists():
        return IndexSet()
    with GameDB(path, create=False) as db:
        return present(db, ident, lo, hi)


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
