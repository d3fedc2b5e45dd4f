"""``ringrift-export`` writes the search's targets of search self-play games itself (native and
upstream encoding, ringrift.export.search_targets; docs/search.md, "Training targets")."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.engine import Game
from ringrift.export.actions import decode_action, legal_action_indices
from ringrift.export.exporter import export_db
from ringrift.export.symmetry import symmetric_action, symmetries
from ringrift.export.upstream import array_checksum, export_upstream
from ringrift.search.targets import apply_search_targets
from ringrift.selfplay import run_selfplay

POLICY = "gumbel:heuristic:sims=8,top_k=4"


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    """Per board: two searched games and one random game (no targets), 2 players."""
    root = tmp_path_factory.mktemp("search_export")
    out = {}
    for board in ("square8", "hex8"):
        path = root / f"{board}.db"
        with GameDB(path) as db:
            run_selfplay(db, board=board, num_games=2, seed=1, policy=POLICY, max_moves=200, threads=1)
            run_selfplay(db, board=board, num_games=1, seed=1, policy="random", max_moves=200, threads=1)
        out[board] = path
    return out


def load(path, pickle=False) -> dict:
    with np.load(path, allow_pickle=pickle) as z:
        return {k: z[k] for k in z.files}


def entries(z, k, key="policy_indices", off="policy_offsets"):
    o = z[off]
    return z[key][o[k]:o[k + 1]]


def replayed_states(db_path, game_ids, plies):
    """{(game id, ply): Game} for the given samples (each game replayed once)."""
    want: dict = {}
    for gid, p in zip(game_ids.tolist(), plies.tolist()):
        want.setdefault(gid, set()).add(p)
    out = {}
    with GameDB(db_path, create=False) as db:
        for row in db.iter_games(ids=sorted(want)):
            g = Game(row.board, row.num_players)
            for j in range(max(want[row.id]) + 1):
                if j in want[row.id]:
                    out[(row.id, j)] = g.clone()
                g.apply(_core.move_from_record(row.moves[j].tobytes()))
    return out


def test_native_export_writes_the_search_targets_as_apply_search_targets_does(dbs, tmp_path):
    path = dbs["square8"]
    r = export_db(path, tmp_path / "soft.npz", include_unchecked=True, split_ratio=1.0, drop_forced=True, threads=1)
    export_db(path, tmp_path / "plain.npz", include_unchecked=True, split_ratio=1.0, drop_forced=True, threads=1,
              search_targets=False)
    counts = apply_search_targets(tmp_path / "plain.npz", path, tmp_path / "post.npz")
    soft, plain, post = load(tmp_path / "soft.npz"), load(tmp_path / "plain.npz"), load(tmp_path / "post.npz")
    assert "search_values" not in plain and np.array_equal(plain["policy_offsets"], np.arange(len(plain["ply"]) + 1))
    assert set(soft) == set(post)
    for k in post:
        if k != "metadata":
            assert soft[k].dtype == post[k].dtype and np.array_equal(soft[k], post[k], equal_nan=soft[k].dtype.kind == "f"), k
    has = soft["has_search_target"].astype(bool)
    assert r.search_samples == counts["with_targets"] == int(has.sum()) and 0 < has.sum() < len(has)
    assert any(f"search targets: {r.search_samples} of {len(has)} samples" in line for line in r.summary_lines())
    assert json.loads(str(soft["metadata"]))["search_targets"] == {"samples_with_targets": int(has.sum())}
    states = replayed_states(path, soft["game_ids"][::5], soft["ply"][::5])
    for k in range(len(has)):
        idx, val = entries(soft, k), entries(soft, k, "policy_values")
        played = plain["policy_indices"][k]
        assert abs(float(val.sum()) - 1) < 5e-3 and np.all(val >= 0)
        assert played in idx and np.isnan(soft["search_values"][k]) != has[k]
        if not has[k]:  # a game without targets keeps its one-hot policy
            assert idx.tolist() == [played] and val.tolist() == [1.0]
        elif k % 5 == 0:  # only the state's playable actions
            g = states[(int(soft["game_ids"][k]), int(soft["ply"][k]))]
            assert set(idx.tolist()) <= set(legal_action_indices(g).tolist())
    # --no-search-targets is today's export, byte for byte in every array
    for k in plain:
        if k != "metadata":
            assert np.array_equal(plain[k], load(tmp_path / "plain.npz")[k])


def test_native_shards_have_their_own_offsets(dbs, tmp_path):
    path = dbs["square8"]
    export_db(path, tmp_path / "one.npz", include_unchecked=True, split_ratio=1.0, threads=2)
    r = export_db(path, tmp_path / "part.npz", include_unchecked=True, split_ratio=1.0, threads=2,
                  max_samples_per_file=70)
    one = load(tmp_path / "one.npz")
    parts = [load(p) for p in r.files["train"]]
    assert len(parts) > 2
    for z in parts:
        o = z["policy_offsets"]
        assert o[0] == 0 and o[-1] == len(z["policy_indices"]) == len(z["policy_values"]) and len(o) == len(z["ply"]) + 1
    for key in ("policy_indices", "policy_values", "search_values", "has_search_target", "ply"):
        assert np.array_equal(np.concatenate([z[key] for z in parts]), one[key], equal_nan=key == "search_values")


def test_native_symmetries_follow_every_entry(dbs, tmp_path):
    path = dbs["square8"]
    export_db(path, tmp_path / "soft.npz", include_unchecked=True, split_ratio=1.0, with_symmetries=True, threads=1)
    export_db(path, tmp_path / "plain.npz", include_unchecked=True, split_ratio=1.0, with_symmetries=True, threads=1,
              search_targets=False)
    soft, plain = load(tmp_path / "soft.npz"), load(tmp_path / "plain.npz")
    sym = soft["policy_indices_sym"]
    n_sym = symmetries("square8").n
    assert sym.shape == (len(soft["policy_indices"]), n_sym)
    assert np.array_equal(sym[:, 0], soft["policy_indices"])
    o = soft["policy_offsets"]
    for k in range(len(soft["ply"])):
        idx = entries(soft, k)
        at = int(np.flatnonzero(idx == plain["policy_indices"][k])[0])
        # the played move's entry maps as the one-hot export maps the played move
        assert np.array_equal(sym[o[k] + at], plain["policy_indices_sym"][k])
    # every entry of some searched states, against the per-move mapping
    has = np.flatnonzero(soft["has_search_target"])[::40]
    states = replayed_states(path, soft["game_ids"][has], soft["ply"][has])
    for k in has:
        g = states[(int(soft["game_ids"][k]), int(soft["ply"][k]))]
        for e in range(o[k], o[k + 1]):
            move = decode_action(g, int(soft["policy_indices"][e]))
            assert [symmetric_action(g, move, t) for t in range(n_sym)] == sym[e].tolist()


@pytest.mark.parametrize("board", ["square8", "hex8"])
def test_upstream_export_writes_soft_policies_in_upstreams_indices(dbs, tmp_path, board):
    path = dbs[board]
    r = export_upstream(path, tmp_path / "soft.npz", include_unchecked=True, threads=1)
    export_upstream(path, tmp_path / "plain.npz", include_unchecked=True, threads=1, search_targets=False)
    export_upstream(path, tmp_path / "obj.npz", include_unchecked=True, threads=1, object_arrays=True)
    soft, plain, obj = load(tmp_path / "soft.npz"), load(tmp_path / "plain.npz"), load(tmp_path / "obj.npz", True)
    assert set(soft) == set(plain)
    for k in plain:  # everything but the policy (and the wall clock) as without targets
        if k not in ("policy_indices", "policy_values", "policy_indices_offsets", "policy_values_offsets",
                     "metadata", "data_checksums", "max_policy_index"):
            assert np.array_equal(soft[k], plain[k]), k
    assert np.array_equal(soft["policy_indices_offsets"], soft["policy_values_offsets"])
    size = int(soft["policy_size"])
    multi = 0
    for k in range(len(soft["values"])):
        idx = entries(soft, k, off="policy_indices_offsets")
        val = entries(soft, k, "policy_values", "policy_values_offsets")
        assert np.all((idx >= 0) & (idx < size)) and len(np.unique(idx)) == len(idx)  # valid, merged
        assert abs(float(val.sum()) - 1) < 1e-5 and plain["policy_indices"][k] in idx
        multi += len(idx) > 1
    assert multi > 0 and r.search_samples > 0
    assert int(soft["max_policy_index"]) == int(soft["policy_indices"].max())
    # the object-array file holds the same entries, and every file carries upstream's checksums of them
    assert obj["policy_indices"].shape == (len(soft["values"]),)
    o = soft["policy_indices_offsets"]
    for k in range(len(soft["values"])):
        assert np.array_equal(np.asarray(obj["policy_indices"][k], dtype=np.int32), soft["policy_indices"][o[k]:o[k + 1]])
    checks, obj_checks = json.loads(str(soft["data_checksums"])), json.loads(str(obj["data_checksums"]))
    for key in ("policy_indices", "policy_values"):
        assert checks[key] == obj_checks[key] == array_checksum(obj[key])
    assert {k for k in checks if checks[k] != obj_checks[k]} == {"metadata"}


def test_upstream_without_targets_is_unchanged(dbs, tmp_path):
    bare = tmp_path / "bare.db"
    shutil.copy(dbs["square8"], bare)
    with sqlite3.connect(bare) as conn:
        conn.execute("DROP TABLE search_targets")
    export_upstream(bare, tmp_path / "bare.npz", include_unchecked=True, threads=1)
    export_upstream(dbs["square8"], tmp_path / "off.npz", include_unchecked=True, threads=1, search_targets=False)
    a, b = load(tmp_path / "bare.npz"), load(tmp_path / "off.npz")
    assert list(a) == list(b)
    for k in a:
        if k not in ("metadata", "data_checksums"):  # the export's wall clock
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    ca, cb = (json.loads(str(z["data_checksums"])) for z in (a, b))
    assert {k for k in ca if ca[k] != cb[k]} <= {"metadata"} and ca.keys() == cb.keys()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ringrift.export", *args], capture_output=True, text=True)


def test_cli_summary_and_one_line_errors(dbs, tmp_path):
    p = run_cli("--db", str(dbs["hex8"]), "--output", str(tmp_path / "x.npz"), "--include-unchecked",
                "--split-ratio", "1", "--threads", "1")
    assert p.returncode == 0 and "search targets:" in p.stdout
    p = run_cli("--db", str(dbs["hex8"]), "--output", str(tmp_path / "y.npz"), "--include-unchecked",
                "--split-ratio", "1", "--threads", "1", "--no-search-targets")
    assert p.returncode == 0 and "search targets" not in p.stdout
    bare = tmp_path / "bare.db"
    with GameDB(bare) as db:
        run_selfplay(db, board="square8", num_games=1, seed=1, policy="random", max_moves=50, threads=1)
    p = run_cli("--db", str(bare), "--output", str(tmp_path / "z.npz"), "--include-unchecked", "--include-capped",
                "--search-targets")
    assert p.returncode != 0 and "no search targets" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    damage = {"num_moves = num_moves + 1": "search targets for",
              "policy_offsets = x'010203'": "reading the search targets of game",
              "policy_actions = CAST(x'ffffff7f' || substr(policy_actions, 5) AS BLOB)": "damaged"}
    for k, (change, says) in enumerate(damage.items()):
        broken = tmp_path / f"broken{k}.db"
        shutil.copy(dbs["hex8"], broken)
        with sqlite3.connect(broken) as conn:
            conn.execute(f"UPDATE search_targets SET {change}")
        for enc in ("native", "upstream"):
            out = tmp_path / f"b{k}_{enc}.npz"
            p = run_cli("--db", str(broken), "--output", str(out), "--include-unchecked", "--split-ratio", "1",
                        "--encoding", enc)
            assert p.returncode != 0 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
            assert not out.exists()


@pytest.mark.parametrize("counts", [[2, 2, 2], [1, 3, 2], [1, 1], []])
def test_streamed_policy_checksums_are_upstreams_for_any_entry_counts(counts):
    from ringrift.export.upstream import _float_texts, _int_texts, _object_policy, _PolicyChecksum

    counts = np.array(counts, dtype=np.int64)
    idx = np.arange(int(counts.sum()), dtype=np.int32) * 7
    val = (np.arange(int(counts.sum()), dtype=np.float32) + 1) / 10
    for flat, text in ((idx, _int_texts), (val, _float_texts)):
        whole = _object_policy(counts, flat)  # what upstream's exporter builds from per-sample arrays
        assert whole.shape == ((len(counts), int(counts[0])) if len(set(counts.tolist())) == 1 else
                               (len(counts),) if len(counts) else (0, 1))
        c = _PolicyChecksum(len(counts), text)
        for a in range(0, len(counts), 2):  # fed in chunks
            lo, hi = int(counts[:a].sum()), int(counts[:a + 2].sum())
            c.feed(counts[a:a + 2], flat[lo:hi])
        assert c.hexdigest() == array_checksum(whole)
