"""One-line TypeErrors for calls that the compiled core cannot match to a signature.

pybind11 answers a call whose arguments fit none of a function's signatures (a str where an int
is due, one argument too many) with a TypeError of four or more lines: a header, each signature,
a blank line, the arguments it was given. Everything else at the Python boundary says what is
wrong in one line (checked_args.h, json_io.py), so the public classes' methods rethrow that
TypeError as one line: the function, the signatures it takes and what it got. Any other
exception, and every call that matches, passes through untouched.

The wrapper is a Python function around the compiled method: about 0.1 µs a call, against
0.5 µs or more for most of these methods (legal_moves() about 30 µs). The compiled module's own
functions (`ringrift._core.*` and its `export` and `upstream` submodules) are wrapped the same
way when `ringrift` is imported; a loop that calls one of them once per move can take the
compiled function itself with `raw()`.
"""

from __future__ import annotations

import functools
import re

# What pybind11's dispatcher writes when no signature matches (pybind11/pybind11.h).
_NO_MATCH = ("incompatible function arguments", "incompatible constructor arguments")
# "1. (self: ringrift._core.Game, x: int) -> int" or "1. ringrift._core.Move(type: str, ...)"
_SIGNATURE = re.compile(r"^\d+\.\s*(?:[\w.]+(?=\())?(\(.*)$")
_SELF = re.compile(r"^\(self: [\w.]+(?:, )?")


def one_line(message: str, name: str, self_repr: str | None = None) -> str | None:
    """pybind11's no-matching-signature message as one line naming `name` (the arguments it
    got without `self_repr`, the receiver's repr, that a method's message starts with), or None
    when `message` is another TypeError."""
    if not any(k in message for k in _NO_MATCH):
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    signatures = [_SELF.sub("(", m.group(1)) for m in map(_SIGNATURE.match, lines) if m]
    got = next((line[len("Invoked with:"):].strip() for line in lines if line.startswith("Invoked with:")), "")
    if self_repr and got.startswith(self_repr):
        got = got[len(self_repr):].lstrip(", ")
    return f"{name}(): incompatible arguments: takes {' or '.join(signatures) or 'other arguments'}; got ({got})"


def _wrapped(method, name: str, bound: bool):
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except TypeError as exc:
            text = one_line(str(exc), name, repr(args[0]) if bound and args else None)
            if text is None:
                raise
            raise TypeError(text) from None

    return call


def compiled_methods(cls, base) -> list[str]:
    """The public methods `cls` takes from the compiled class `base` as they are (a method `cls`
    defines itself checks its own arguments)."""
    return [n for n in dir(base) if not n.startswith("_") and n not in cls.__dict__
            and type(getattr(base, n)).__name__ == "instancemethod"]  # pybind11's methods; not static ones


def one_line_type_errors(cls, class_name: str, names) -> None:
    """Replace each of `names` on `cls` by the same method with one-line TypeErrors, named
    `class_name` (the constructor) or `class_name.method`."""
    for n in names:
        label = class_name if n == "__init__" else f"{class_name}.{n}"
        setattr(cls, n, _wrapped(getattr(cls, n), label, bound=n != "__init__"))


def one_line_module_errors(module, prefix: str) -> None:
    """Replace every public compiled function of `module` by the same function with one-line
    TypeErrors, named `prefix` + its name (e.g. `_core.export.action_space`). Wrapping twice
    leaves one wrapper."""
    for n, fn in list(vars(module).items()):
        if not n.startswith("_") and type(fn).__name__ == "builtin_function_or_method":
            setattr(module, n, _wrapped(fn, prefix + n, bound=False))


def raw(fn):
    """The compiled function under a one-line-error wrapper (the function itself if it has none):
    for loops that call it once per move and pass it arguments that always fit."""
    return getattr(fn, "__wrapped__", fn)
