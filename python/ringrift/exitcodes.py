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


def exit_status(exc: BaseException, *, default: int = EXIT_FAILED) -> int:
    """The exit status for an error that ended a command: 1 for a write that failed (a full
    disk), 2 for unusable input, else `default` (the tools that only read say 2 for the rest)."""
    from .db.errors import DBError, DBWriteError
    from .pipeline.config import ConfigError

    if isinstance(exc, DBWriteError):
        return EXIT_FAILED
    if isinstance(exc, (UsageError, DBError, ConfigError)):
        return EXIT_USAGE
    if type(exc).__name__ == "BackendUnavailable":  # a backend the flags cannot use
        return EXIT_USAGE
    return default


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (plus a pointer to --help), exit status 2.

    Every command line of the package uses it, so a bad flag reads the same in every tool."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _Deferred:
    """A subcommand's parser not made yet: the keyword arguments it will be made with, and the
    function that adds its arguments (set by LazySubcommands.add_parser)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.fill = None


class LazySubcommands(argparse._SubParsersAction):
    """Subcommands whose parsers are made when a command line names them.

    `add_parser(name, fill=f, help=..., ...)` lists the subcommand at once (in --help and in
    'invalid choice') and returns None: its parser is made, and handed to f to add its
    arguments, only when that subcommand is parsed. Without `fill` it is argparse's add_parser.

    Making an ArgumentParser costs about 0.1 ms (gettext looks for a translation of its three
    built-in strings on disk, one stat each): the pipeline's command line has 17 parsers and 116
    arguments, built in 27.5M instructions (about 9 ms of every run's start-up), of which a run
    parses 3 parsers and 22 arguments."""

    def add_parser(self, name, *, fill=None, **kwargs):
        if fill is None:
            return super().add_parser(name, **kwargs)
        made_by, self._parser_class = self._parser_class, _Deferred
        try:  # argparse's own bookkeeping (prog, help line, aliases), with a placeholder parser
            deferred = super().add_parser(name, **kwargs)
        finally:
            self._parser_class = made_by
        deferred.fill = fill
        return None

    def __call__(self, parser, namespace, values, option_string=None):
        deferred = self._name_parser_map.get(values[0])
        if isinstance(deferred, _Deferred):
            made = self._parser_class(**deferred.kwargs)
            deferred.fill(made)
            for key, value in self._name_parser_map.items():  # the name and its aliases
                if value is deferred:
                    self._name_parser_map[key] = made
        super().__call__(parser, namespace, values, option_string)
