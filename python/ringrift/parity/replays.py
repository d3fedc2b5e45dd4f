"""Reading recorded games (schema ``ringrift-tsoracle/v1``) from JSON Lines files.

A *game source* is any iterable of :class:`RecordedGame`.  :func:`iter_games` is the
file source; another source (a database, say) only has to yield ``RecordedGame``
objects with ``data`` (or ``raw``) filled in and a ``source``/``line`` that name
where the game came from.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

SUFFIXES = (".jsonl", ".jsonl.gz")


class InputError(ValueError):
    """A recorded game could not be read or lacks a required field."""


@dataclass
class RecordedGame:
    """One recorded game, or the reason it could not be read.

    ``source`` and ``line`` (1-based) locate the game for messages.  Exactly one of
    ``data`` (the parsed record), ``raw`` (its JSON text, parsed lazily by
    :meth:`load` so that worker processes do the parsing) or ``error`` is set.
    """

    source: str
    line: int | None = None
    raw: str | None = None
    data: dict | None = None
    error: str | None = None

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def load(self) -> dict:
        """The parsed record; raises :class:`InputError` when it cannot be had."""
        if self.error is not None:
            raise InputError(self.error)
        if self.data is None:
            try:
                data = json.loads(self.raw if self.raw is not None else "")
            except ValueError as exc:
                raise InputError(f"bad JSON: {exc}") from None
            if not isinstance(data, dict):
                raise InputError(f"bad JSON: expected an object, got {type(data).__name__}")
            self.data, self.raw = data, None
        return self.data


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named directly are kept (any suffix); folders are searched recursively
    for ``*.jsonl`` and ``*.jsonl.gz``, in sorted order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)))
        else:
            out.append(p)
    return out


def iter_file(path: str | os.PathLike) -> Iterator[RecordedGame]:
    """The games of one file, one per non-blank line.  Read errors become
    ``RecordedGame(error=...)`` entries; a broken gzip stream ends the file."""
    path = Path(path)
    src = str(path)
    lineno = 0
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RecordedGame(src, lineno, error=f"not UTF-8 text: {exc}")
                    continue
                if text.strip():
                    yield RecordedGame(src, lineno, raw=text)
    except FileNotFoundError:
        yield RecordedGame(src, None, error="no such file")
    except (OSError, EOFError, zlib.error) as exc:
        yield RecordedGame(src, lineno + 1, error=f"cannot read ({type(exc).__name__}: {exc})")


def iter_games(paths: Iterable[str | os.PathLike]) -> Iterator[RecordedGame]:
    """Every game in ``paths`` (files or folders), in order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in expand_paths(paths):
        yield from iter_file(path)


STEP_FIELDS = ("n", "h", "p", "ph", "st")
RESULT_FIELDS = ("gameStatus", "winner", "reason", "finalHash")


def check_record(rec: dict) -> None:
    """Raise :class:`InputError` naming the first missing or ill-typed field."""
    for key, typ in (("initialState", dict), ("boardType", str), ("numPlayers", int),
                     ("moves", list), ("steps", list), ("result", dict)):
        if key not in rec:
            raise InputError(f"missing field '{key}'")
        if not isinstance(rec[key], typ):
            raise InputError(f"field '{key}' is not a {typ.__name__}")
    if len(rec["moves"]) != len(rec["steps"]):
        raise InputError(f"{len(rec['moves'])} moves but {len(rec['steps'])} steps")
    for i, (move, step) in enumerate(zip(rec["moves"], rec["steps"])):
        if not isinstance(move, dict):
            raise InputError(f"moves[{i}] is not an object")
        if not isinstance(step, dict):
            raise InputError(f"steps[{i}] is not an object")
        for key in STEP_FIELDS:
            if key not in step:
                raise InputError(f"steps[{i}] missing field '{key}'")
    for key in RESULT_FIELDS:
        if key not in rec["result"]:
            raise InputError(f"result missing field '{key}'")
