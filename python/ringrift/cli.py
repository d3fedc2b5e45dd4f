"""The console scripts of pyproject.toml: each sets up the process, then runs its package's CLI.

Set-up comes first because it must precede numpy's import: numpy's OpenBLAS starts a thread per
core when it loads, and those threads spin for a while, about 0.06 CPU-seconds per process on a
2-core machine (measured: `ringrift-pipeline run canonical_selfplay` of 10 games took 0.22 CPU-s,
0.16 with one BLAS thread). None of our commands does BLAS work in numpy (the trainer's maths is
PyTorch's, with its own threads), so they ask for one thread unless the user set a number.
`import ringrift` itself changes nothing in the process.
"""

from __future__ import annotations

import os


def prepare_process() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _run(module: str, name: str = "main"):
    prepare_process()
    import importlib

    return getattr(importlib.import_module(module), name)()


def pipeline():
    return _run("ringrift.pipeline.cli")


def db():
    return _run("ringrift.db.cli")


def export():
    return _run("ringrift.export.cli")


def parity():
    return _run("ringrift.parity.cli")


def diff_bundle():
    return _run("ringrift.parity.diff_bundle")


def p2p():
    return _run("ringrift.p2p.cli")


def train():
    return _run("ringrift.train.cli")


def evaluate():
    return _run("ringrift.train.evaluate")
