"""Game DB -> ``.npz`` in upstream's default training encoding (``docs/upstream_npz.md``).

Upstream (synaptent/RingRift, ``ai-service``) trains from files written by its
``scripts/export_replay_dataset.py``. This module writes the same arrays from our own game DB:
the planes, globals, policy index and values come from the C++ encoder
(``csrc/export/upstream.h``) replaying our move records through our engine; the per-game
columns (victory type, quality score, ...) are what upstream's exporter derives from the
replay DB that ``ringrift-db convert --to-replaydb`` writes for the same games.

Games are taken in upstream's order (``games.created_at`` descending, ties by our row id
descending, i.e. the reverse of the order the converter inserts them) and streamed in chunks,
so memory stays bounded (``--object-arrays`` excepted: object arrays are built whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import _core
from ..db.replaydb import completed_at  # the converter's completed_at: what upstream's exporter reads
from .exporter import (DEFAULT_CHUNK_MB, DEFAULT_OUTPUT_DIR, ExportError, ExportResult, _STATUS_TEXT, _left_out,
                       _nothing_to_export, _output_base, _split_key, _where, check_export_args, deflate_library,
                       search_wanted, split_by_keys)
from .writer import ShardedNpzWriter, TurnBuffers, final_names, publish, stale_files

#: What upstream's exporter writes into these keys with its default options.
HISTORY_LENGTH = 3
FEATURE_VERSION = 2
EXPORT_VERSION = "2.1"
POLICY_ENCODING = "board_aware"
#: ``games.source`` of the games our converter writes (``ringrift.db.replaydb.SOURCE``):
#: upstream derives ``engine_modes`` from it.
CONVERTER_SOURCE = "ringrift-gamedb"

_PHASES = tuple(_core.PHASES)
_MOVE_TYPES = tuple(_core.MOVE_TYPES)
# Fixed widths of the two per-sample string columns: the longest name of each vocabulary.
_PHASE_WIDTH = max(len(p) for p in _PHASES)
_MOVE_TYPE_WIDTH = max(len(t) for t in _MOVE_TYPES)
_UPSTREAM_KEYS = (  # the 32 keys of upstream's file, in its order
    "features", "globals", "values", "policy_indices", "policy_values", "board_type", "board_size",
    "history_length", "feature_version", "policy_encoding", "move_numbers", "total_game_moves", "phases",
    "victory_types", "engine_modes", "move_types", "opponent_elo", "generator_elo", "quality_score",
    "opponent_types", "encoder_type", "encoder_version", "in_channels", "policy_size", "max_policy_index",
    "policies_normalized", "export_version", "values_mp", "num_players", "spatial_size", "metadata",
    "data_checksums")
_STRING_COLUMNS = ("phases", "victory_types", "engine_modes", "move_types", "opponent_types")


# ---- per-game columns, as upstream's exporter derives them ---------------------------------------

def victory_type(reason: str | None) -> str:
    """Upstream's victory category of a termination reason (substring rules, first match)."""
    r = str(reason).lower()
    if "territory" in r:
        return "territory"
    if "elimination" in r or "ring" in r:
        return "elimination"
    if "lps" in r or "last_player" in r:
        return "lps"
    if "stalemate" in r:
        return "stalemate"
    if "timeout" in r:
        return "timeout"
    return "other"


def engine_mode(source: str) -> str:
    """Upstream's engine mode of a ``games.source`` value (substring rules)."""
    s = (source or "").lower()
    for key, mode in (("gumbel", "gumbel_mcts"), ("mcts", "mcts"), ("policy", "policy_only"),
                      ("descent", "descent"), ("heuristic", "heuristic"), ("gpu", "heuristic")):
        if key in s:
            return mode
    return "unknown"


def opponent_type(policy: str | None, source: str) -> str:
    """``games.opponent_type`` (our converter writes the game's policy), else upstream's guess
    from the source."""
    if policy:
        return policy
    s = (source or "").lower()
    for key, kind in (("random", "random"), ("heuristic", "heuristic"), ("mcts", "mcts"), ("gumbel", "gumbel_mcts"),
                      ("neural", "neural"), ("nn", "neural")):
        if key in s:
            return kind
    return "unknown"


