"""Game DB -> training ``.npz``: the export phase of the pipeline (``docs/npz_format.md``).

Validated games (``parity_status = 'ok'``) are replayed in C++ from their move records; every
pre-move state becomes one sample (planes, globals, the played move's action index, the final
outcome). Games are processed in chunks and streamed into archives, so memory stays bounded
whatever the size of the database. The train / validation split is by game and depends only
on ``seed`` and each game's identity.
"""

from __future__ import annotations

import hashlib
from array import array
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import BOARDS, _core
from ..db.schema import PARITY_INDEXED, parity_index_serves
from ..engine.errors import RingRiftError
from .actions import action_space_size
from .features import GLOBAL_NAMES, NUM_GLOBALS, NUM_PLANES, PLANE_NAMES, spatial_size
from .symmetry import symmetries
from .tmpdirs import ExportTmpDir
from .writer import ShardedNpzWriter, TurnBuffers, final_names, publish, stale_files

FORMAT_NAME = "ringrift-npz"
#: 2: values_mp by absolute seat (was: by mover-relative slot); the arrays that are not
#: per-sample are named meta_* (players, plane_names, global_names before); split_ratio 1.
FORMAT_VERSION = 2
DEFAULT_CHUNK_MB = 64
#: Where the files go without --output or --output-dir (the pipeline's DEFAULT_NPZ_DIR too).
DEFAULT_OUTPUT_DIR = "data/training"
_MOVE_TYPES = tuple(_core.MOVE_TYPES)
_STATUS_TEXT = {1: "malformed move record", 2: "illegal move", 3: "state hash differs from the record",
                4: "replay does not end as stored"}


class ExportError(RingRiftError):
    """The export cannot run (bad arguments, nothing to export, unreadable input)."""


@dataclass
class ExportResult:
    board: str
    db: str
    files: dict = field(default_factory=dict)     # split -> [Path]
    games: dict = field(default_factory=dict)     # split -> games exported
    samples: dict = field(default_factory=dict)   # split -> samples exported
    skipped: list = field(default_factory=list)   # (game id, reason) of games that did not replay
    left_out: dict = field(default_factory=dict)  # why -> games of the board (and players) not taken
    candidates: int = 0
    seconds: float = 0.0
    search_samples: int | None = None  # samples given the search's targets (None: not asked / none in the DB)

    def summary_lines(self) -> list[str]:
        total = sum(self.samples.values())
        rate = total / self.seconds if self.seconds > 0 else 0.0
        in_db = self.candidates + sum(self.left_out.values())  # the board's (and players') games in the DB
        lines = [f"exported {sum(self.games.values())} of {in_db} games ({total} samples) from "
                 f"{self.db} [{self.board}] in {self.seconds:.1f} s ({rate:,.0f} samples/s)"]
        for split in ("train", "val"):
            if split not in self.files:
                if split == "val" and "train" in self.files:
                    lines.append("  val: none (split ratio 1: every game in one file)")
                continue
            files = self.files.get(split, [])
            names = ", ".join(str(p) for p in files[:3]) + (f", ... ({len(files)} files)" if len(files) > 3 else "")
            lines.append(f"  {split}: {self.games.get(split, 0)} games, {self.samples.get(split, 0)} samples -> {names}")
        if self.search_samples is not None:
            lines.append(f"  search targets: {self.search_samples} of {total} samples (the search's improved policy"
                         f"{'' if self.search_samples == total else '; the others: the played move'})")
        if self.skipped:
            shown = "; ".join(f"game {gid}: {why}" for gid, why in self.skipped[:5])
            lines.append(f"  skipped {len(self.skipped)} games that do not replay ({shown}"
                         f"{'; ...' if len(self.skipped) > 5 else ''})")
        if self.left_out:
            lines.append("  left out: " + ", ".join(f"{n} {_LEFT_OUT.get(why, why)}"
                                                    for why, n in sorted(self.left_out.items())))
        return lines


_LEFT_OUT = {
    "unchecked": "never validated (parity_status 'unchecked': run ringrift-parity --db with --sample 0, or pass "
                 "--include-unchecked)",
    "failed": "failed parity",
    "capped": "stopped at the move cap (--include-capped exports them as draws)",
    "no winner": "without a winner (capped; upstream's encoding drops them, as upstream's exporter does)",
}


