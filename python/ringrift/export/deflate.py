"""The deflate library behind the ``.npz`` writer: ISA-L (``isal``) when installed, else
zlib-ng (``zlib-ng``), else the standard library's zlib.

All three write standard raw deflate streams that ``np.load`` (``zipfile`` + zlib) reads; they
differ in speed and size. On the export's float32 planes (square8, one core of the 2-core dev
box): ISA-L level 1 deflates about 700k samples/s at about 125 bytes/sample, zlib-ng level 1
about 250k samples/s at about 210, zlib level 1 about 80k samples/s at about 160 (zlib level 6,
``np.savez_compressed``'s, about 30k samples/s at about 60). ``isal`` is a dependency on the
platforms it has wheels for; elsewhere the writer falls back, still correct, slower
(``docs/npz_format.md``, "Compression").

The bytes of a file depend on the library (and its version), never on the number of threads:
each piece of a column is deflated on its own. ``RINGRIFT_DEFLATE=LIBRARY[:LEVEL]`` (``isal``,
``zlib-ng`` or ``zlib``) picks one: ``zlib:6`` writes files as small as ``np.savez_compressed``'s
at its speed; benchmarks and tests use it to compare.
"""

from __future__ import annotations

import os
import zlib

#: the preference order when RINGRIFT_DEFLATE is not set
LIBRARIES = ("isal", "zlib-ng", "zlib")
#: level per library: the fastest level that still finds matches (ISA-L 0 is Huffman-only-like
#: on these planes: 40% bigger at the same speed)
LEVELS = {"isal": 1, "zlib-ng": 1, "zlib": 1}
ENV = "RINGRIFT_DEFLATE"

# ---- CRC-32 of a concatenation (for zlib, which has no crc32_combine in Python) -------------------
# CRC-32 (reflected, polynomial 0xEDB88320) is linear over GF(2): appending n zero bytes maps the
# CRC register through a fixed 32x32 bit matrix Z^n, and crc(A + B) = Z^len(B) (crc(A)) xor crc(B).
# Matrices are stored as 32 column bit masks; _ZERO_POW[k] is Z^(2^k) (one zero byte = 8 bits).

_CRC_POLY = 0xEDB88320


def _mat_vec(mat: list, vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _mat_mul(a: list, b: list) -> list:
    return [_mat_vec(a, col) for col in b]


def _zero_powers(count: int = 64) -> list:
    m = [_CRC_POLY] + [1 << (i - 1) for i in range(1, 32)]  # one zero bit: shift right, feed back
    for _ in range(3):  # 8 zero bits
        m = _mat_mul(m, m)
    out = [m]
    for _ in range(count - 1):
        out.append(_mat_mul(out[-1], out[-1]))
    return out


_ZERO_POW: list = []


def crc32_concat(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC-32 of A + B from crc32(A), crc32(B) and len(B) (pure Python; any length < 2^64)."""
    if not _ZERO_POW:
        _ZERO_POW.extend(_zero_powers())
    reg, k = crc_a, 0
    while len_b:
        if len_b & 1:
            reg = _mat_vec(_ZERO_POW[k], reg)
        len_b >>= 1
        k += 1
    return reg ^ crc_b


# ---- the libraries --------------------------------------------------------------------------------

class Deflate:
    """One library at one level: raw deflate pieces that concatenate, CRC-32 and its combination."""

    def __init__(self, name: str, module, level: int, version: str):
        self.name, self.module, self.level, self.version = name, module, level, version
        self.crc32 = module.crc32
        self.crc32_combine = getattr(module, "crc32_combine", crc32_concat)

    def piece(self, data) -> bytes:
        """``data`` deflated as a non-final part of a stream, ended on a byte boundary (sync
        flush): pieces concatenate into one stream, closed by :data:`END`."""
        m = self.module
        c = m.compressobj(self.level, m.DEFLATED, -15)
        return c.compress(data) + c.flush(m.Z_SYNC_FLUSH)

    def piece_with_crc(self, data) -> tuple[bytes, int]:
        return self.piece(data), self.crc32(data)

    def whole(self, data) -> bytes:
        """``data`` as one complete raw deflate stream."""
        return self.piece(data) + END if len(data) else END

    def describe(self) -> str:
        return f"{self.name} {self.version} level {self.level}"


#: an empty final block (fixed Huffman, end of block): closes a stream of sync-flushed pieces
END = zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


#: the levels each library accepts (ISA-L has 0-3; zlib and zlib-ng 1-9: 0 would store)
_LEVEL_RANGE = {"isal": range(0, 4), "zlib-ng": range(1, 10), "zlib": range(1, 10)}


def load(name: str, level: int | None = None) -> Deflate:
    """The library ``name`` (one of :data:`LIBRARIES`) at ``level`` (default :data:`LEVELS`);
    ImportError when it is not installed."""
    if name not in LIBRARIES:
        raise ValueError(f"{name!r}: unknown deflate library (expected one of {', '.join(LIBRARIES)})")
    level = LEVELS[name] if level is None else int(level)
    if level not in _LEVEL_RANGE[name]:
        r = _LEVEL_RANGE[name]
        raise ValueError(f"{name} level {level}: expected {r.start}..{r.stop - 1}")
    if name == "isal":
        from isal import __version__ as version, isal_zlib as module
    elif name == "zlib-ng":
        from zlib_ng import __version__ as version, zlib_ng as module
    else:
        module, version = zlib, zlib.ZLIB_RUNTIME_VERSION
    return Deflate(name, module, level, version)


def choose(spec: str | None = None) -> Deflate:
    """``spec`` (``LIBRARY`` or ``LIBRARY:LEVEL``), else ``$RINGRIFT_DEFLATE``, else the first
    installed of :data:`LIBRARIES` at its default level. A library asked for by name that is
    not installed is an ImportError (one line), not a fallback; a bad spec a ValueError."""
    spec = spec or os.environ.get(ENV) or None
    if spec is not None:
        name, _, level = spec.strip().partition(":")
        try:
            lvl = int(level) if level else None
        except ValueError:
            raise ValueError(f"{ENV}={spec!r}: the level after ':' must be a number") from None
        try:
            return load(name, lvl)
        except ValueError as exc:
            raise ValueError(f"{ENV}={spec!r}: {exc}") from None
        except ImportError:
            raise ImportError(f"{ENV}={spec}: the {name} library is not installed (pip install {name})") from None
    for lib in LIBRARIES:
        try:
            return load(lib)
        except ImportError:
            continue
    raise AssertionError("zlib is always there")  # pragma: no cover


__all__ = ["END", "ENV", "LEVELS", "LIBRARIES", "Deflate", "choose", "crc32_concat", "load"]
