"""The value-target spec of training (``outcome``, ``search``, ``mix:F``) and the data error, in a
module without numpy: the pipeline's config check reads the spec on every command, and importing
the data loader for it cost 60 ms of start-up.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data set that cannot be trained on; the message says which file and why."""


VALUE_TARGETS = "outcome, search or mix:F with 0 <= F <= 1"


def parse_value_target(spec: str) -> float:
    """The weight F of the search's root value in the value target (docs/search.md, "Value targets"):
    ``outcome`` = 0 (the game's result only), ``search`` = 1, ``mix:F`` = F. The mover's target is
    ``(1 - F) * outcome + F * search_value``; another seat's is ``(1 - F) * its outcome + F * (-search_value
    / (players - 1))``. Samples without a search value (NaN) keep their outcome."""
    s = str(spec).strip()
    if s == "outcome":
        return 0.0
    if s == "search":
        return 1.0
    if s.startswith("mix:"):
        try:
            f = float(s[4:])
        except ValueError:
            f = float("nan")
        if 0.0 <= f <= 1.0:
            return f
    raise DataError(f"value target {spec!r}: expected {VALUE_TARGETS}")
