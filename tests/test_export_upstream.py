"""`ringrift-export --encoding upstream` against the golden files that upstream's own exporter
wrote for the same games (../shared/upstream-golden, see its README.md): every array equal,
checksums as upstream computes them, games in upstream's order. No upstream checkout needed."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ringrift import _core
from ringrift.db.store import readonly_uri
from ringrift.db import GameDB
from ringrift.export import ExportError
from ringrift.export.upstream import array_checksum, export_upstream

from conftest import need

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "upstream-golden"
CONFIGS = ("square8_2p", "square8_3p", "square8_4p", "hex8_2p", "hex8_3p", "hex8_4p", "square19_2p", "hexagonal_2p")
RAGGED = ("policy_indices", "policy_values")
STRINGS = ("phases", "victory_types", "engine_modes", "move_types", "opponent_types")


@pytest.fixture(scope="module")
def golden() -> Path:
    return need(GOLDEN / "README.md", "upstream golden files (../shared/upstream-golden)").parent


def load(path, pickle=False) -> dict:
    with np.load(path, allow_pickle=pickle) as z:
        return {k: z[k] for k in z.files}


def export(golden, cfg, out, **kw):
    kw.setdefault("split_ratio", 1)
    kw.setdefault("threads", 1)
    return export_upstream(golden / f"{cfg}.games.db", out, include_unchecked=True, **kw)


def verify_module(golden):
    sys.path.insert(0, str(golden))
    try:
        import verify  # the golden folder's own pickle-free checker
    finally:
        sys.path.remove(str(golden))
    return verify


@pytest.mark.parametrize("cfg", CONFIGS)
def test_equal_to_upstreams_export(golden, cfg, tmp_path):
    r = export(golden, cfg, tmp_path / "ours.npz")
    assert list(r.files) == ["train"] and not r.skipped
    ours, gold = load(tmp_path / "ours.npz"), load(golden / f"{cfg}.upstream.npz")
    assert set(ours) == set(gold)  # upstream's 32 keys plus the two *_offsets
    for k, want in gold.items():
        if k in ("metadata", "data_checksums"):
            continue
        got = ours[k]
        assert got.dtype == want.dtype and got.shape == want.shape, (k, got.dtype, got.shape, want.dtype, want.shape)
        assert np.array_equal(got, want), k  # bit-equal (float32 compared exactly)
    meta, gmeta = json.loads(str(ours["metadata"])), json.loads(str(gold["metadata"]))
    assert list(meta) == list(gmeta)
    assert {k: meta[k] for k in meta if k != "export_time"} == {k: gmeta[k] for k in gmeta if k != "export_time"}
    sums, gsums = json.loads(str(ours["data_checksums"])), json.loads(str(gold["data_checksums"]))
    assert list(sums) == list(gsums)
    assert {k: v for k, v in sums.items() if k != "metadata"} == {k: v for k, v in gsums.items() if k != "metadata"}
    # the golden folder's own checker: rebuilt object arrays hash to our data_checksums
    shutil.copy(golden / f"{cfg}.upstream.games.json", tmp_path / "ours.games.json")
    n, games, _, errors = verify_module(golden).check_file(str(tmp_path / "ours.npz"))
    assert errors == [] and n == len(ours["values"]) and games == meta["game_count"]


def test_several_threads_and_small_chunks_still_equal_upstreams_export(golden, tmp_path, monkeypatch):
    """With threads the writer deflates one chunk while the next is encoded (two features
    buffers used by turns): one game per chunk, several 4 MiB pieces per game, the golden
    arrays all the same; split by game, each chunk leaves one writer without rows. Each piece
    of the features (4 MiB, ten a game) waits 0.2 s before it is deflated, so that a buffer
    reused too early shows."""
    from ringrift.export import deflate

    cfg = "square19_2p"
    export(golden, cfg, tmp_path / "s1.npz", threads=1, split_ratio=0.5, seed=2)  # the reference, no pool
    lib = deflate.choose()
    real = lib.piece_with_crc

    def late(data):
        if len(data) >= 1 << 20:
            time.sleep(0.2)
        return real(data)

    lib.piece_with_crc = late
    monkeypatch.setattr(deflate, "choose", lambda spec=None: lib)
    export(golden, cfg, tmp_path / "t.npz", threads=3, chunk_games=1)
    ours, gold = load(tmp_path / "t.npz"), load(golden / f"{cfg}.upstream.npz")
    for k, want in gold.items():
        if k not in ("metadata", "data_checksums"):
            assert np.array_equal(ours[k], want), k
    export(golden, cfg, tmp_path / "s.npz", threads=3, chunk_games=1, split_ratio=0.5, seed=2)
    for a, b in (("s.npz", "s1.npz"), ("s_val.npz", "s1_val.npz")):
        got, want = load(tmp_path / a), load(tmp_path / b)
        assert len(got["values"]) > 0
        for k in want:
            if k not in ("metadata", "data_checksums"):  # both hold the export's time
                assert np.array_equal(got[k], want[k]), (a, k)
        sums, want_sums = (json.loads(str(d["data_checksums"])) for d in (got, want))
        assert {k: v for k, v in sums.items() if k != "metadata"} == \
            {k: v for k, v in want_sums.items() if k != "metadata"}


@pytest.mark.parametrize("cfg", ["square8_2p", "hex8_3p"])
def test_game_order_is_created_at_then_id_descending(golden, cfg):
    """The documented order (docs/upstream_npz.md) gives the sidecar's game sequence."""
    with sqlite3.connect(readonly_uri(golden / f"{cfg}.games.db"), uri=True) as conn:
        ours = conn.execute("SELECT seed, game_index FROM games ORDER BY COALESCE(started_at, created_at) DESC, "
                            "id DESC").fetchall()
    side = json.loads((golden / f"{cfg}.upstream.games.json").read_text())["games"]
    assert [tuple(g["ringrift_gamedb"][k] for k in ("seed", "game_index")) for g in side] == ours