def quality_score(winner, total_moves: int, source: str) -> float:
    """Upstream's per-game quality score with its default weights: outcome, length (a bell
    around 80 moves), fixed phase-balance and diversity credits, and source reputation."""
    outcome = 1.0 if (winner is not None and winner != -1) else 0.3
    if total_moves < 10:
        length = 0.0
    elif total_moves > 200:
        length = 0.8
    else:
        length = 1.0 - (abs(total_moves - 80) / max(80 - 10, 200 - 80)) * 0.5
    source_score = 0.8 if source else 0.5
    score = 0.25 * outcome + 0.25 * length + 0.20 * 0.7 + 0.15 * 0.7 + 0.15 * source_score
    return max(0.0, min(1.0, score))


# ---- upstream's checksums ---------------------------------------------------------------------------

def array_checksum(arr: np.ndarray) -> str:
    """Upstream's per-array SHA-256 (``app/training/data_quality.py::compute_array_checksum``):
    the shape text, the dtype text, then the raw bytes, or for object arrays each element's
    bytes (arrays) or ``str()`` (anything else)."""
    h = hashlib.sha256()
    h.update(str(arr.shape).encode())
    h.update(str(arr.dtype).encode())
    if arr.dtype == np.object_:
        for item in arr.flat:
            h.update(item.tobytes() if isinstance(item, np.ndarray) else str(item).encode())
    else:
        h.update(arr.tobytes())
    return h.hexdigest()


class _StreamChecksum:
    """The same checksum fed chunk by chunk; the final shape must be known up front."""

    def __init__(self, shape: tuple, dtype: str):
        self.h = hashlib.sha256()
        self.h.update(str(tuple(shape)).encode())
        self.h.update(dtype.encode())

    def raw(self, arr: np.ndarray) -> None:
        self.h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))

    def texts(self, codes: np.ndarray, vocab: np.ndarray) -> None:
        """Each sample's name (``vocab``: the names as a fixed-width ``S`` array): the NUL
        padding removed, the names follow one another as ``str(item).encode()`` would."""
        self.h.update(vocab[codes].tobytes().replace(b"\0", b""))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


class _PolicyChecksum:
    """Upstream's checksum of ``policy_indices`` or ``policy_values`` fed chunk by chunk, for
    policies of any number of entries. Upstream builds the array as ``np.array(per-sample
    arrays, dtype=object)``: (N, k) of Python numbers (hashed as their ``str()``) when every
    sample has k entries, else (N,) of arrays (hashed as their bytes). Both are fed until the
    counts tell which it is. One entry per sample gives the one-hot export's checksum."""

    def __init__(self, n: int, text):
        self.n, self.text = n, text  # text: flat entries -> their str() joined, as bytes
        self.k = None               # the entry count of every sample so far, or -1 once they differ
        self.uniform = self.ragged = None

    def feed(self, counts: np.ndarray, flat: np.ndarray) -> None:
        if not len(counts):
            return
        if self.k is None:
            self.k = int(counts[0])
            self.uniform = _StreamChecksum((self.n, self.k), "object")
            self.ragged = _StreamChecksum((self.n,), "object")
        if self.k >= 0 and np.any(counts != self.k):
            self.k, self.uniform = -1, None
        if self.uniform is not None:
            self.uniform.h.update(self.text(flat))
        self.ragged.raw(flat)

    def hexdigest(self) -> str:
        if self.k is None:  # no samples: as the one-hot export
            return _StreamChecksum((self.n, 1), "object").hexdigest()
        return (self.uniform if self.k >= 0 else self.ragged).hexdigest()


def _int_texts(flat: np.ndarray) -> bytes:
    return "".join(map(str, flat.tolist())).encode()


def _float_texts(flat: np.ndarray) -> bytes:
    return "".join(map(str, flat.astype(np.float32).tolist())).encode()


