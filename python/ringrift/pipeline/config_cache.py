"""A cache of validated config files, so that a command whose config and hosts files have not
changed starts without PyYAML.

Importing PyYAML and composing two small files cost about 30-40 ms of CPU per command on a
2-core VM: a quarter of a one-game `ringrift-pipeline run`, and a fifth of the serial start-up
that the self-play benchmark's main command pays. What validation returns (the checked values
and the line of each key, for later messages) depends only on the file's text and on the code
that validates it, so an entry holds both and is used only when both are the same: the text
compared in full, the code by the size and modification time of each of ``VALIDATOR_SOURCES``.
Any edit to either misses the entry and validates the file again. Nothing here is imported
that the command would not import anyway (no hashlib, no tempfile): a hit costs a stat per
source and one small JSON read.

One JSON file per kind of file and text (named by a checksum of both: what validation returns
does not depend on where the file lies, so a copy of the repo's config/ hits too), written
beside and then moved into place (os.replace); past MAX_ENTRIES files the oldest go. A cache
that cannot be read or written costs a normal load, never an error: it is only a shortcut. Only
values that survive JSON exactly (same types, same values) are cached.

Folder: ``RINGRIFT_CONFIG_CACHE`` (``off`` turns the cache off), else
``$XDG_CACHE_HOME/ringrift/config``, else ``~/.cache/ringrift/config``.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

ENV = "RINGRIFT_CONFIG_CACHE"
FORMAT = 1
# Far above an entry of any real file (config files are refused above 1 MiB: config.MAX_FILE_BYTES).
MAX_ENTRY_BYTES = 8 << 20
# Entries kept (each a few KB): the texts a user switches between, not every edit ever made.
MAX_ENTRIES = 64

# The modules whose code decides what validation accepts and returns: the schemas (config.py),
# the schema parts they import (loop.py, train_phase.py), the board and policy names
# (ringrift/__init__.py) and the gumbel policy parser (search/spec.py). A module added to that
# chain must be added here, or its changes would leave stale entries in use.
_PACKAGE = Path(__file__).resolve().parents[1]
VALIDATOR_SOURCES = ("pipeline/config.py", "pipeline/loop.py", "pipeline/train_phase.py", "search/spec.py",
                     "__init__.py")


def cache_dir() -> Path | None:
    """The cache's folder, or None when RINGRIFT_CONFIG_CACHE is 'off'."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return None if env.lower() == "off" else Path(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ringrift" / "config"


def _code() -> list | None:
    """[source, size, mtime_ns] of each validator source; None when one cannot be read."""
    out = []
    for rel in VALIDATOR_SOURCES:
        try:
            st = os.stat(_PACKAGE / rel)
        except OSError:
            return None
        out.append([rel, st.st_size, st.st_mtime_ns])
    return out


def _entry_path(folder: Path, what: str, text: str) -> Path:
    # Two texts with the same checksum share a file and only miss each other's entries.
    return folder / f"{what.replace(' ', '_')}-{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}.json"


def _prune(folder: Path, keep: Path) -> None:
    """Remove the least recently written entries past MAX_ENTRIES, never `keep` (the one just
    written: entries written within one clock tick share a time). Best effort."""
    try:
        entries = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(folder)
                   if e.name.endswith(".json") and e.name != keep.name]
    except OSError:
        return
    for _, old in sorted(entries)[:max(0, len(entries) + 1 - MAX_ENTRIES)]:
        try:
            os.unlink(old)
        except OSError:
            pass


def _same(a, b) -> bool:
    """Equal values of the same types all the way down (1, 1.0 and True differ; so do a tuple
    and a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def lookup(what: str, text: str):
    """(values, lines) validated from `text` (a file read as `what`) by this code, or None when no
    such entry is kept."""
    folder, code = cache_dir(), _code()
    if folder is None or code is None:
        return None
    try:
        with open(_entry_path(folder, what, text), "rb") as fh:
            raw = fh.read(MAX_ENTRY_BYTES + 1)
        if len(raw) > MAX_ENTRY_BYTES:
            return None
        entry = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("lines"), dict) or "values" not in entry:
        return None
    if (entry.get("format"), entry.get("what"), entry.get("text"), entry.get("code")) != (FORMAT, what, text, code):
        return None
    return entry["values"], entry["lines"]


def store(what: str, text: str, values, lines: dict) -> bool:
    """Keep (values, lines) validated from `text`; returns whether an entry was written. Values
    that JSON would change (a tuple, a date, a non-string key, NaN) are not kept."""
    folder, code = cache_dir(), _code()
    if folder is None or code is None:
        return False
    entry = {"format": FORMAT, "what": what, "text": text, "code": code, "values": values, "lines": lines}
    try:
        data = json.dumps(entry, allow_nan=False)
        back = json.loads(data)
    except (TypeError, ValueError, RecursionError):
        return False
    if len(data) > MAX_ENTRY_BYTES or not (_same(back["values"], values) and _same(back["lines"], lines)):
        return False
    target = _entry_path(folder, what, text)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False
    _prune(folder, target)
    return True
