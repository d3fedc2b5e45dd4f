"""Phase 1: batched self-play into the game database."""

from .runner import SelfplayResult, run_selfplay

__all__ = ["SelfplayResult", "run_selfplay"]