def test_object_arrays_are_upstreams_own_layout(golden, tmp_path):
    cfg = "square8_3p"
    export(golden, cfg, tmp_path / "obj.npz", object_arrays=True)
    with pytest.raises(ValueError):
        load(tmp_path / "obj.npz")  # needs allow_pickle, as documented
    ours = load(tmp_path / "obj.npz", pickle=True)
    gold = load(golden / f"{cfg}.upstream.npz")
    sums = json.loads(str(ours["data_checksums"]))
    assert set(ours) == set(sums) | {"data_checksums"} and len(ours) == 32
    for k, arr in ours.items():  # every key hashes (upstream's way) to its entry
        if k != "data_checksums":
            assert array_checksum(arr) == sums[k], k
    n = len(ours["values"])
    for k in RAGGED:
        assert ours[k].dtype == object and ours[k].shape == (n, 1)
        assert np.array_equal(ours[k][:, 0].astype(gold[k].dtype), gold[k])
    for k in STRINGS:
        assert ours[k].dtype == object and list(ours[k]) == list(gold[k])
    meta = ours["metadata"][()]
    assert isinstance(meta, dict) and meta["sample_count"] == n
    gsums = json.loads(str(gold["data_checksums"]))
    assert {k: v for k, v in sums.items() if k != "metadata"} == {k: v for k, v in gsums.items() if k != "metadata"}


def test_split_ratio_below_one_splits_by_game(golden, tmp_path):
    r = export(golden, "square8_4p", tmp_path / "s.npz", split_ratio=0.75, seed=1)
    t, v = load(tmp_path / "s.npz"), load(tmp_path / "s_val.npz")
    assert r.games == {"train": 18, "val": 6}
    whole = load(golden / "square8_4p.upstream.npz")
    assert len(t["values"]) + len(v["values"]) == len(whole["values"])
    for d in (t, v):
        n = len(d["values"])
        assert json.loads(str(d["metadata"]))["sample_count"] == n
        assert np.array_equal(d["policy_indices_offsets"], np.arange(n + 1))
        sums = json.loads(str(d["data_checksums"]))
        for k in ("features", "globals", "values_mp", "quality_score"):
            assert array_checksum(d[k]) == sums[k]


