"""The exit statuses every ringrift command line shares (documented in docs/cli.md).

    0    success
    1    the work ran and failed: parity mismatches over the threshold, a host or run that
         failed, an I/O error while writing
    2    usage or unusable input: a bad flag or value, a bad config, state file or request,
         a missing, corrupt or foreign database
    130  interrupted (Ctrl-C, SIGTERM)

Every error is one line on stderr, `<tool>: error: <what and where>`.
"""

from __future__ import annotations

import argparse

from .engine.errors import RingRiftError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(RingRiftError, ValueError):
    """A bad argument or an unusable input file: exit status 2."""


def exit_status(exc: BaseException) -> int:
    """The exit status for an error that ended a command."""
    from .db.errors import DBError, DBWriteError
    from .pipeline.config import ConfigError

    if isinstance(exc, DBWriteError):
        return EXIT_FAILED
    if isinstance(exc, (UsageError, DBError, ConfigError)):
        return EXIT_USAGE
    if type(exc).__name__ == "BackendUnavailable":  # a backend the flags cannot use
        return EXIT_USAGE
    return EXIT_FAILED


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (plus a pointer to --help), exit status 2.

    Every command line of the package uses it, so a bad flag reads the same in every tool."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