def _left_out(db, board, players, statuses, include_capped) -> dict:
    """Games of the export's board (and players) that it does not take, by reason: a parity
    status it does not accept, or the move cap."""
    scope, params = _scope(board, players)
    where = (" WHERE " + " AND ".join(scope)) if scope else ""
    out: dict = {}
    for status, capped, n in db.conn.execute(f"SELECT parity_status, capped, COUNT(*) FROM games{where} "
                                             f"GROUP BY parity_status, capped", params):
        why = status if status not in statuses else ("capped" if capped and not include_capped else None)
        if why is not None:
            out[why] = out.get(why, 0) + n
    return out


def _split_key(seed: int, identity: tuple) -> int:
    text = f"{seed}|" + "|".join(str(x) for x in identity)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def split_games(ids: np.ndarray, identities: list[tuple], ratio: float, seed: int) -> np.ndarray:
    """Boolean ``is_train`` per game (``ids`` ascending; ``identities`` are
    ``(board, num_players, policy, seed, game_index)``). Games are ordered by a hash of
    ``(seed, identity)`` (ties: id) and the first ``round(ratio * G)`` go to train, clamped so
    that both sides get a game when there are two or more; ``ratio`` 1 puts every game in
    train. A game's side depends only on the seed, its identity and G."""
    keys = np.fromiter((_split_key(seed, ident) for ident in identities), dtype=np.uint64, count=len(ids))
    return split_by_keys(np.asarray(ids, dtype=np.int64), keys, ratio)


def split_by_keys(ids: np.ndarray, keys: np.ndarray, ratio: float) -> np.ndarray:
    G = len(ids)
    if ratio >= 1:
        return np.ones(G, dtype=bool)
    order = np.lexsort((ids, keys))
    n_train = int(round(ratio * G))
    if G >= 2:
        n_train = min(max(n_train, 1), G - 1)
    else:
        n_train = G
    is_train = np.zeros(G, dtype=bool)
    is_train[order[:n_train]] = True
    return is_train


_POLICY_KEYS = ("policy_indices", "policy_values", "policy_indices_sym")


def _schema(board: str, with_symmetries: bool = False, search: bool = False) -> dict:
    """Every column's dtype and trailing shape. With ``search`` the policy columns are per entry
    (``_POLICY_KEYS``, split off by the caller) and two per-sample search columns are added."""
    H, W = spatial_size(board)
    sym = {"policy_indices_sym": (np.int32, (symmetries(board).n,))} if with_symmetries else {}
    return {
        "features": (np.float32, (NUM_PLANES, H, W)),
        "globals": (np.float32, (NUM_GLOBALS,)),
        "values": (np.float32, ()),
        "values_mp": (np.float32, (4,)),
        "policy_indices": (np.int32, ()),
        "policy_values": (np.float32, ()),
        "movers": (np.uint8, ()),
        "phases": (np.uint8, ()),
        "ply": (np.int32, ()),
        "num_players": (np.uint8, ()),
        "game_ids": (np.int64, ()),
        "moves": (np.uint8, (16,)),
        **sym,
        **({"search_values": (np.float32, ()), "has_search_target": (np.uint8, ())} if search else {}),
    }


def _output_base(output) -> Path:
    out = Path(output)
    name = out.name[:-4] if out.name.endswith(".npz") else out.name
    if not name:
        raise ExportError(f"{output}: output needs a file name")
    return out.with_name(name)


def _scope(board, players) -> tuple[list[str], list]:
    """SQL clauses and parameters selecting one board and/or player count (None = any)."""
    clauses: list[str] = []
    params: list = []
    if board is not None:
        clauses.append("board = ?")
        params.append(board)
    if players is not None:
        clauses.append("num_players = ?")
        params.append(int(players))
    return clauses, params


def _status_sql(statuses) -> str:
    """`parity_status IN (?, ...)` for `statuses`; without 'unchecked' also PARITY_INDEXED (the
    same rows), so that the partial parity index of newer files can serve it."""
    clause = f"parity_status IN ({', '.join('?' * len(statuses))})"
    return f"{clause} AND {PARITY_INDEXED}" if parity_index_serves(statuses) else clause


def _where(board, players, statuses, include_capped) -> tuple[str, list]:
    scope, scope_params = _scope(board, players)
    clauses = [_status_sql(statuses), *scope]
    params: list = [*statuses, *scope_params]
    if not include_capped:
        clauses.append("capped = 0")
    return " WHERE " + " AND ".join(clauses), params


