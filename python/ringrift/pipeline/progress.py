"""Progress reporting for long phases: a live bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """Call with (done, total, rate). On a TTY redraws one line; otherwise prints a plain line
    at most every `interval` seconds (and at the end)."""

    def __init__(self, label: str, stream=None, interval: float = 5.0, unit: str = "games"):
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.unit = unit
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, rate: float) -> None:
        now = time.monotonic()
        finished = done >= total
        eta = (total - done) / rate if rate > 0 else 0.0
        if self.tty:
            width = 30
            filled = int(width * done / total) if total else width
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {self.unit} "
                              f"{rate:,.0f} {self.unit}/s ETA {_fmt_eta(eta)}  ")
            if finished:
                self.stream.write("\n")
            self.stream.flush()
            self._drawn = not finished
        elif finished or now - self._last >= self.interval:
            self._last = now
            pct = 100.0 * done / total if total else 100.0
            self.stream.write(f"{self.label}: {done}/{total} {self.unit} ({pct:.0f}%), "
                              f"{rate:,.0f} {self.unit}/s, ETA {_fmt_eta(eta)}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
