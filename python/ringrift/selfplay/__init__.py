"""Phase 1: batched self-play into the game database, and a batch environment for outside policies."""

from .batch_env import BatchEnv, IllegalActionError
from .env_recorder import EnvRecorder
from .runner import SelfplayResult, run_selfplay

__all__ = ["BatchEnv", "EnvRecorder", "IllegalActionError", "SelfplayResult", "run_selfplay"]
