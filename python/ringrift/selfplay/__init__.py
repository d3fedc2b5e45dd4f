"""Phase 1: batched self-play into the game database, and a batch environment for outside policies.

The names load on first use (PEP 562): the CPU self-play path (``runner``) needs no numpy, and a
console script that plays into the DB starts without it."""

_WHERE = {"BatchEnv": "batch_env", "IllegalActionError": "batch_env", "EnvRecorder": "env_recorder",
          "SelfplayResult": "runner", "run_selfplay": "runner"}

__all__ = ["BatchEnv", "EnvRecorder", "IllegalActionError", "SelfplayResult", "run_selfplay"]


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
