"""Seed ranges: how a self-play target is cut into disjoint units of work and handed to hosts.

Game i of (board, players, policy, seed) is the same game wherever it is played, so the index
interval [0, N) can be cut into ranges [a, b) that any host plays independently; merging the
results (deduplicated by game identity) gives exactly the games of a single local run.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple


class Range(NamedTuple):
    """Game indices [start, end), ordered by (start, end). A NamedTuple, as the other records on
    the command line's start-up path: see ringrift/cli.py on dataclasses."""

    start: int
    end: int  # exclusive

    @property
    def count(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"

    @property
    def tag(self) -> str:
        return f"{self.start:09d}_{self.end:09d}"


def split(total: int, size: int) -> list[Range]:
    return list(iter_split(total, size))


def iter_split(total: int, size: int):
    """The ranges of [0, total) of `size` games each (the last may be shorter), lazily."""
    if size < 1:
        raise ValueError("range size must be >= 1")
    check_range_count(total, size)
    return (Range(a, min(a + size, total)) for a in range(0, total, size))


# Game indices and seeds are stored as SQLite INTEGERs and passed to the engine as int64:
# both must lie in 0 .. 2**63 - 1. A request beyond that is refused where it is made.
MAX_INDEX = 2**63 - 1
MAX_SEED = 2**63 - 1
# The native runners play game indices below 2**62 (csrc/bindings: an index run's end must fit
# in an int64), so one run's target is at most this many games.
MAX_GAMES = 2**62
MAX_GAMES_WHY = "2^62: the native runners' game indices"  # said where a count or index passes it
# No more seed ranges than this per run (each is a state entry, a worker and a DB): a target
# beyond it needs larger ranges, so the plan stays proportional to the work.
MAX_RANGES = 10_000


# Index runs in one index-set field of a P2P request ('skip', 'indices'): the node refuses more.
MAX_SPEC_RUNS = 20_000


def coarsen(indices: "IndexSet", max_runs: int = MAX_SPEC_RUNS) -> "IndexSet":
    """A subset of `indices` with at most `max_runs` runs: the longest ones. For a skip list,
    where leaving an index out only means that game is played again (and merged as a
    duplicate), never that one is lost."""
    runs = indices.runs
    if len(runs) <= max_runs:
        return indices
    keep = sorted(sorted(runs, key=lambda r: r[0] - r[1])[:max_runs])
    return IndexSet._of(keep)


def check_range_count(total: int, size: int, what: str = "games_per_worker") -> None:
    """ValueError when [0, total) cut into ranges of `size` gives more than MAX_RANGES ranges."""
    if size >= 1 and -(-total // size) > MAX_RANGES:
        raise ValueError(f"{total} games in ranges of {size} make more than {MAX_RANGES} ranges: "
                         f"raise {what} to at least {-(-total // MAX_RANGES)}")


class IndexSet:
    """A set of game indices kept as sorted, disjoint, non-adjacent half-open runs [a, b).

    Memory and time of every operation are proportional to the number of runs, never to the
    number of indices: [0, 10**18) is one run. Text form: inclusive runs, '0-99,150,200-299'.
    Immutable; the operators return new sets."""

    __slots__ = ("_runs", "_count")

    def __init__(self, runs=()):
        out: list[tuple[int, int]] = []
        items = [(int(a), int(b)) for a, b in runs if b > a]
        if any(items[k][0] < items[k - 1][0] for k in range(1, len(items))):
            items.sort()  # (given in order, as every spec this code writes is, no sort is needed)
        for a, b in items:
            if out and a <= out[-1][1]:
                if b > out[-1][1]:
                    out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        self._runs = out
        self._count = None

    @classmethod
    def _of(cls, runs: list) -> "IndexSet":
        s = cls.__new__(cls)
        s._runs = runs  # already normalised
        s._count = None
        return s

    @classmethod
    def interval(cls, start: int, end: int) -> "IndexSet":
        return cls._of([(int(start), int(end))] if end > start else [])

    @classmethod
    def from_indices(cls, indices) -> "IndexSet":
        """From individual indices (a set, a list, a range): O(n log n) in how many are given."""
        if isinstance(indices, IndexSet):
            return indices
        if isinstance(indices, range) and indices.step == 1:
            return cls.interval(indices.start, indices.stop)
        out: list[tuple[int, int]] = []
        for i in sorted(set(int(i) for i in indices)):
            if out and out[-1][1] == i:
                out[-1] = (out[-1][0], i + 1)
            else:
                out.append((i, i + 1))
        return cls._of(out)

    @classmethod
    def parse(cls, spec: str, *, max_index: int = MAX_INDEX, max_runs: int | None = None) -> "IndexSet":
        """'0-99,150' -> the set; ValueError naming the bad part. O(len(spec))."""
        if not isinstance(spec, str):
            raise ValueError("index runs must be a string like 0-99,150")
        if not spec.strip():
            return cls._of([])
        parts = spec.split(",")
        if max_runs is not None and len(parts) > max_runs:
            raise ValueError(f"more than {max_runs} index runs")
        return cls(cls.parse_parts(parts, max_index=max_index))

    @staticmethod
    def parse_parts(parts: list[str], *, max_index: int = MAX_INDEX, into: list | None = None) -> list:
        """The half-open runs of the comma-separated parts of a spec ('5', '7-9'). With `into`
        (a list of runs built by earlier calls) the parts must come in ascending order and are
        merged into it as they come, so that IndexSet.from_ordered_runs(into) needs no pass of
        its own: a long spec can be parsed slice by slice."""
        runs = [] if into is None else into
        for part in parts:
            part = part.strip()
            a, sep, b = part.partition("-")
            try:
                if len(part) > 40:
                    raise ValueError
                lo = int(a, 10)
                hi = int(b, 10) if sep else lo
            except ValueError:
                raise ValueError(f"bad index run {part[:40]!r} (expected N or N-M)") from None
            if lo < 0 or hi < lo:
                raise ValueError(f"bad index run {part!r}")
            if hi > max_index:
                raise ValueError(f"index {hi} is beyond the largest game index {max_index}")
            if into is not None and runs:
                last = runs[-1]
                if lo < last[0]:
                    raise ValueError(f"index run {part!r} is out of ascending order")
                if lo <= last[1]:
                    if hi + 1 > last[1]:
                        runs[-1] = (last[0], hi + 1)
                    continue
            runs.append((lo, hi + 1))
        return runs

    @classmethod
    def from_ordered_runs(cls, runs: list) -> "IndexSet":
        """From runs that parse_parts(..., into=runs) built (ascending, merged): O(1)."""
        return cls._of(runs)

    # -- queries ---------------------------------------------------------------------------
    @property
    def runs(self) -> list[tuple[int, int]]:
        return list(self._runs)

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = sum(b - a for a, b in self._runs)
        return self._count

    def __bool__(self) -> bool:
        return bool(self._runs)

    def __eq__(self, other) -> bool:
        return isinstance(other, IndexSet) and self._runs == other._runs

    def __hash__(self):
        return hash(tuple(self._runs))

    @property
    def min(self) -> int:
        return self._runs[0][0]

    @property
    def max(self) -> int:
        return self._runs[-1][1] - 1

    def __contains__(self, i) -> bool:
        k = bisect.bisect_right(self._runs, (i, float("inf"))) - 1
        return k >= 0 and self._runs[k][0] <= i < self._runs[k][1]

    def covers(self, start: int, end: int) -> bool:
        """Every index of [start, end) is in the set."""
        if end <= start:
            return True
        k = bisect.bisect_right(self._runs, (start, float("inf"))) - 1
        return k >= 0 and self._runs[k][0] <= start and end <= self._runs[k][1]

    def __iter__(self):
        for a, b in self._runs:
            yield from range(a, b)

    def chunks(self, size: int):
        """The indices in ascending lists of at most `size` (only one list exists at a time)."""
        buf: list[int] = []
        for a, b in self._runs:
            while a < b:
                take = min(b - a, size - len(buf))
                buf.extend(range(a, a + take))
                a += take
                if len(buf) == size:
                    yield buf
                    buf = []
        if buf:
            yield buf

    def __str__(self) -> str:
        return ",".join(str(a) if b == a + 1 else f"{a}-{b - 1}" for a, b in self._runs)

    def __repr__(self) -> str:
        return f"IndexSet({str(self)!r})"

    # -- set algebra (linear in runs) --------------------------------------------------------
    def __or__(self, other: "IndexSet") -> "IndexSet":
        if len(self._runs) == 1 and len(other._runs) > 1:
            self, other = other, self
        if len(other._runs) == 1 and self._runs:
            return self._with_run(*other._runs[0])  # a finished range joining the present ones
        return IndexSet(self._runs + other._runs)

    def _with_run(self, a: int, b: int) -> "IndexSet":
        """self | [a, b): a bisection and list slices, not a pass over every run."""
        runs = self._runs
        lo = hi = bisect.bisect_left(runs, (a, a))
        if lo > 0 and runs[lo - 1][1] >= a:
            lo -= 1
            a = runs[lo][0]
            b = max(b, runs[lo][1])
        while hi < len(runs) and runs[hi][0] <= b:
            b = max(b, runs[hi][1])
            hi += 1
        return IndexSet._of(runs[:lo] + [(a, b)] + runs[hi:])

    def _first_after(self, start: int) -> int:
        """The position of the first run that ends after `start`."""
        k = bisect.bisect_right(self._runs, (start, float("inf")))
        return k - 1 if k > 0 and self._runs[k - 1][1] > start else k

    def __and__(self, other: "IndexSet") -> "IndexSet":
        if len(self._runs) > len(other._runs):
            self, other = other, self
        if not self._runs:
            return self
        x, y = self._runs, other._runs
        out, i, j = [], 0, other._first_after(x[0][0])  # linear in the smaller set's runs
        while i < len(x) and j < len(y):
            a, b = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
            if a < b:
                out.append((a, b))
            if x[i][1] < y[j][1]:
                i += 1
            else:
                j += 1
        return IndexSet._of(out)

    def __sub__(self, other: "IndexSet") -> "IndexSet":
        if not other._runs or not self._runs or other._runs[-1][1] <= self._runs[0][0] \
                or other._runs[0][0] >= self._runs[-1][1]:
            return self  # nothing in common (the same object, its count known already)
        out, j = [], 0
        y = other._runs
        for a, b in self._runs:
            if j < len(y) and y[j][1] <= a:
                j = other._first_after(a)  # skip other's runs before this one by bisection
            k = j
            while k < len(y) and y[k][0] < b:
                if y[k][0] > a:
                    out.append((a, y[k][0]))
                a = max(a, y[k][1])
                if a >= b:
                    break
                k += 1
            if a < b:
                out.append((a, b))
        return IndexSet._of(out)

    def within(self, start: int, end: int) -> "IndexSet":
        """The indices in [start, end): two bisections and a slice."""
        if end <= start or not self._runs:
            return IndexSet._of([])
        i = self._first_after(start)
        j = bisect.bisect_left(self._runs, (end, end))
        out = self._runs[i:j]
        if out:
            if out[0][0] < start:
                out[0] = (start, out[0][1])
            if out[-1][1] > end:
                out[-1] = (out[-1][0], end)
        return IndexSet._of(out)


def index_runs(rows) -> IndexSet:
    """An IndexSet from (index,) rows (SQL results) in ascending order, built run by run (no per-game set)."""
    runs: list = []
    for (i,) in rows:
        if runs and runs[-1][1] >= i:
            runs[-1][1] = max(runs[-1][1], i + 1)
        else:
            runs.append([i, i + 1])
    return IndexSet(runs)


def encode_indices(indices) -> str:
    """Indices as a compact list of inclusive runs: [0, 1, 2, 5] -> '0-2,5'."""
    return str(IndexSet.from_indices(indices))


def decode_indices(spec: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]. Materialises every index: for small sets only (tests, tools);
    code that takes a spec from a request uses IndexSet.parse."""
    return list(IndexSet.parse(spec))


def slot_cycle(hosts) -> list[str]:
    """Host names in the order ranges are dealt: one pass per job slot, so a host with
    max_parallel_jobs=k appears k times per cycle."""
    cycle = []
    depth = max((h.max_parallel_jobs for h in hosts), default=0)
    for level in range(depth):
        cycle.extend(h.name for h in hosts if h.max_parallel_jobs > level)
    return cycle


def assign(ranges: list[Range], hosts) -> dict[Range, str]:
    """Static assignment of every range of the run to a host, by the range's position in the
    whole run (not only the unfinished ones), so a resumed run sends an unfinished range back
    to the host that holds its partial work."""
    cycle = slot_cycle(hosts)
    if not cycle:
        return {}
    return {r: cycle[k % len(cycle)] for k, r in enumerate(ranges)}