def _nothing_to_export(db, path, board, players, include_unchecked, include_capped) -> ExportError:
    scope, params = _scope(board, players)
    where = (" WHERE " + " AND ".join(scope)) if scope else ""
    rows = db.conn.execute(f"SELECT parity_status, capped, COUNT(*) FROM games{where} "
                           f"GROUP BY parity_status, capped", params).fetchall()
    total = sum(n for _, _, n in rows)
    what = " ".join(x for x in (board, f"{players}p" if players else None) if x) or "any board"
    if total == 0:
        return ExportError(f"{path}: no games to export ({what}): the database holds no such games")
    by_status: dict = {}
    capped = 0
    for status, cap, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        if cap and status in (("ok", "unchecked") if include_unchecked else ("ok",)):
            capped += n
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    hint = f"validate them with: ringrift-parity --db {path}"
    if capped and not include_capped and by_status.get("ok", 0) == capped:
        hint = "the validated games are all capped (no winner); pass --include-capped to export them as draws"
    allowed = "'ok' or 'unchecked'" if include_unchecked else "'ok'"
    return ExportError(f"{path}: 0 of {total} games ({what}) qualify for export (parity_status must be {allowed}; "
                       f"found {counts}); {hint}")


def check_export_args(db_path, board, players, split_ratio, chunk_games, chunk_mb,
                      max_samples_per_file=None) -> Path:
    """The arguments both encodings' exports share, checked before anything is read: the DB's path."""
    if board is not None and board not in BOARDS:
        raise ExportError(f"unknown board {board!r} (expected one of {', '.join(BOARDS)})")
    if players is not None and players not in (2, 3, 4):
        raise ExportError(f"players must be 2, 3 or 4, got {players!r}")
    if not 0 < float(split_ratio) <= 1:
        raise ExportError(f"split ratio must be in (0, 1] (1 = one file, no validation split), got {split_ratio!r}")
    if max_samples_per_file is not None and int(max_samples_per_file) < 1:
        raise ExportError(f"max samples per file must be >= 1, got {max_samples_per_file!r}")
    if chunk_games is not None and int(chunk_games) < 1:
        raise ExportError(f"chunk games must be >= 1, got {chunk_games!r}")
    if not chunk_mb or chunk_mb <= 0:
        raise ExportError(f"chunk size must be positive, got {chunk_mb!r} MB")
    path = Path(db_path)
    if not path.exists():
        raise ExportError(f"{path}: no such game database")
    return path


def deflate_library(compression: bool):
    """The deflate library of an export (``ringrift.export.deflate.choose``; None when stored),
    checked before anything is read: a bad ``RINGRIFT_DEFLATE`` is a one-line ExportError."""
    if not compression:
        return None
    from . import deflate
    try:
        return deflate.choose()
    except (ImportError, ValueError) as exc:
        raise ExportError(str(exc)) from None


