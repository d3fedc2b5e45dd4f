"""ringrift.atomic: files replaced whole, on real files in a temporary folder."""

from __future__ import annotations

import os

import pytest

from ringrift import atomic


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic.write_text(path, "first")
    atomic.write_text(path, "second é")
    assert path.read_text(encoding="utf-8") == "second é"
    assert _names(tmp_path) == ["state.json"]


def test_an_error_while_writing_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic.replacing(path) as tmp:
            tmp.write_text("half of the new")
            assert tmp.exists() and tmp.parent == tmp_path and tmp.name.startswith(".run.json.")
            raise RuntimeError("half-way")
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["run.json"]
    # a block that writes nothing fails at the fsync, and changes nothing either
    with pytest.raises(FileNotFoundError):
        with atomic.replacing(path):
            pass
    assert path.read_text() == "old" and _names(tmp_path) == ["run.json"]


def test_a_rename_that_fails_removes_the_temporary(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "x").write_text("keeps the folder non-empty")
    with pytest.raises(OSError):
        atomic.write_text(target, "cannot replace a folder")
    assert _names(tmp_path) == ["taken"] and _names(target) == ["x"]


def test_temporary_names_are_hidden_unique_and_keep_a_suffix(tmp_path):
    path = tmp_path / "plot.png"
    names = {atomic.temp_beside(path, ".png").name for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.startswith(".plot.png.") and name.endswith(".tmp.png") and str(os.getpid()) in name
    assert atomic.temp_beside(path).name.endswith(".tmp")
    with atomic.replacing(path, suffix=".png", durable=False) as tmp:
        assert tmp.suffix == ".png"
        tmp.write_bytes(b"\x89PNG")
    assert path.read_bytes() == b"\x89PNG" and _names(tmp_path) == ["plot.png"]
