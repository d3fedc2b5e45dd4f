"""Gumbel search over exact game states (docs/search.md): the C++ trees of ``csrc/search/`` and
their Python driver."""

from .gumbel import LEAF_EVALUATORS, GumbelSearch, SearchResult, uniform_evaluator

__all__ = ["LEAF_EVALUATORS", "GumbelSearch", "SearchResult", "uniform_evaluator"]