def export_db(db_path, output=None, *, output_dir=None, board: str | None = None, players: int | None = None,
              include_unchecked: bool = False, include_capped: bool = False, drop_forced: bool = False,
              split_ratio: float = 0.9, seed: int = 0, compression: bool = True,
              max_samples_per_file: int | None = None, chunk_games: int | None = None,
              chunk_mb: float = DEFAULT_CHUNK_MB, threads: int = 0, verify: bool = False,
              with_symmetries: bool = False, search_targets: bool | None = None, progress=None) -> ExportResult:
    """Export the validated games of the game DB at ``db_path`` to ``<output>.npz`` (train)
    and ``<output>_val.npz`` (validation); see ``docs/npz_format.md``. Without ``output`` the
    files are ``canonical_<board>.npz`` in ``output_dir`` (default ``data/training``).

    ``include_unchecked`` also takes games never validated (each is verified move by move and
    hash by hash while it is replayed; games that fail are skipped). ``include_capped`` takes
    games that hit the move cap, as draws (all values 0). ``drop_forced`` leaves out the states
    whose only legal move is a ``no_*_action``. ``verify`` verifies every game like an unchecked
    one. ``with_symmetries`` adds ``policy_indices_sym``: each sample's policy index under every
    board symmetry (``ringrift.export.symmetry``). ``search_targets``: write the search's
    improved policy and root value for the samples of search self-play games
    (``ringrift.export.search_targets``); None (default) = when the DB holds any for the board,
    True = required (ExportError when there are none), False = the played move only. ``max_samples_per_file`` shards each split into ``_partNNN`` files. ``chunk_games`` /
    ``chunk_mb`` bound the games and the feature memory of one encoding chunk. ``progress`` is
    called as ``progress(games_done, games_total, samples_done)``.
    """
    from ..db import GameDB
    from ..db.errors import DBError

    t0 = time.perf_counter()
    path = check_export_args(db_path, board, players, split_ratio, chunk_games, chunk_mb, max_samples_per_file)
    lib = deflate_library(compression)
    if output is not None:
        base = _output_base(output)
    statuses = ("ok", "unchecked") if include_unchecked else ("ok",)

    with GameDB(path, create=False, readonly=True) as db:
        try:
            where, params = _where(board, players, statuses, include_capped)
            cur = db.conn.execute(
                f"SELECT id, board, num_players, policy, seed, game_index FROM games{where} ORDER BY id", params)
            # 16 bytes per game (id, split key): the only per-game state kept for the whole run
            id_arr, key_arr = array("q"), array("Q")
            boards, player_set = set(), set()
            for gid, gboard, gplayers, gpolicy, gseed, gindex in cur:
                id_arr.append(gid)
                key_arr.append(_split_key(int(seed), (gboard, gplayers, gpolicy, gseed, gindex)))
                boards.add(gboard)
                player_set.add(int(gplayers))
            if not id_arr:
                raise _nothing_to_export(db, path, board, players, include_unchecked, include_capped)
            if len(boards) > 1:
                raise ExportError(f"{path}: the qualifying games are on several boards ({', '.join(sorted(boards))}); "
                                  f"choose one with --board")
        except sqlite3.Error as exc:
            raise DBError(f"{path}: reading the games failed: {exc}", path=str(path)) from None
        board = boards.pop()
        ids = np.frombuffer(id_arr, dtype=np.int64)
        is_train = split_by_keys(ids, np.frombuffer(key_arr, dtype=np.uint64), float(split_ratio))
        del key_arr
        player_counts = sorted(player_set)
        if output is None:
            base = Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR) / f"canonical_{board}"

        try:
            base.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create directory {base.parent}: {exc.strerror}") from None
        if not os.access(base.parent, os.W_OK):
            raise ExportError(f"directory {base.parent} is not writable")
        search = search_wanted(db, path, board, players, search_targets)
        work = ExportTmpDir(base)  # also removes the working folders that killed exports left here
        tmpdir = work.path
        schema = _schema(board, with_symmetries, search)
        ragged = {k: schema.pop(k) for k in _POLICY_KEYS if k in schema} if search else None
        nthreads = int(threads) if threads and int(threads) > 0 else (os.cpu_count() or 1)
        splits = ("train",) if float(split_ratio) >= 1 else ("train", "val")  # 1: one file, no val split
        writers = {s: ShardedNpzWriter(tmpdir, s, schema, max_rows=max_samples_per_file, compress=compression,
                                       threads=nthreads, deflate=lib, ragged=ragged) for s in splits}
        result = ExportResult(board=board, db=str(path), candidates=len(ids),
                              left_out=_left_out(db, board, players, statuses, include_capped),
                              search_samples=0 if search else None)
        games_out = {"train": 0, "val": 0}
        search_out = {"train": 0, "val": 0}
        try:
            H, W = spatial_size(board)
            bytes_per_sample = 4 * (NUM_PLANES * H * W + NUM_GLOBALS + 8) + 32
            max_chunk_samples = max(1, int(chunk_mb * (1 << 20) / bytes_per_sample))
            max_chunk_games = int(chunk_games) if chunk_games else 1 << 30
            done = samples_done = 0
            chunk: list = []
            chunk_samples = 0
            buffers = TurnBuffers()

            def flush():
                nonlocal chunk, chunk_samples, samples_done
                if chunk:
                    n = _encode_chunk(board, chunk, ids, is_train, writers, games_out, result, drop_forced,
                                      verify, threads, with_symmetries, buffers,
                                      (db.conn, path, search_out) if search else None)
                    samples_done += n
                chunk, chunk_samples = [], 0

            for row in db.iter_games(board=board, num_players=players, parity_status=list(statuses),
                                     **({} if include_capped else {"capped": 0})):
                pos = int(np.searchsorted(ids, row.id))
                if pos >= len(ids) or ids[pos] != row.id:
                    continue  # added after the split was drawn
                chunk.append((pos, row))
                chunk_samples += row.move_count
                done += 1
                if len(chunk) >= max_chunk_games or chunk_samples >= max_chunk_samples:
                    flush()
                    if progress:
                        progress(done, len(ids), samples_done)
            flush()
            if progress:
                progress(done, len(ids), samples_done)

            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            moves = []
            for split, w in writers.items():
                def extras(part, num, rows, split=split):
                    meta = {
                        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "board": board,
                        "split": split, "part": part, "num_parts": num, "samples": rows,
                        "split_samples": w.total_rows, "split_games": games_out[split],
                        "source_db": str(path.resolve()), "created_at": created,
                        "ringrift_version": _version(), "seed": int(seed), "split_ratio": float(split_ratio),
                        "include_unchecked": bool(include_unchecked), "include_capped": bool(include_capped),
                        "drop_forced": bool(drop_forced), "compression": bool(compression),
                        "deflate": lib.describe() if lib is not None else None,
                        "action_space_size": action_space_size(board), "num_planes": NUM_PLANES,
                        "num_globals": NUM_GLOBALS, "spatial_size": [H, W], "players": player_counts,
                        "values": "rank-aware: 1 - 2 * rank / (n - 1); winner first, then eliminated rings, "
                                  "territory, seat; capped games 0; values_mp by absolute seat",
                        "move_types": list(_MOVE_TYPES), "phases": list(_core.PHASES),
                        "symmetries": symmetries(board).n if with_symmetries else 0,
                        "exact_symmetries": list(symmetries(board).exact) if with_symmetries else [],
                    }
                    if search:  # the split's count (like split_samples); the offsets are a column
                        meta["search_targets"] = {"samples_with_targets": search_out[split]}
                    return {
                        **({} if search else {"policy_offsets": np.arange(rows + 1, dtype=np.int64)}),
                        "board": np.array(board),
                        "split": np.array(split),
                        "spatial_size": np.int32(H),
                        "meta_players": np.array(player_counts, dtype=np.int32),
                        "action_space_size": np.int64(action_space_size(board)),
                        "format_version": np.int32(FORMAT_VERSION),
                        "meta_plane_names": np.array(PLANE_NAMES),
                        "meta_global_names": np.array(GLOBAL_NAMES),
                        "metadata": np.array(json.dumps(meta, sort_keys=True)),
                    }
                shards = w.finish(extras)
                split_base = base if split == "train" else base.with_name(base.name + "_val")
                names = final_names(split_base, len(shards))
                moves += [(tmp, final) for (tmp, _), final in zip(shards, names)]
                result.files[split] = names
                result.samples[split] = w.total_rows
                result.games[split] = games_out[split]
            # with split ratio 1 there is no val file: an earlier one is stale too
            stale = stale_files(base, result.files["train"]) + stale_files(base.with_name(base.name + "_val"),
                                                                          result.files.get("val", []))
            publish(moves, stale)
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        finally:
            work.cleanup()
    if search:
        result.search_samples = sum(search_out.values())
    result.seconds = time.perf_counter() - t0
    return result