def _object_policy(counts: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """The per-sample object array upstream's exporter writes for these entries."""
    if not len(counts):
        return np.empty((0, 1), dtype=object)
    return np.array(np.split(flat, np.cumsum(counts)[:-1]), dtype=object)


# ---- the export -----------------------------------------------------------------------------------------

def export_upstream(db_path, output=None, *, output_dir=None, board: str | None = None, players: int | None = None,
                    include_unchecked: bool = False, split_ratio: float = 1.0, seed: int = 0,
                    compression: bool = True, chunk_games: int | None = None, chunk_mb: float = DEFAULT_CHUNK_MB,
                    threads: int = 0, verify: bool = False, object_arrays: bool = False,
                    search_targets: bool | None = None, progress=None) -> ExportResult:
    """Export the validated games of ``db_path`` in upstream's default training encoding.

    One board and one player count per file (upstream's exporter takes both as arguments).
    ``split_ratio`` 1 writes one file with every sample; below 1 the games are split as in
    :func:`ringrift.export.export_db` and ``<output>_val.npz`` holds the rest. Games without
    a winner (stopped at the move cap) are left out, as upstream drops them. By default the
    file is pickle-free (``docs/upstream_npz.md``); ``object_arrays`` writes the object arrays
    upstream's own exporter writes (loading them needs ``allow_pickle=True``). ``search_targets``
    as in :func:`ringrift.export.export_db`: a searched game's samples get the search's improved
    policy in upstream's policy indices (``ringrift.export.search_targets``); upstream's format
    has no key for the search's value, so ``values`` stay the outcomes.
    """
    from ..db import GameDB
    from ..db.errors import DBError

    t0 = time.perf_counter()
    path = check_export_args(db_path, board, players, split_ratio, chunk_games, chunk_mb)
    deflate_library(compression)  # a bad RINGRIFT_DEFLATE fails here, before anything is read
    statuses = ("ok", "unchecked") if include_unchecked else ("ok",)

    with GameDB(path, create=False, readonly=True) as db:
        where, params = _where(board, players, statuses, include_capped=False)
        where += " AND winner > 0"
        try:
            rows = db.conn.execute(
                f"SELECT id, board, num_players, policy, seed, game_index, move_count, reason FROM games{where} "
                f"ORDER BY COALESCE(started_at, created_at) DESC, id DESC", params)
            order, keys, counts = array("q"), array("Q"), array("q")
            boards, player_set, vtypes, otypes = set(), set(), set(), set()
            for gid, gboard, gplayers, gpolicy, gseed, gindex, nmoves, reason in rows:
                order.append(gid)
                keys.append(_split_key(int(seed), (gboard, gplayers, gpolicy, gseed, gindex)))
                counts.append(nmoves)
                boards.add(gboard)
                player_set.add(int(gplayers))
                vtypes.add(victory_type(reason))
                otypes.add(opponent_type(gpolicy, CONVERTER_SOURCE))
        except sqlite3.Error as exc:
            raise DBError(f"{path}: reading the games failed: {exc}", path=str(path)) from None
        if not order:
            any_capped, any_params = _where(board, players, statuses, include_capped=True)
            no_winner = db.conn.execute(f"SELECT COUNT(*) FROM games{any_capped} AND winner = 0",
                                        any_params).fetchone()[0]
            if no_winner:
                raise ExportError(f"{path}: the {no_winner} qualifying games have no winner (stopped at the move cap); "
                                  f"upstream's encoding drops such games, as upstream's exporter does")
            raise _nothing_to_export(db, path, board, players, include_unchecked, False)
        if len(boards) > 1:
            raise ExportError(f"{path}: the qualifying games are on several boards ({', '.join(sorted(boards))}); "
                              f"choose one with --board")
        if len(player_set) > 1:
            raise ExportError(f"{path}: the qualifying games have {', '.join(map(str, sorted(player_set)))} players; "
                              f"upstream's encoding takes one player count per file: choose one with --players")
        board = boards.pop()
        num_players = player_set.pop()
        search = search_wanted(db, path, board, num_players, search_targets)
        order_ids = np.frombuffer(order, dtype=np.int64)
        keys_arr = np.frombuffer(keys, dtype=np.uint64)
        asc = np.argsort(order_ids, kind="stable")
        if float(split_ratio) >= 1:
            is_train = np.ones(len(order_ids), dtype=bool)
        else:
            is_train = np.empty(len(order_ids), dtype=bool)
            is_train[asc] = split_by_keys(order_ids[asc], keys_arr[asc], float(split_ratio))
        base = _output_base(output) if output is not None else \
            Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR) / f"canonical_{board}"
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create directory {base.parent}: {exc.strerror}") from None
        if not os.access(base.parent, os.W_OK):
            raise ExportError(f"directory {base.parent} is not writable")
        left = _left_out(db, board, players, statuses, False)
        uncapped, uncapped_params = _where(board, num_players, statuses, include_capped=False)
        nowinner = db.conn.execute(f"SELECT COUNT(*) FROM games{uncapped} AND winner = 0",
                                   uncapped_params).fetchone()[0]
        nowinner += left.pop("capped", 0)  # capped games have no winner either
        if nowinner:
            left["no winner"] = left.get("no winner", 0) + nowinner
        splits = ("train",) if float(split_ratio) >= 1 else ("train", "val")
        planned = np.frombuffer(counts, dtype=np.int64)
        expected = {"train": int(planned[is_train].sum()), "val": int(planned[~is_train].sum())}
        exclude: set = set()
        skipped: list = []
        for attempt in range(3):
            res = _Pass(db, path, board, num_players, order_ids, planned, vtypes, otypes, is_train, exclude, expected,
                        splits, base, compression, object_arrays, chunk_games, chunk_mb, threads, verify, progress,
                        search)
            result = res.run()
            skipped += res.skipped
            if result is not None:
                break
            # A game did not replay (or held moves upstream cannot encode): the sample counts
            # that the checksums' shapes need are known now; run again without those games.
            exclude |= res.failed_ids
            expected = res.actual
        else:  # pragma: no cover - the second pass knows every count
            raise ExportError(f"{path}: the sample counts changed between two passes over the same games")
        result.left_out = left
        result.skipped = skipped
    result.seconds = time.perf_counter() - t0
    return result


