"""The console scripts of pyproject.toml: each sets up the process, then runs its package's CLI.

Set-up comes first because it must precede numpy's import: numpy's OpenBLAS starts a thread per
core when it loads, and those threads spin for a while, about 0.06 CPU-seconds per process on a
2-core machine (measured: `ringrift-pipeline run canonical_selfplay` of 10 games took 0.22 CPU-s,
0.16 with one BLAS thread). None of our commands does BLAS work in numpy (the trainer's maths is
PyTorch's, with its own threads), so they ask for one thread unless the user set a number.
`import ringrift` itself changes nothing in the process.

The start-up and exit around a command are also theirs to make short, because they are the
serial part of every run (the README's main command plays 20,000 square8 games in about a
second, and start-up and exit were a tenth of it, callgrind 311M instructions for a one-game
run): the cyclic garbage collector is paused while the command's modules import (they make
thousands of objects and no garbage; 10M instructions) and what they made is frozen out of later
collections; and a command that returns ends the process without the interpreter's teardown,
which frees every module object one by one (23M instructions, 7 ms), once the atexit functions
have run and the standard streams are flushed (`exit_now`).

For the same reason the records that a command's start-up imports (Range, SelfplaySpec,
HostConfig, HostsConfig, LoopOptions, GameRow) are typing.NamedTuples and SelfplayResult a plain
class, not dataclasses: `import dataclasses` brings `inspect`, `ast` and `dis` (29M instructions)
and @dataclass compiles each class's methods with exec when its module loads (27M for those
seven), a fifth of a one-game run; `typing` costs 10M. Keep @dataclass to modules that a command
imports only when it needs them (the trainer, the exporter, the scheduler).
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (3 ms of start-up)
if TYPE_CHECKING:
    from typing import NoReturn


def prepare_process() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run_command(module: str, name: str = "main") -> NoReturn:
    """Imports `module` with the collector paused, runs its `name`() and exits with its status."""
    prepare_process()
    import importlib

    gc.disable()
    try:
        main = getattr(importlib.import_module(module), name)
    finally:
        gc.enable()
    gc.freeze()  # the modules' objects live until exit: later collections need not walk them
    try:
        status = main()
    except SystemExit as exc:  # argparse's errors and --help, and commands that exit themselves
        status = exc.code
    exit_now(status)


def exit_now(status) -> NoReturn:
    """sys.exit(status) without the interpreter's teardown: the atexit functions run (log
    handlers close, temporary directories go, Ray shuts down) and stdout and stderr are flushed,
    then the process ends. While a thread that is no daemon still runs, the normal exit waits
    for it instead."""
    import threading

    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(status)
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # what sys.exit does with any other object: print it, exit 1
        print(status, file=sys.stderr)
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: Python's own exit says 120 then
            code = code or 120
    os._exit(code & 0xFF)  # what exit() keeps of a status, as sys.exit


def pipeline():
    run_command("ringrift.pipeline.cli")


def db():
    run_command("ringrift.db.cli")


def export():
    run_command("ringrift.export.cli")


def parity():
    run_command("ringrift.parity.cli")


def diff_bundle():
    run_command("ringrift.parity.diff_bundle")


def p2p():
    run_command("ringrift.p2p.cli")


def train():
    run_command("ringrift.train.cli")


def evaluate():
    run_command("ringrift.train.evaluate")
