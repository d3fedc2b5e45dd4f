"""Files replaced whole: a reader sees the old file or the new one, never half of one.

The new content is written under a temporary name in the same folder, flushed to disk, then
renamed over the final name (a rename within a folder is atomic). On an error the temporary
file is removed and the old file stays as it was. The state file, the loop's records, the p2p
nodes' job and run records, checkpoints, ONNX models and search-target files are written so.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from pathlib import Path

_serial = itertools.count()  # temporary names unique across this process's threads too


def temp_beside(path: Path, suffix: str = "") -> Path:
    """A hidden temporary name next to ``path``, unique to this process and call; it ends in
    ``.tmp`` and then ``suffix`` (for writers that pick a format by the file's extension)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_serial)}.tmp{suffix}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | os.PathLike, *, durable: bool = True, suffix: str = ""):
    """Yields a temporary path to write the new content to. When the block ends without an
    error, that file is flushed to disk (``durable``: a crash right after the rename cannot
    leave an empty file under the final name) and renamed onto ``path``; otherwise it is removed."""
    path = Path(path)
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    """Replaces ``path`` with ``text`` (UTF-8)."""
    with replacing(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
