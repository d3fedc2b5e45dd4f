"""The export's deflate (ringrift.export.deflate, the writer's thread pool): every library writes
archives that plain ``np.load`` reads, the bytes do not depend on the number of threads, the
fallback libraries give the same arrays, and a bad RINGRIFT_DEFLATE is a one-line error. The
golden equality of the upstream encoding with several threads is in test_export_upstream.py."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from ringrift import _core
from ringrift.db import GameDB
from ringrift.export import export_db
from ringrift.export import deflate
from ringrift.export.writer import ShardedNpzWriter


def library(name: str) -> deflate.Deflate:
    try:
        return deflate.load(name)
    except ImportError:
        pytest.skip(f"deflate library {name} is not installed (pip install {name})")


def members_raw(path: Path) -> dict:
    """Each member's stored (compressed) bytes, read from its local header: what the archive holds."""
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as fh:
        for info in z.infolist():
            fh.seek(info.header_offset)
            head = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            out[info.filename] = (info.compress_type, info.CRC, fh.read(info.compress_size))
    return out


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as d:  # plain numpy, no pickle
        return {k: d[k] for k in d.files}


def write(tmp_path: Path, tag: str, lib, threads: int, data: np.ndarray) -> Path:
    w = ShardedNpzWriter(tmp_path, tag, {"a": (data.dtype, data.shape[1:]), "b": (np.uint8, ())}, threads=threads,
                         deflate=lib)
    for s in range(0, len(data), 1100):  # several chunks, the first two over 4 MiB: several pieces each
        w.append({"a": data[s:s + 1100], "b": np.full(len(data[s:s + 1100]), 7, np.uint8)})
    (path, rows), = w.finish(lambda part, num, rows: {"n": np.int64(rows)})
    assert rows == len(data)
    return path


@pytest.fixture(scope="module")
def planes() -> np.ndarray:
    """Mostly zeros with a few ones, like the feature planes; 3000 rows of 2.8 KB (8.4 MB)."""
    rng = np.random.default_rng(5)
    return (rng.random((3000, 700)) < 0.05).astype(np.float32)


@pytest.mark.parametrize("name", deflate.LIBRARIES)
def test_each_library_writes_what_np_load_reads_and_threads_do_not_change_bytes(name, planes, tmp_path):
    lib = library(name)
    one = write(tmp_path, f"{name}1", lib, 1, planes)
    three = write(tmp_path, f"{name}3", lib, 3, planes)
    with zipfile.ZipFile(one) as z:
        assert z.testzip() is None  # every member's CRC checks
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    d = load(one)
    assert np.array_equal(d["a"], planes) and np.all(d["b"] == 7) and int(d["n"]) == len(planes)
    assert members_raw(one) == members_raw(three)


def test_libraries_crc_combine_and_levels():
    rng = np.random.default_rng(2)
    for name in deflate.LIBRARIES:
        try:
            lib = deflate.load(name)
        except ImportError:
            continue
        for la, lb in ((0, 9), (5, 0), (77, 123457)):
            a, b = rng.bytes(la), rng.bytes(lb)
            assert lib.crc32_combine(lib.crc32(a), lib.crc32(b), lb) == zlib.crc32(a + b), name
            assert deflate.crc32_concat(zlib.crc32(a), zlib.crc32(b), lb) == zlib.crc32(a + b)
        assert zlib.decompress(lib.whole(a + b), -15) == a + b
        assert zlib.decompress(lib.whole(b""), -15) == b""
    assert deflate.choose("zlib:6").level == 6
    with pytest.raises(ValueError, match="zlib level 0"):
        deflate.choose("zlib:0")
    with pytest.raises(ValueError, match="unknown deflate library"):
        deflate.choose("brotli")


@pytest.fixture(scope="module")
def sq8_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("deflate") / "games.db"
    with GameDB(path) as db:
        batch = _core.selfplay_batch("square8", 2, 4, list(range(24)), "random", threads=2, max_moves=2000)
        db.insert_batch(batch, board="square8", num_players=2, seed=4, policy="random", engine_version="test",
                        host="test", max_moves=2000)
        db.set_parity_status([r[0] for r in db.conn.execute("SELECT id FROM games")], "ok")
    return path


def test_export_is_the_same_for_any_thread_count_and_library(sq8_db, tmp_path, monkeypatch):
    """Several chunks (chunk_games=5), train and validation: threads 1 and 3 write the same
    members byte for byte (metadata holds the time); the zlib fallback the same arrays. With
    threads, each large piece waits 0.1 s before it is deflated, so that a features buffer
    reused while a writer still reads it would show."""
    monkeypatch.delenv(deflate.ENV, raising=False)
    runs = {1: tmp_path / "t1" / "x.npz", 3: tmp_path / "t3" / "x.npz"}
    export_db(sq8_db, runs[1], threads=1, chunk_games=5, include_capped=True, seed=3)
    lib = deflate.choose()
    real = lib.piece_with_crc

    def late(data):
        if len(data) >= 256 << 10:
            time.sleep(0.1)
        return real(data)

    lib.piece_with_crc = late
    with monkeypatch.context() as m:
        m.setattr(deflate, "choose", lambda spec=None: lib)
        export_db(sq8_db, runs[3], threads=3, chunk_games=5, include_capped=True, seed=3)
    for split in ("x.npz", "x_val.npz"):
        a, b = members_raw(runs[1].parent / split), members_raw(runs[3].parent / split)
        assert set(a) == set(b)
        assert {k: v for k, v in a.items() if k != "metadata.npy"} == \
            {k: v for k, v in b.items() if k != "metadata.npy"}
    meta = json.loads(str(load(runs[1])["metadata"]))
    assert meta["deflate"] == deflate.choose().describe()
    monkeypatch.setenv(deflate.ENV, "zlib")
    out = tmp_path / "zlib" / "x.npz"
    export_db(sq8_db, out, threads=3, chunk_games=5, include_capped=True, seed=3)
    for split in ("x.npz", "x_val.npz"):
        want, got = load(runs[1].parent / split), load(out.parent / split)
        assert set(want) == set(got)
        for k in want:
            if k != "metadata":
                assert np.array_equal(want[k], got[k]), k
    assert json.loads(str(got["metadata"]))["deflate"].startswith("zlib ")


@pytest.mark.parametrize("value, pattern", [("brotli", "unknown deflate library"),
                                            ("zlib:x", "level after ':' must be a number"),
                                            ("isal:7", "isal level 7: expected 0..3")])
def test_bad_deflate_setting_is_a_one_line_error(sq8_db, tmp_path, value, pattern):
    env = dict(os.environ, **{deflate.ENV: value})
    r = subprocess.run([sys.executable, "-m", "ringrift.export", "--db", str(sq8_db), "--output",
                        str(tmp_path / "o.npz"), "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("ringrift-export: error:"), r.stderr
    assert pattern in lines[0] and deflate.ENV in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written
