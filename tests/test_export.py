"""NPZ export (ringrift.export, ringrift-export): file format, values, split, selection of
validated games, atomic and sharded writes, the action index space, and the feature encoder
checked against a slow Python re-implementation. Real SQLite game DBs, made with
selfplay_batch + GameDB.insert_batch + set_parity_status."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ringrift import Game, _core
from ringrift.db import GameDB
from ringrift.export import (
    GLOBAL_NAMES,
    NUM_GLOBALS,
    NUM_PLANES,
    PLANE_NAMES,
    ExportError,
    action_space,
    action_space_size,
    canonical_action,
    decode_action,
    describe_action,
    encode_action,
    encode_state,
    export_db,
    legal_action_indices,
    spatial_size,
)

BOARDS = ("square8", "hex8", "square19", "hexagonal")
SIZE = {"square8": 8, "hex8": 9, "square19": 19, "hexagonal": 25}
HEX = ("hex8", "hexagonal")
DOC = Path(__file__).resolve().parents[1] / "docs" / "npz_format.md"
KEYS = {
    "features": np.float32, "globals": np.float32, "values": np.float32, "values_mp": np.float32,
    "policy_indices": np.int32, "policy_values": np.float32, "policy_offsets": np.int64, "movers": np.uint8,
    "phases": np.uint8, "ply": np.int32, "num_players": np.uint8, "game_ids": np.int64, "moves": np.uint8,
    "board": np.str_, "split": np.str_, "spatial_size": np.int32, "meta_players": np.int32,
    "action_space_size": np.int64, "format_version": np.int32, "meta_plane_names": np.str_,
    "meta_global_names": np.str_, "metadata": np.str_,
}
PER_SAMPLE = ("features", "globals", "values", "values_mp", "policy_indices", "policy_values", "movers", "phases",
              "ply", "num_players", "game_ids", "moves")


# ---- fixtures ------------------------------------------------------------------------------------

def make_db(path: Path, configs, *, status="ok", max_moves=2000) -> Path:
    """configs: [(board, players, seed, games)]; every game gets parity_status `status`."""
    with GameDB(path) as db:
        for board, players, seed, games in configs:
            batch = _core.selfplay_batch(board, players, seed, list(range(games)), "random", threads=2,
                                         max_moves=max_moves)
            db.insert_batch(batch, board=board, num_players=players, seed=seed, policy="random",
                            engine_version="test", host="test", max_moves=max_moves)
        ids = [r[0] for r in db.conn.execute("SELECT id FROM games ORDER BY id")]
        if status != "unchecked":
            db.set_parity_status(ids, status)
    return path


@pytest.fixture(scope="module")
def sq8_db(tmp_path_factory) -> Path:
    """square8, 2, 3 and 4 players, all validated."""
    d = tmp_path_factory.mktemp("sq8")
    return make_db(d / "games.db", [("square8", 2, 1, 16), ("square8", 3, 2, 8), ("square8", 4, 3, 8)])


@pytest.fixture(scope="module")
def sq8_export(sq8_db, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sq8out") / "train.npz"
    export_db(sq8_db, out, seed=5, threads=2)
    return out


def load(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def rows_by_id(db_path) -> dict:
    with GameDB(db_path, create=False, readonly=True) as db:
        return {r.id: r for r in db.iter_games()}


def replay(row, plies: int) -> Game:
    game = Game(row.board, row.num_players)
    for i in range(plies):
        game.apply(_core.move_from_record(row.moves[i].tobytes()))
    return game


# ---- the Python reference encoder (docs/npz_format.md, slow and independent) ----------------------

def ref_encode(game: Game) -> tuple[np.ndarray, np.ndarray]:
    H = SIZE[game.board]
    off = (H - 1) // 2 if game.board in HEX else 0
    n, mover = game.num_players, game.current_player
    slot = {p: (p - mover) % n for p in range(1, n + 1)}
    planes = np.zeros((26, H, H), np.float32)
    glob = np.zeros(44, np.float32)
    clip = lambda v: min(v, 10) / 10  # noqa: E731

    def at(c):
        x, y, _ = game.cell_coords(c)
        return y + off, x + off

    for c in range(game.num_cells):
        planes[(24,) + at(c)] = 1
    for c, rings in game.stacks():
        owner, cap = rings[0], 1
        while cap < len(rings) and rings[cap] == owner:
            cap += 1
        k = 6 * slot[owner]
        planes[(k,) + at(c)] = 1
        planes[(k + 1,) + at(c)] = clip(len(rings))
        planes[(k + 2,) + at(c)] = clip(cap)
        for p, cnt in collections.Counter(rings[cap:]).items():
            planes[(6 * slot[p] + 3,) + at(c)] = clip(cnt)
    for c, p in game.markers():
        planes[(6 * slot[p] + 4,) + at(c)] = 1
    for c, p in game.collapsed():
        planes[(6 * slot[p] + 5,) + at(c)] = 1
    t = game._transient()
    anchor = {"movement": game.must_move_from, "capture": t.get("captureOrigin"),
              "chain_capture": game.chain_capture_position}.get(game.phase)
    if anchor is not None:
        planes[(25,) + at(anchor)] = 1
    glob[_core.PHASES.index(game.phase)] = 1
    R, VT, TM = game.rings_per_player, game.victory_threshold, game.territory_minimum
    for info in game.players():
        k = 8 + 6 * slot[info["player"]]
        glob[k:k + 6] = [1, info["rings_in_hand"] > 0 or info["rings_on_board"] > 0, info["rings_in_hand"] / R,
                         info["eliminated_rings"] / VT, info["collapsed"] / TM, info["rings_on_board"] / R]
        if t["lps"]["consecutivePlayer"] == info["player"]:
            glob[40 + slot[info["player"]]] = t["lps"]["consecutiveRounds"] / 3
    glob[32:37] = [game.pending_line_elimination, game.pending_territory_elimination, t["turnUsedRecovery"],
                   t["turnHadAction"], any(m.type == "swap_sides" for m in game.legal_moves())]
    glob[37 + n - 2] = 1
    return planes, glob


def ref_values(game: Game) -> dict:
    """Seat -> value of a finished game: winner, then eliminated rings, territory, seat."""
    n = game.num_players
    info = {d["player"]: d for d in game.players()}
    others = sorted((p for p in info if p != game.winner),
                    key=lambda p: (-info[p]["eliminated_rings"], -info[p]["collapsed"], p))
    order = [game.winner] + others
    return {p: 1 - 2 * order.index(p) / (n - 1) for p in info}


# ---- format ----------------------------------------------------------------------------------------

def test_keys_shapes_dtypes_and_plain_load(sq8_export):
    for path in (sq8_export, sq8_export.with_name("train_val.npz")):
        d = load(path)  # allow_pickle=False: no object arrays anywhere
        assert set(d) == set(KEYS)
        for k, dt in KEYS.items():
            assert d[k].dtype.type is dt, (k, d[k].dtype)
        N = len(d["values"])
        assert N > 0
        assert d["features"].shape == (N, NUM_PLANES, 8, 8)
        assert d["globals"].shape == (N, NUM_GLOBALS)
        assert d["values_mp"].shape == (N, 4) and d["moves"].shape == (N, 16)
        for k in PER_SAMPLE:
            assert d[k].shape[0] == N, k
        # every array either has N rows or says by its name that it is not per-sample
        for k, a in d.items():
            assert a.ndim == 0 or a.shape[0] == N or k.endswith("_offsets") or k.startswith("meta_"), (k, a.shape)
        assert int(d["format_version"]) == 2
        assert np.array_equal(d["policy_offsets"], np.arange(N + 1))
        assert np.all(d["policy_values"] == 1)
        assert np.all((d["policy_indices"] >= 0) & (d["policy_indices"] < action_space_size("square8")))
        assert str(d["board"]) == "square8" and int(d["spatial_size"]) == 8
        assert list(d["meta_players"]) == [2, 3, 4]
        assert int(d["action_space_size"]) == action_space_size("square8")
        assert tuple(d["meta_plane_names"]) == PLANE_NAMES and tuple(d["meta_global_names"]) == GLOBAL_NAMES
        meta = json.loads(str(d["metadata"]))
        assert meta["format"] == "ringrift-npz" and meta["split"] == str(d["split"]) and meta["samples"] == N
        # the mask plane marks every cell; the phase one-hot is exact
        assert np.all(d["features"][:, 24] == 1)
        assert np.all(d["globals"][:, :8].sum(axis=1) == 1)
        assert np.all(d["movers"] >= 1) and np.all(d["movers"] <= d["num_players"])
        with zipfile.ZipFile(path) as z:
            assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
            assert z.testzip() is None  # every member's CRC-32 checks out


def test_samples_are_the_states_before_each_move(sq8_db, sq8_export):
    d = load(sq8_export)
    rows = rows_by_id(sq8_db)
    # every move of each exported game, in order
    for gid in np.unique(d["game_ids"]):
        sel = d["game_ids"] == gid
        row = rows[int(gid)]
        assert np.array_equal(d["ply"][sel], np.arange(row.move_count))
        assert np.array_equal(d["moves"][sel], row.moves)
        assert np.array_equal(d["movers"][sel], row.moves[:, 1])
        assert np.all(d["num_players"][sel] == row.num_players)
    # the played move's index decodes back to the played move (or an equivalent one)
    rng = np.random.default_rng(0)
    for k in rng.choice(len(d["values"]), 40, replace=False):
        row = rows[int(d["game_ids"][k])]
        game = replay(row, int(d["ply"][k]))
        played = _core.move_from_record(d["moves"][k].tobytes())
        assert int(d["phases"][k]) == _core.PHASES.index(game.phase)
        assert int(d["policy_indices"][k]) == canonical_action(game, played)
        a, b = game.clone(), game.clone()
        a.apply(played)
        b.apply(decode_action(game, int(d["policy_indices"][k])))
        assert a.hash() == b.hash()


@pytest.mark.parametrize("players", [2, 3, 4])
def test_values_are_rank_aware(sq8_db, sq8_export, players):
    expected = {2: [1, -1], 3: [1, 0, -1], 4: [1, 1 / 3, -1 / 3, -1]}[players]
    d = load(sq8_export)
    rows = rows_by_id(sq8_db)
    sel = d["num_players"] == players
    assert sel.any()
    vm = d["values_mp"][sel]
    assert np.allclose(np.sort(vm[:, :players], axis=1)[:, ::-1], expected)
    assert np.all(vm[:, players:] == 0)
    # values_mp is by absolute seat (as upstream's): values is the mover's column
    assert np.array_equal(d["values"][sel], vm[np.arange(len(vm)), d["movers"][sel].astype(int) - 1])
    for gid in np.unique(d["game_ids"][sel]):
        row = rows[int(gid)]
        final = replay(row, row.move_count)
        assert final.winner == row.winner
        want = ref_values(final)
        s = np.flatnonzero(d["game_ids"] == gid)
        for k in s[:: max(1, len(s) // 7)]:
            mover = int(d["movers"][k])
            assert np.allclose(d["values_mp"][k, :players], [want[p] for p in range(1, players + 1)])
            assert d["values"][k] == pytest.approx(want[mover])
            if mover == row.winner:
                assert d["values"][k] == 1


def test_split_is_by_game_deterministic_and_seeded(sq8_db, tmp_path):
    a = export_db(sq8_db, tmp_path / "a.npz", seed=3, compression=False)
    b = export_db(sq8_db, tmp_path / "b.npz", seed=3, threads=1, chunk_games=5)
    c = export_db(sq8_db, tmp_path / "c.npz", seed=4)
    ta, va = load(tmp_path / "a.npz"), load(tmp_path / "a_val.npz")
    tb, vb = load(tmp_path / "b.npz"), load(tmp_path / "b_val.npz")
    tc = load(tmp_path / "c.npz")
    train_games, val_games = set(ta["game_ids"].tolist()), set(va["game_ids"].tolist())
    assert train_games and val_games and not train_games & val_games
    assert len(train_games) + len(val_games) == 32 == a.games["train"] + a.games["val"]
    assert len(val_games) == round(32 * 0.1) == a.games["val"]
    for k in PER_SAMPLE:  # same seed: identical content (thread count and chunking do not matter)
        assert np.array_equal(ta[k], tb[k]) and np.array_equal(va[k], vb[k]), k
    assert set(tc["game_ids"].tolist()) != train_games
    assert b.samples["train"] == len(tb["values"]) and c.samples["train"] == len(tc["values"])


def test_only_validated_games_unless_asked(tmp_path):
    db_path = make_db(tmp_path / "mixed.db", [("hex8", 2, 7, 12)], status="unchecked")
    with GameDB(db_path) as db:
        ids = [r[0] for r in db.conn.execute("SELECT id FROM games ORDER BY id")]
        db.set_parity_status(ids[:6], "ok")
        db.set_parity_status(ids[6:8], "failed")
        # damage one unchecked game: a hash in the middle no longer matches its move
        gid, hashes = db.conn.execute("SELECT id, hashes FROM games WHERE id = ?", (ids[9],)).fetchone()
        bad = bytearray(hashes)
        bad[4 * 3] ^= 1  # the 32-bit fast step hash after move 3
        db.conn.execute("UPDATE games SET hashes = ? WHERE id = ?", (bytes(bad), gid))
    r = export_db(db_path, tmp_path / "ok.npz", split_ratio=0.5)
    got = set(load(tmp_path / "ok.npz")["game_ids"].tolist()) | set(load(tmp_path / "ok_val.npz")["game_ids"].tolist())
    assert got == set(ids[:6]) and r.candidates == 6 and not r.skipped
    r = export_db(db_path, tmp_path / "all.npz", split_ratio=0.5, include_unchecked=True)
    got = set(load(tmp_path / "all.npz")["game_ids"].tolist()) | set(load(tmp_path / "all_val.npz")["game_ids"].tolist())
    assert got == set(ids[:6]) | set(ids[8:]) - {ids[9]}
    assert [gid for gid, _ in r.skipped] == [ids[9]] and "step 3" in r.skipped[0][1]


def test_capped_games_are_skipped_by_default(tmp_path):
    db_path = make_db(tmp_path / "capped.db", [("square8", 2, 1, 6)], max_moves=40)
    with GameDB(db_path) as db:
        assert db.count_games(capped=1) == 6
    with pytest.raises(ExportError, match="capped.*--include-capped"):
        export_db(db_path, tmp_path / "x.npz")
    r = export_db(db_path, tmp_path / "x.npz", include_capped=True)
    assert r.games["train"] + r.games["val"] == 6
    d = load(tmp_path / "x.npz")
    assert np.all(d["values"] == 0) and np.all(d["values_mp"] == 0)


def test_drop_forced_leaves_out_bookkeeping_states(sq8_db, tmp_path):
    export_db(sq8_db, tmp_path / "f.npz", seed=5, drop_forced=True)
    full, dropped = load(tmp_path / "f.npz"), None
    types = full["moves"][:, 0]
    forced = [_core.MOVE_TYPES.index(t) for t in
              ("no_placement_action", "no_movement_action", "no_line_action", "no_territory_action")]
    assert not np.isin(types, forced).any()
    export_db(sq8_db, tmp_path / "g.npz", seed=5)
    dropped = load(tmp_path / "g.npz")
    keep = ~np.isin(dropped["moves"][:, 0], forced)
    for k in PER_SAMPLE:
        assert np.array_equal(full[k], dropped[k][keep]), k


# ---- atomic, chunked and sharded writes -------------------------------------------------------------

def shards_match_one_shot(one_shot, parts, keys):
    """Assert that each split's shards of ``parts`` concatenate to the one-shot export at
    ``one_shot`` (``x.npz``, ``x_val.npz``) in ``keys``; returns the loaded shards by split."""
    by_split = {}
    for split, path in (("train", one_shot), ("val", one_shot.with_name(one_shot.stem + "_val.npz"))):
        ref = load(path)
        by_split[split] = shards = [load(p) for p in parts.files[split]]
        for k in keys:
            assert np.array_equal(ref[k], np.concatenate([s[k] for s in shards])), (split, k)
    return by_split


def test_sharded_and_chunked_export_equals_one_shot(sq8_db, tmp_path):
    one = export_db(sq8_db, tmp_path / "one.npz", seed=2)
    parts = export_db(sq8_db, tmp_path / "many.npz", seed=2, max_samples_per_file=500, chunk_games=3,
                      chunk_mb=0.5, threads=1)
    assert len(parts.files["train"]) > 2 and parts.samples == one.samples
    assert [p.name for p in parts.files["train"]] == [f"many_part{i:03d}.npz" for i in range(len(parts.files["train"]))]
    assert not (tmp_path / "many.npz").exists()
    for shards in shards_match_one_shot(tmp_path / "one.npz", parts, PER_SAMPLE).values():
        assert all(len(s["values"]) <= 500 for s in shards)
        metas = [json.loads(str(s["metadata"])) for s in shards]
        assert [m["part"] for m in metas] == list(range(len(shards)))
        assert all(m["num_parts"] == len(shards) for m in metas)
    # a later unsharded export of the same name removes the stale parts
    export_db(sq8_db, tmp_path / "many.npz", seed=2)
    assert sorted(p.name for p in tmp_path.glob("many*.npz")) == ["many.npz", "many_val.npz"]
    assert not list(tmp_path.glob(".many*"))


def test_failed_export_leaves_no_partial_file(sq8_db, tmp_path, monkeypatch):
    from ringrift.export import exporter

    export_db(sq8_db, tmp_path / "out.npz", seed=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = {"n": 0}
    real = exporter._encode_chunk

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(exporter, "_encode_chunk", failing)
    with pytest.raises(OSError):
        export_db(sq8_db, tmp_path / "out.npz", seed=9, chunk_games=2)
    calls["n"] = 0
    with pytest.raises(OSError):
        export_db(sq8_db, tmp_path / "new.npz", seed=9, chunk_games=2, max_samples_per_file=100)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # old files untouched, no new or temporary files


def test_an_output_that_cannot_be_replaced_is_named_with_what_was(sq8_db, tmp_path):
    """The archives are renamed onto their names one by one; when one rename fails the error names
    that output and what was already replaced. The CLI said "no output file was changed" after
    naming the temporary file, even when the train file had already been replaced."""
    from ringrift.export.writer import PublishError

    export_db(sq8_db, tmp_path / "out.npz", seed=1)
    train = (tmp_path / "out.npz").read_bytes()
    (tmp_path / "out_val.npz").unlink()
    (tmp_path / "out_val.npz").mkdir()  # a folder in the way: its rename fails on any system
    (tmp_path / "out_val.npz" / "keep").write_text("x")
    with pytest.raises(PublishError, match=r"out_val\.npz: cannot write it \(.*\); already replaced: .*out\.npz$"):
        export_db(sq8_db, tmp_path / "out.npz", seed=2)
    assert (tmp_path / "out.npz").read_bytes() != train  # replaced before the val file failed
    (tmp_path / "new.npz").mkdir()
    (tmp_path / "new.npz" / "keep").write_text("x")
    with pytest.raises(PublishError, match=r"new\.npz: cannot write it \(.*\); no output file was changed$"):
        export_db(sq8_db, tmp_path / "new.npz", seed=2)
    r = subprocess.run([sys.executable, "-m", "ringrift.export", "--db", str(sq8_db), "--output",
                        str(tmp_path / "new.npz"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "new.npz: cannot write it" in r.stderr and ".export-" not in r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_write_that_fails_names_the_output_folder(sq8_db, tmp_path):
    """A full disk (here a file-size limit: EFBIG, as a full disk gives ENOSPC) fails a write(),
    which names no file: the one-line error said only "No space left on device"."""
    import resource
    import signal

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))  # past the DB's 32 KiB -shm

    out = tmp_path / "out" / "train.npz"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, "-m", "ringrift.export", "--db", str(sq8_db), "--output", str(out),
                        "--quiet"], capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"ringrift-export: error: {out.parent}: ") and "no output file was changed" in r.stderr
    assert list(out.parent.iterdir()) == []
    # the pipeline's phase says the same
    r = subprocess.run([sys.executable, "-m", "ringrift.pipeline", "--state", str(tmp_path / "s.json"), "run",
                        "npz_export", "--db", str(sq8_db), "--output-dir", str(out.parent)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"ringrift-pipeline: error: npz_export: {out.parent}: ")
    assert list(out.parent.iterdir()) == []


def test_writer_crc_of_a_concatenation_and_piecewise_deflate(tmp_path):
    import zlib

    from ringrift.export.writer import ShardedNpzWriter, crc32_concat

    rng = np.random.default_rng(1)
    for la, lb in ((0, 9), (5, 0), (128, 1000), (77, 123457)):
        a, b = rng.bytes(la), rng.bytes(lb)
        assert crc32_concat(zlib.crc32(a), zlib.crc32(b), lb) == zlib.crc32(a + b)
    big = rng.integers(0, 3, size=(3000, 700), dtype=np.int64)  # > 4 MiB: several deflate pieces
    for compress, threads in ((True, 1), (True, 3), (False, 1)):
        w = ShardedNpzWriter(tmp_path, f"t{compress}{threads}", {"a": (np.int64, (700,)), "b": (np.uint8, ())},
                             compress=compress, threads=threads)
        for s in range(0, 3000, 1100):
            w.append({"a": big[s:s + 1100], "b": np.full(len(big[s:s + 1100]), 7, np.uint8)})
        (path, rows), = w.finish(lambda part, num, rows: {"n": np.int64(rows), "s": np.array("x")})
        assert rows == 3000
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None
        d = load(path)
        assert np.array_equal(d["a"], big) and np.all(d["b"] == 7) and int(d["n"]) == 3000 and str(d["s"]) == "x"


# ---- command line -----------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "ringrift.export", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_cli_export_and_config(sq8_db, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("export:\n  compression: false\n  split_ratio: 0.5\n")
    r = cli("--db", sq8_db, "--output", tmp_path / "sub" / "c.npz", "--config", cfg, "--seed", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "train: 16 games" in r.stdout and "val: 16 games" in r.stdout
    with zipfile.ZipFile(tmp_path / "sub" / "c.npz") as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert z.testzip() is None
    r = cli("--db", sq8_db, "--output-dir", tmp_path / "d", "--players", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    d = load(tmp_path / "d" / "canonical_square8.npz")
    assert set(d["num_players"].tolist()) == {3}


def test_cli_bad_inputs_give_one_line_errors(tmp_path):
    def one_line_error(r, pattern):
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ringrift-export: error:"), r.stderr
        assert re.search(pattern, lines[0]), lines[0]
        assert "Traceback" not in r.stderr

    one_line_error(cli("--db", tmp_path / "missing.db", "--output", tmp_path / "o.npz"), "no such game database")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    one_line_error(cli("--db", junk, "--output", tmp_path / "o.npz"), "not a SQLite database")
    empty = tmp_path / "empty.db"
    GameDB(empty).close()
    one_line_error(cli("--db", empty, "--output", tmp_path / "o.npz"), "no games to export")
    unchecked = make_db(tmp_path / "u.db", [("square8", 2, 1, 3)], status="unchecked")
    one_line_error(cli("--db", unchecked, "--output", tmp_path / "o.npz"),
                   r"0 of 3 games .*3 unchecked.*ringrift-parity --db")
    one_line_error(cli("--db", unchecked, "--output", tmp_path / "o.npz", "--board", "hex8"), "no games to export")
    mixed = make_db(tmp_path / "m.db", [("square8", 2, 1, 2), ("hex8", 2, 1, 2)])
    one_line_error(cli("--db", mixed, "--output", tmp_path / "o.npz"), "several boards.*--board")
    one_line_error(cli("--db", mixed, "--output", tmp_path / "o.npz", "--split-ratio", "1.5"), "split ratio")
    one_line_error(cli("--db", mixed, "--output", tmp_path / "o.npz", "--split-ratio", "0"), "split ratio")
    r = cli("--db", mixed, "--board", "square8", "--output", tmp_path / "single.npz", "--split-ratio", "1")
    assert r.returncode == 0 and list(tmp_path.glob("single*.npz")) == [tmp_path / "single.npz"], r.stderr
    one_line_error(cli("--db", mixed, "--board", "square8", "--output", tmp_path / "o.npz", "--object-arrays"),
                   "only for --encoding upstream")
    r = cli("--db", mixed, "--output", tmp_path / "o.npz", "--players", "7")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("o*.npz"))


# ---- action index space ----------------------------------------------------------------------------

def test_action_space_layout():
    for board in BOARDS:
        sp = action_space(board)
        blocks = sp["blocks"]
        assert list(blocks) == list(_core.MOVE_TYPES)
        at = 0
        for mtype, (start, size) in blocks.items():
            assert start == at and size >= 1
            at += size
        assert at == sp["size"] == action_space_size(board)
        n = Game(board, 2).num_cells
        assert blocks["place_ring"][1] == 3 * n and blocks["forced_elimination"][1] == n
        assert blocks["move_stack"][1] == n * sp["dirs"] * (SIZE[board] - 1)
    assert action_space_size("square8") == 14475
    with pytest.raises(ValueError):
        action_space("chess")


def _check_state(game: Game, seen: collections.Counter) -> None:
    moves = game.legal_moves()
    idx = [encode_action(game.board, m) for m in moves]
    assert len(set(idx)) == len(idx), "two legal moves share a structural index"
    assert list(legal_action_indices(game, canonical=False)) == idx
    canon = list(legal_action_indices(game))
    effect: dict = {}
    for m, i, ci in zip(moves, idx, canon):
        assert encode_action(game.board, game.num_players, m) == i
        info = describe_action(game.board, i)
        assert info["type"] == m.type
        if m.type in ("move_stack", "overtaking_capture", "continue_capture_segment", "recovery_slide"):
            assert (info["from"], info["to"]) == (m.from_cell, m.to)
        elif m.type == "place_ring":
            assert (info["cell"], info["count"]) == (m.to, m.count)
        elif m.type == "choose_territory_option":
            assert (info["seed"], info["pass"]) == (m.to, m.option)
        elif m.type in ("process_line", "choose_line_option"):
            assert (info["line_start"], info["line_dir"]) == (m.line_start, m.line_dir)
            assert info.get("window") == (m.window if m.type == "choose_line_option" and m.window >= 0 else None)
        after = game.clone()
        after.apply(m)
        d = decode_action(game, i)
        assert d == m
        other = game.clone()
        other.apply(decode_action(game, ci))
        assert other.hash() == after.hash()
        effect.setdefault(ci, set()).add(after.hash())
        seen[m.type] += 1
        if ci != i:
            seen["merged " + m.type] += 1
    # moves with different effects never share a (canonical) index
    assert all(len(h) == 1 for h in effect.values())
    # and territory moves with the same effect always do
    terr = {ci: hs for ci, hs in effect.items() if describe_action(game.board, ci)["type"] == "choose_territory_option"}
    assert len(terr) == len({h for hs in terr.values() for h in hs})


@pytest.mark.parametrize("board,games", [("square8", 5), ("hex8", 5), ("square19", 1), ("hexagonal", 1)])
@pytest.mark.parametrize("players", [2, 3, 4])
def test_action_index_round_trip(board, games, players):
    batch = _core.selfplay_batch(board, players, 9, list(range(games)), "random", threads=2)
    off = batch["move_offsets"]
    seen: collections.Counter = collections.Counter()
    for g in range(games):
        game = Game(board, players)
        recs = batch["moves"][off[g]:off[g + 1]]
        every = max(1, len(recs) // 50)
        for i, rec in enumerate(recs):
            if i % every == 0 or rec[0] >= _core.MOVE_TYPES.index("recovery_slide"):
                _check_state(game, seen)
            game.apply(_core.move_from_record(rec.tobytes()))
    assert seen["place_ring"] and seen["move_stack"] and seen["overtaking_capture"]
    if board == "square8":
        assert seen["choose_territory_option"] and seen["eliminate_rings_from_stack"]


def test_duplicate_region_and_exact_line_share_an_index():
    """Across many square8 states: regions listed by two passes and exact process_line moves
    are merged with their equivalents, and both kinds occur."""
    seen: collections.Counter = collections.Counter()
    for players in (2, 3, 4):
        batch = _core.selfplay_batch("square8", players, 4, list(range(12)), "random", threads=2)
        off = batch["move_offsets"]
        for g in range(12):
            game = Game("square8", players)
            for rec in batch["moves"][off[g]:off[g + 1]]:
                if rec[0] in (_core.MOVE_TYPES.index("choose_territory_option"),
                              _core.MOVE_TYPES.index("process_line")):
                    _check_state(game, seen)
                game.apply(_core.move_from_record(rec.tobytes()))
    assert seen["merged choose_territory_option"] > 0
    assert seen["merged process_line"] > 0


def test_decode_rejects_what_is_not_legal():
    game = Game("square8", 2)
    sp = action_space("square8")
    with pytest.raises(ValueError, match="not a legal move"):
        decode_action(game, sp["blocks"]["move_stack"][0])
    with pytest.raises(ValueError, match="out of range"):
        decode_action(game, sp["size"])
    assert decode_action(game, sp["blocks"]["resign"][0]).type == "resign"
    bad = _core.Move("move_stack", 1, from_cell=0, to=10)  # not on a straight line
    with pytest.raises(ValueError):
        encode_action("square8", bad)


# ---- features ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_features_match_python_reference(board, players):
    batch = _core.selfplay_batch(board, players, 21, [0], "random", threads=1)
    recs = batch["moves"]
    game = Game(board, players)
    checked = 0
    every = max(1, len(recs) // 12)
    for i, rec in enumerate(recs):
        if i % every == 0:
            planes, glob = encode_state(game)
            ref_p, ref_g = ref_encode(game)
            assert planes.shape == (NUM_PLANES,) + spatial_size(board)
            assert np.array_equal(planes, ref_p), (board, players, i)
            assert np.allclose(glob, ref_g, atol=1e-6), (board, players, i, np.flatnonzero(~np.isclose(glob, ref_g)))
            checked += 1
        game.apply(_core.move_from_record(rec.tobytes()))
    assert checked >= 10


def test_exported_features_match_python_reference(tmp_path):
    db_path = make_db(tmp_path / "h.db", [("hex8", 3, 2, 3), ("hex8", 4, 3, 2)])
    export_db(db_path, tmp_path / "h.npz", chunk_games=2, split_ratio=0.5)
    rows = rows_by_id(db_path)
    for name in ("h.npz", "h_val.npz"):
        d = load(tmp_path / name)
        assert d["features"].shape[2:] == (9, 9)
        for k in range(0, len(d["values"]), 17):
            game = replay(rows[int(d["game_ids"][k])], int(d["ply"][k]))
            ref_p, ref_g = ref_encode(game)
            assert np.array_equal(d["features"][k], ref_p)
            assert np.allclose(d["globals"][k], ref_g, atol=1e-6)


def test_hex_planes_mask_the_corners():
    planes, _ = encode_state(Game("hexagonal", 2))
    assert planes.shape == (NUM_PLANES, 25, 25)
    mask = planes[PLANE_NAMES.index("valid_cell")]
    # axial (q, r) embedding: row r + 12, column q + 12; the cells with |q + r| > 12 are off the board
    assert mask.sum() == 469 and mask[12, 12] == 1
    assert mask[0, 0] == mask[24, 24] == 0 and mask[0, 24] == mask[24, 0] == 1
    assert mask[0, 11] == 0 and mask[0, 12] == 1


# ---- the documentation's loader example -----------------------------------------------------------------

def test_doc_loader_example_runs(sq8_export):
    text = DOC.read_text()
    m = re.search(r"<!-- loader-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/npz_format.md lacks the marked loader example"
    ns = {"PATH": str(sq8_export)}
    exec(compile(m.group(1), str(DOC), "exec"), ns)
    assert ns["x"].shape[1:] == (NUM_PLANES, 8, 8) and len(ns["x"]) == len(ns["z"])
    assert ns["policy"].shape[1] == action_space_size("square8")
    assert np.all(ns["policy"].sum(axis=1) == 1)


def test_split_ratio_one_writes_one_file_with_every_game(sq8_db, tmp_path):
    (tmp_path / "one_val.npz").write_bytes(b"stale")  # an earlier export's val file goes away
    r = export_db(sq8_db, tmp_path / "one.npz", split_ratio=1)
    assert "val" not in r.files and not (tmp_path / "one_val.npz").exists()
    d = load(tmp_path / "one.npz")
    with GameDB(sq8_db, create=False, readonly=True) as db:
        n_games = db.conn.execute("SELECT COUNT(*), SUM(move_count) FROM games WHERE capped = 0").fetchone()
    assert len(np.unique(d["game_ids"])) == n_games[0] and len(d["values"]) == n_games[1]
    assert any("val: none" in line for line in r.summary_lines())
