"""Gumbel search over exact game states (docs/search.md): the C++ trees of ``csrc/search/`` and
their Python driver.

The driver's names load on first use (PEP 562), so importing ``ringrift.search.spec`` to check
a policy name does not bring numpy into a process that never searches."""

__all__ = ["LEAF_EVALUATORS", "GumbelSearch", "SearchResult", "uniform_evaluator"]


def __getattr__(name):
    if name in __all__:
        from . import gumbel

        return getattr(gumbel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