class _Pass:
    """One pass over the games: encode, stream, checksum. ``run`` returns None when a
    split's sample count differs from ``expected`` (the checksums start with the shape)."""

    def __init__(self, db, path, board, num_players, order_ids, counts, vtypes, otypes, is_train, exclude, expected,
                 splits, base, compression, object_arrays, chunk_games, chunk_mb, threads, verify, progress,
                 search=False):
        self.db, self.path, self.board, self.num_players = db, path, board, num_players
        self.order_ids, self.is_train, self.exclude, self.expected = order_ids, is_train, exclude, expected
        self.splits, self.base, self.compression, self.object_arrays = splits, base, compression, object_arrays
        self.chunk_games, self.chunk_mb, self.threads, self.verify = chunk_games, chunk_mb, threads, verify
        self.counts, self.vtypes, self.otypes, self.progress = counts, vtypes, otypes, progress
        self.layout = _core.upstream.layout(board)
        self.failed_ids: set = set()
        self.skipped: list = []  # (game id, why) of games that did not replay
        self.features_buffers = TurnBuffers()  # reused by the chunks, two by turns
        self.hash_pool = None
        self.actual = {s: 0 for s in ("train", "val")}
        self.search = search  # soft policies from the search's targets (ragged policy columns)

    def _schema(self, widths) -> dict:
        S, C = self.layout["spatial_size"], self.layout["in_channels"]
        schema = {
            "features": (np.float32, (C, S, S)),
            "globals": (np.float32, (_core.upstream.NUM_GLOBALS,)),
            "values": (np.float32, ()),
            "values_mp": (np.float32, (4,)),
            "num_players": (np.int32, ()),
            "move_numbers": (np.int32, ()),
            "total_game_moves": (np.int32, ()),
            "opponent_elo": (np.float32, ()),
            "generator_elo": (np.float32, ()),
            "quality_score": (np.float32, ()),
        }
        if not self.object_arrays:
            if not self.search:
                schema["policy_indices"] = (np.int32, ())
                schema["policy_values"] = (np.float32, ())
            for k in _STRING_COLUMNS:
                schema[k] = (f"<U{widths[k]}", ())
        return schema

    def run(self) -> ExportResult | None:
        from ..db.errors import DBError

        board, L = self.board, self.layout
        S, C = L["spatial_size"], L["in_channels"]
        emode = engine_mode(CONVERTER_SOURCE)
        # string columns: vocabularies and widths known before encoding
        vt_vocab, ot_vocab = sorted(self.vtypes) or ["other"], sorted(self.otypes) or ["unknown"]
        vocab = {"phases": list(_PHASES), "move_types": list(_MOVE_TYPES), "victory_types": vt_vocab,
                 "engine_modes": [emode], "opponent_types": ot_vocab}
        widths = {"phases": _PHASE_WIDTH, "move_types": _MOVE_TYPE_WIDTH,
                  "victory_types": max(map(len, vt_vocab)), "engine_modes": len(emode),
                  "opponent_types": max(map(len, ot_vocab))}
        vocab_np = {k: np.array(v, dtype=f"<U{widths[k]}") for k, v in vocab.items()}
        vocab_bytes = {k: np.array([s.encode() for s in v]) for k, v in vocab.items()}  # fixed-width S
        code_of = {k: {s: i for i, s in enumerate(v)} for k, v in vocab.items()}

        tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.base.name}.export-", dir=self.base.parent))
        nthreads = int(self.threads) if self.threads and int(self.threads) > 0 else (os.cpu_count() or 1)
        self.hash_pool = ThreadPoolExecutor(max_workers=1) if nthreads > 1 else None
        schema = self._schema(widths)
        ragged = {"policy_indices": (np.int32, ()), "policy_values": (np.float32, ())} \
            if self.search and not self.object_arrays else None
        writers = {s: ShardedNpzWriter(tmpdir, s, schema, compress=self.compression, threads=nthreads,
                                       pickle_extras=self.object_arrays, ragged=ragged,
                                       offsets_key=("policy_indices_offsets", "policy_values_offsets"))
                   for s in self.splits}
        # streaming checksums; shapes from the expected sample counts
        sums: dict = {}
        for s in self.splits:
            n = self.expected[s]
            cs = {k: _StreamChecksum((n,) + tuple(t), str(np.dtype(d))) for k, (d, t) in self._schema(widths).items()
                  if k not in ("policy_indices", "policy_values") and k not in _STRING_COLUMNS}
            if self.search:
                cs["policy_indices"] = _PolicyChecksum(n, _int_texts)
                cs["policy_values"] = _PolicyChecksum(n, _float_texts)
            else:
                cs["policy_indices"] = _StreamChecksum((n, 1), "object")
                cs["policy_values"] = _StreamChecksum((n, 1), "object")
            for k in _STRING_COLUMNS:
                cs[k] = _StreamChecksum((n,), "object")
            sums[s] = cs
        kept_codes = {s: {k: array("B") for k in _STRING_COLUMNS} for s in self.splits}
        kept_policy = {s: array("i") for s in self.splits}
        kept_soft = {s: (array("q"), array("i"), array("f")) for s in self.splits}  # counts, indices, values
        stats = {s: {"games": 0, "samples": 0, "max_policy": 0, "newest": None, "search": 0} for s in self.splits}
        result = ExportResult(board=board, db=str(self.path), candidates=len(self.order_ids),
                              search_samples=0 if self.search else None)
        one_str = b"1.0"
        try:
            bytes_per_sample = 4 * (C * S * S + 40) + 64
            max_chunk_samples = max(1, int(self.chunk_mb * (1 << 20) / bytes_per_sample))
            max_chunk_games = int(self.chunk_games) if self.chunk_games else 1 << 30
            keep = np.array([gid not in self.exclude for gid in self.order_ids.tolist()], dtype=bool)
            ids = self.order_ids[keep].tolist()
            nmoves = self.counts[keep].tolist()
            train_of = dict(zip(self.order_ids.tolist(), self.is_train.tolist()))
            done = 0
            start = 0
            while start < len(ids):
                chunk_ids, n_samples = [], 0
                while start < len(ids) and len(chunk_ids) < max_chunk_games and \
                        (not chunk_ids or n_samples + nmoves[start] <= max_chunk_samples):
                    chunk_ids.append(ids[start])
                    n_samples += nmoves[start]
                    start += 1
                pos = {gid: i for i, gid in enumerate(chunk_ids)}
                rows = sorted(self.db.iter_games(ids=chunk_ids), key=lambda r: pos[r.id])
                self._encode_chunk(rows, train_of, writers, sums, kept_codes, kept_policy, stats, result,
                                   vocab_bytes, code_of, vocab_np, one_str, kept_soft)
                done += len(rows)
                if self.progress:
                    self.progress(done, len(ids), sum(st["samples"] for st in stats.values()))
            if self.failed_ids or any(stats[s]["samples"] != self.expected[s] for s in self.splits):
                for s in self.splits:
                    self.actual[s] = stats[s]["samples"]
                for w in writers.values():
                    w.abort()
                return None

            created = datetime.now(tz=timezone.utc).isoformat()
            moves = []
            for split in self.splits:
                st, w = stats[split], writers[split]
                n = st["samples"]
                meta = {"export_time": created, "newest_game_time": st["newest"], "game_count": st["games"],
                        "sample_count": n}
                scalars = {
                    "board_type": np.asarray(board),
                    "board_size": np.asarray(int(S)),
                    "history_length": np.asarray(HISTORY_LENGTH),
                    "feature_version": np.asarray(FEATURE_VERSION),
                    "policy_encoding": np.asarray(POLICY_ENCODING),
                    "encoder_type": np.asarray("hex_v3" if board in ("hex8", "hexagonal") else f"square_v{FEATURE_VERSION}"),
                    "encoder_version": np.asarray("v3"),
                    "in_channels": np.asarray(int(C)),
                    "policy_size": np.asarray(int(L["policy_size"])),
                    "max_policy_index": np.asarray(int(st["max_policy"])),
                    "policies_normalized": np.asarray(True),
                    "export_version": np.asarray(EXPORT_VERSION),
                    "spatial_size": np.asarray(int(S)),
                }
                meta_obj = np.empty((), dtype=object)
                meta_obj[()] = meta
                checks = {k: c.hexdigest() for k, c in sums[split].items()}
                for k, a in scalars.items():
                    checks[k] = array_checksum(a)
                checks["metadata"] = array_checksum(meta_obj)
                checksums = np.asarray(json.dumps(checks, sort_keys=True))

                def extras(part, num, rows, split=split, scalars=scalars, meta=meta, meta_obj=meta_obj,
                           checksums=checksums, n=n):
                    out = dict(scalars)
                    if self.object_arrays:
                        if self.search:
                            counts, idx, val = (np.frombuffer(a, dtype=d) for a, d in
                                                zip(kept_soft[split], (np.int64, np.int32, np.float32)))
                            out["policy_indices"] = _object_policy(counts, idx)
                            out["policy_values"] = _object_policy(counts, val)
                        else:
                            pol = np.frombuffer(kept_policy[split], dtype=np.int32)
                            pi = np.empty((n, 1), dtype=object)
                            pi[:, 0] = pol.tolist()
                            pv = np.empty((n, 1), dtype=object)
                            pv[:, 0] = [1.0] * n
                            out["policy_indices"], out["policy_values"] = pi, pv
                        for k in _STRING_COLUMNS:
                            codes = np.frombuffer(kept_codes[split][k], dtype=np.uint8)
                            out[k] = np.array(vocab[k], dtype=object)[codes] if n else np.empty(0, dtype=object)
                        out["metadata"] = meta_obj
                    else:
                        if not self.search:  # with search targets the offsets are columns
                            out["policy_indices_offsets"] = np.arange(n + 1, dtype=np.int64)
                            out["policy_values_offsets"] = np.arange(n + 1, dtype=np.int64)
                        out["metadata"] = np.asarray(json.dumps(meta))
                    out["data_checksums"] = checksums
                    return out

                shards = w.finish(extras)
                split_base = self.base if split == "train" else self.base.with_name(self.base.name + "_val")
                names = final_names(split_base, len(shards))
                moves += [(tmp, final) for (tmp, _), final in zip(shards, names)]
                result.files[split] = names
                result.samples[split] = n
                result.games[split] = st["games"]
            stale = stale_files(self.base, result.files["train"]) + stale_files(
                self.base.with_name(self.base.name + "_val"), result.files.get("val", []))
            publish(moves, stale)
            if self.search:
                result.search_samples = sum(stats[s]["search"] for s in self.splits)
        except sqlite3.Error as exc:
            for w in writers.values():
                w.abort()
            raise DBError(f"{self.path}: reading the games failed: {exc}", path=str(self.path)) from None
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        finally:
            if self.hash_pool is not None:
                self.hash_pool.shutdown(wait=True)
            shutil.rmtree(tmpdir, ignore_errors=True)
        return result

    def _encode_chunk(self, rows, train_of, writers, sums, kept_codes, kept_policy, stats, result, vocab_bytes,
                      code_of, vocab_np, one_str, kept_soft=None) -> None:
        if not rows:
            return
        counts = np.array([r.move_count for r in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        moves = np.concatenate([r.moves for r in rows]) if offsets[-1] else np.zeros((0, 16), np.uint8)
        hashes = np.concatenate([r.hashes for r in rows]) if offsets[-1] else np.zeros(0, np.uint64)
        nplayers = np.array([r.num_players for r in rows], dtype=np.uint8)
        winners = np.array([r.winner for r in rows], dtype=np.int64)
        check = np.array([self.verify or r.parity_status != "ok" for r in rows], dtype=np.uint8)
        need = int(offsets[-1]) * self.layout["in_channels"] * self.layout["spatial_size"] ** 2
        buf = self.features_buffers.next(need)
        out = _core.upstream.encode_games(self.board, moves, offsets, nplayers,
                                          hashes=hashes.astype(np.uint64, copy=False), verify=check,
                                          expect_over=(winners > 0).astype(np.uint8), threads=self.threads,
                                          features_buffer=buf)
        status = out["status"]
        good = (status == 0) & (out["final_winner"].astype(np.int64) == winners)
        for i in np.flatnonzero(~good):
            why = _STATUS_TEXT.get(int(status[i]), "") if status[i] else \
                f"stored winner {winners[i]}, replay {int(out['final_winner'][i])}"
            if status[i]:
                why += f" at step {int(out['fail_step'][i])}"
            self.skipped.append((int(rows[i].id), why))
            self.failed_ids.add(int(rows[i].id))
        soff = out["sample_offsets"]
        per_game = np.diff(soff)
        segments = self._search_segments(rows, good, out) if self.search else None
        in_train = np.array([train_of[r.id] for r in rows], dtype=bool)
        game_cols = {  # per-game values, repeated over the game's samples below
            "num_players": np.array([r.num_players for r in rows], dtype=np.int32),
            "total_game_moves": np.array([r.move_count for r in rows], dtype=np.int32),
            "quality_score": np.array([quality_score(r.winner, r.move_count, CONVERTER_SOURCE) for r in rows],
                                      dtype=np.float32),
        }
        game_codes = {
            "victory_types": np.array([code_of["victory_types"][victory_type(r.reason)] for r in rows], np.uint8),
            "opponent_types": np.array([code_of["opponent_types"][opponent_type(r.policy, CONVERTER_SOURCE)]
                                        for r in rows], np.uint8),
        }
        for split, want in (("train", True), ("val", False)):
            gsel = good & (in_train == want) & (per_game > 0)
            if split not in writers:
                continue
            if not gsel.any():
                # no append this time: its pending pieces may be in the buffer the next chunk reuses
                writers[split].drain()
                continue
            ssel = np.repeat(gsel, per_game)
            whole = bool(ssel.all())
            take = (lambda a: a) if whole else (lambda a: a[ssel])
            reps = per_game[gsel]
            n = int(reps.sum())
            pol = take(out["policy"])
            cols = {
                "features": take(out["features"]),
                "globals": take(out["globals"]),
                "values": take(out["values"]),
                "values_mp": take(out["values_mp"]),
                "num_players": np.repeat(game_cols["num_players"][gsel], reps),
                "move_numbers": take(out["move_numbers"]),
                "total_game_moves": np.repeat(game_cols["total_game_moves"][gsel], reps),
                "opponent_elo": np.full(n, 1500.0, dtype=np.float32),
                "generator_elo": np.full(n, 1500.0, dtype=np.float32),
                "quality_score": np.repeat(game_cols["quality_score"][gsel], reps),
            }
            codes = {"phases": take(out["phases"]), "move_types": take(out["move_types"]),
                     "victory_types": np.repeat(game_codes["victory_types"][gsel], reps),
                     "engine_modes": np.zeros(n, dtype=np.uint8),
                     "opponent_types": np.repeat(game_codes["opponent_types"][gsel], reps)}
            cs = sums[split]
            soft = None
            if segments is not None:
                from .search_targets import join

                soft = join([segments[i] for i in np.flatnonzero(gsel)], ("counts", "indices", "values", "has"))
                pol = soft["indices"]  # every entry (for max_policy_index)

            def hash_chunk(cs=cs, cols=dict(cols), codes=codes, pol=pol, n=n, soft=soft):
                for k, a_ in cols.items():
                    cs[k].raw(a_)
                if soft is None:
                    cs["policy_indices"].h.update("".join(map(str, pol.tolist())).encode())
                    cs["policy_values"].h.update(one_str * n)
                else:
                    cs["policy_indices"].feed(soft["counts"], soft["indices"])
                    cs["policy_values"].feed(soft["counts"], soft["values"])
                for k, c in codes.items():
                    cs[k].texts(c, vocab_bytes[k])

            # SHA-256 releases the GIL: with more than one thread it runs beside the deflate
            hashing = self.hash_pool.submit(hash_chunk) if self.hash_pool else None
            if hashing is None:
                hash_chunk()
            flat = None
            if self.object_arrays:
                if soft is None:
                    kept_policy[split].extend(pol.astype(np.int32).tolist())
                else:
                    for a_, v in zip(kept_soft[split], (soft["counts"], soft["indices"], soft["values"])):
                        a_.frombytes(np.ascontiguousarray(v).tobytes())
                for k, c in codes.items():
                    kept_codes[split][k].extend(c.astype(np.uint8).tolist())
            else:
                if soft is None:
                    cols["policy_indices"] = pol
                    cols["policy_values"] = np.ones(n, dtype=np.float32)
                else:
                    flat = {"policy_indices": soft["indices"], "policy_values": soft["values"]}
                for k, c in codes.items():
                    cols[k] = vocab_np[k][c]
            if flat is None:
                writers[split].append(cols)
            else:
                writers[split].append(cols, counts=soft["counts"], flat=flat)
            if soft is not None:
                stats[split]["search"] += int(soft["has"].sum())
            if hashing is not None:
                hashing.result()
            st = stats[split]
            st["games"] += int(gsel.sum())
            st["samples"] += n
            st["max_policy"] = max(st["max_policy"], int(pol.max()))
            for gi in np.flatnonzero(gsel):
                r = rows[gi]
                t = completed_at(r.started_at, r.duration_ms) or (r.started_at or r.created_at)
                if t and (st["newest"] is None or t > st["newest"]):
                    st["newest"] = t


    def _search_segments(self, rows, good, out) -> dict:
        """Per good game of the chunk (by position): its samples' soft policies in upstream's
        indices (``ringrift.export.search_targets.upstream_segment``)."""
        from .search_targets import game_targets, upstream_segment

        soff = out["sample_offsets"]
        segments = {}
        for i in np.flatnonzero(good):
            a, b = int(soff[i]), int(soff[i + 1])
            t = game_targets(self.db.conn, rows[i], self.path)
            segments[i] = upstream_segment(rows[i], t, out["move_numbers"][a:b], out["policy"][a:b], self.path)
        return segments


__all__ = ["array_checksum", "export_upstream", "quality_score", "victory_type"]
