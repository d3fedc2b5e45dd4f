"""Seed ranges: how a self-play target is cut into disjoint units of work and handed to hosts.

Game i of (board, players, policy, seed) is the same game wherever it is played, so the index
interval [0, N) can be cut into ranges [a, b) that any host plays independently; merging the
results (deduplicated by game identity) gives exactly the games of a single local run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Range:
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
    if size < 1:
        raise ValueError("range size must be >= 1")
    return [Range(a, min(a + size, total)) for a in range(0, total, size)]


def encode_indices(indices) -> str:
    """Sorted indices as a compact list of inclusive runs: [0, 1, 2, 5] -> '0-2,5'."""
    out = []
    items = sorted(set(int(i) for i in indices))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


def decode_indices(spec: str) -> list[int]:
    out: list[int] = []
    if not spec.strip():
        return out
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if lo < 0 or hi < lo:
                raise ValueError(f"bad index run {part!r}")
            out.extend(range(lo, hi + 1))
        else:
            v = int(part)
            if v < 0:
                raise ValueError(f"negative index {v}")
            out.append(v)
    return sorted(set(out))


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