def search_wanted(db, path, board, players, search_targets) -> bool:
    """Whether the export writes search targets: ``search_targets`` True / False as asked, None
    when the DB holds some for the board (and players). True without any is an ExportError."""
    from .search_targets import targets_present

    if search_targets is False:
        return False
    try:
        present = targets_present(db.conn, board, players)
    except sqlite3.Error as exc:
        raise ExportError(f"{path}: reading the search targets failed: {exc}") from None
    if search_targets and not present:
        what = " ".join(x for x in (board, f"{players}p" if players else None) if x)
        raise ExportError(f"{path}: no search targets for {what} games (they come from --policy gumbel:... self-play)")
    return present


def _samples_of(gsel: np.ndarray, sample_offsets: np.ndarray, per_game: np.ndarray):
    """The samples of the selected games: a slice when they are one run of games (no copy), else a mask."""
    picked = np.flatnonzero(gsel)
    first, last = int(picked[0]), int(picked[-1])
    if last - first + 1 == len(picked):
        return slice(int(sample_offsets[first]), int(sample_offsets[last + 1]))
    return np.repeat(gsel, per_game)


def _encode_chunk(board, chunk, ids, is_train, writers, games_out, result, drop_forced, verify, threads,
                  with_symmetries, buffers: TurnBuffers, search=None) -> int:
    # train games first, then validation games (each in id order, as they came): each split's
    # samples are then one slice of the encoder's arrays, written without a copy
    chunk = sorted(chunk, key=lambda item: not is_train[item[0]])
    rows = [r for _, r in chunk]
    pos = np.array([p for p, _ in chunk], dtype=np.int64)
    counts = np.array([r.move_count for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    moves = np.concatenate([r.moves for r in rows]) if offsets[-1] else np.zeros((0, 16), np.uint8)
    hashes = np.concatenate([r.hashes for r in rows]) if offsets[-1] else np.zeros(0, np.uint64)
    nplayers = np.array([r.num_players for r in rows], dtype=np.uint8)
    winners = np.array([r.winner for r in rows], dtype=np.int64)
    check = np.array([verify or r.parity_status != "ok" for r in rows], dtype=np.uint8)
    H, W = spatial_size(board)
    out = _core.export.encode_games(board, moves, offsets, nplayers, hashes=hashes.astype(np.uint64, copy=False),
                                    verify=check, expect_over=(winners > 0).astype(np.uint8),
                                    drop_forced=drop_forced, threads=threads, symmetries=with_symmetries,
                                    features_buffer=buffers.next(int(offsets[-1]) * NUM_PLANES * H * W))
    status = out["status"]
    good = (status == 0) & (out["final_winner"].astype(np.int64) == winners)
    for i in sorted(np.flatnonzero(~good), key=lambda i: rows[i].id):  # in id order, as the games came
        why = _STATUS_TEXT.get(int(status[i]), "") if status[i] else \
            f"stored winner {winners[i]}, replay {int(out['final_winner'][i])}"
        if status[i]:
            why += f" at step {int(out['fail_step'][i])}"
        result.skipped.append((int(rows[i].id), why))
    per_game = np.diff(out["sample_offsets"])
    train_game = is_train[pos]
    segments = _search_segments(rows, good, out, search, with_symmetries) if search else None
    n = 0
    for split, want in (("train", True), ("val", False)):
        gsel = good & (train_game == want)
        if split not in writers:
            continue
        if not gsel.any():
            writers[split].drain()  # its pending pieces may be in the buffer the next chunk reuses
            continue
        games_out[split] += int(gsel.sum())
        ssel = _samples_of(gsel, out["sample_offsets"], per_game)
        N = int(per_game[gsel].sum())
        take = lambda a: a[ssel]  # noqa: E731
        cols = {
            "features": take(out["features"]),
            "globals": take(out["globals"]),
            "values": take(out["values"]),
            "values_mp": take(out["values_mp"]),
            "policy_indices": take(out["policy"]),
            "policy_values": np.ones(N, dtype=np.float32),
            "movers": take(out["movers"]),
            "phases": take(out["phases"]),
            "ply": take(out["ply"]),
            "num_players": np.repeat(nplayers[gsel], per_game[gsel]),
            "game_ids": np.repeat(np.array([r.id for r in rows], dtype=np.int64)[gsel], per_game[gsel]),
            "moves": take(out["records"]),
            **({"policy_indices_sym": take(out["policy_sym"])} if with_symmetries else {}),
        }
        if segments is None:
            writers[split].append(cols)
        else:
            from .search_targets import join

            seg = join([segments[i] for i in np.flatnonzero(gsel)],
                       ("counts", "indices", "values", "search_values", "has") + (("sym",) if with_symmetries else ()))
            for k in _POLICY_KEYS:
                cols.pop(k, None)
            cols["search_values"], cols["has_search_target"] = seg["search_values"], seg["has"]
            flat = {"policy_indices": seg["indices"], "policy_values": seg["values"]}
            if with_symmetries:
                flat["policy_indices_sym"] = seg["sym"]
            writers[split].append(cols, counts=seg["counts"], flat=flat)
            search[2][split] += int(seg["has"].sum())
        n += N
    return n


def _search_segments(rows, good, out, search, with_symmetries) -> dict:
    """Per good game of the chunk (by position): its samples' policy entries and search columns
    (``ringrift.export.search_targets.native_segment``)."""
    from .search_targets import game_targets, native_segment

    conn, path, _ = search
    soff = out["sample_offsets"]
    segments = {}
    for i in np.flatnonzero(good):
        a, b = int(soff[i]), int(soff[i + 1])
        t = game_targets(conn, rows[i], path)
        segments[i] = native_segment(rows[i], t, out["ply"][a:b], out["policy"][a:b],
                                     out["policy_sym"][a:b] if with_symmetries else None, path)
    return segments


def _version() -> str:
    try:
        from .. import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


__all__ = ["ExportError", "ExportResult", "FORMAT_NAME", "FORMAT_VERSION", "deflate_library", "export_db", "split_games"]