def test_a_game_that_does_not_replay_is_skipped_and_checksums_still_hold(golden, tmp_path):
    db = tmp_path / "broken.db"
    shutil.copy(golden / "square8_2p.games.db", db)
    with sqlite3.connect(db) as conn:  # a wrong hash after move 3 of one game
        gid, hashes = conn.execute("SELECT id, hashes FROM games ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE games SET hashes = ? WHERE id = ?", (bytes(24) + bytes(hashes[24:]), gid))
    r = export_upstream(db, tmp_path / "b.npz", include_unchecked=True, split_ratio=1)
    assert [g for g, _ in r.skipped] == [gid] and "state hash" in r.skipped[0][1]
    d = load(tmp_path / "b.npz")
    sums = json.loads(str(d["data_checksums"]))
    for k in ("features", "values", "move_numbers", "total_game_moves"):
        assert array_checksum(d[k]) == sums[k]
    assert json.loads(str(d["metadata"]))["game_count"] == 23


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ringrift.export", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_and_config_select_the_encoding(golden, tmp_path):
    db = golden / "hex8_2p.games.db"
    r = cli("--db", db, "--output", tmp_path / "u.npz", "--encoding", "upstream", "--split-ratio", "1",
            "--include-unchecked", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "val: none" in r.stdout and not (tmp_path / "u_val.npz").exists()
    gold = load(golden / "hex8_2p.upstream.npz")
    assert np.array_equal(load(tmp_path / "u.npz")["features"], gold["features"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("export:\n  encoding: upstream\n  split_ratio: 1\n")
    r = cli("--db", db, "--output", tmp_path / "c.npz", "--config", cfg, "--include-unchecked", "--quiet")
    assert r.returncode == 0, r.stderr
    assert int(load(tmp_path / "c.npz")["in_channels"]) == 64
    cfg.write_text("export:\n  encoding: upstreem\n")
    r = cli("--db", db, "--output", tmp_path / "x.npz", "--config", cfg)
    assert r.returncode != 0 and "native or upstream" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("--db", db, "--output", tmp_path / "x.npz", "--encoding", "upstream", "--symmetries")
    assert r.returncode == 2 and "--symmetries: not available with --encoding upstream" in r.stderr  # usage
    r = cli("--db", db, "--output", tmp_path / ".npz")
    assert r.returncode == 2 and r.stderr.strip().endswith("needs a file name (NAME.npz)"), r.stderr
    assert "allow_pickle" in cli("--help").stdout
    assert not list(tmp_path.glob("x*.npz"))


def test_doc_loader_example_runs(golden, tmp_path):
    doc = Path(__file__).resolve().parents[1] / "docs" / "upstream_npz.md"
    m = re.search(r"<!-- upstream-loader-example -->\s*```python\n(.*?)```", doc.read_text(), re.S)
    assert m, "docs/upstream_npz.md lacks the marked loader example"
    export(golden, "square8_2p", tmp_path / "d.npz")
    ns = {"PATH": str(tmp_path / "d.npz")}
    exec(compile(m.group(1), str(doc), "exec"), ns)
    assert len(ns["policy"]) == len(ns["x"]) == ns["meta"]["sample_count"] and ns["g"].shape[1] == 20


def test_games_without_a_winner_are_left_out_with_a_clear_error(tmp_path):
    db = tmp_path / "capped.db"
    with GameDB(db) as gdb:  # 30 moves: every random square8 game stops at the cap
        batch = _core.selfplay_batch("square8", 2, 1, [0, 1], "random", threads=1, max_moves=30)
        gdb.insert_batch(batch, board="square8", num_players=2, seed=1, policy="random", engine_version="t",
                         host="t", max_moves=30)
        gdb.set_parity_status([r[0] for r in gdb.conn.execute("SELECT id FROM games")], "ok")
    with pytest.raises(ExportError, match="2 qualifying games have no winner"):
        export_upstream(db, tmp_path / "c.npz")
    assert not list(tmp_path.glob("c*.npz"))
