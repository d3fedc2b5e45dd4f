"""The console scripts' process set-up and exit (ringrift/cli.py) and the lazily made subcommand
parsers (exitcodes.LazySubcommands): what start-up and exit skip, and what they must still do."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from ringrift.exitcodes import LazySubcommands, OneLineParser


def _run(code: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-c", code], text=True, timeout=60, **kwargs)


# An object whose finalizer says so: the interpreter's teardown runs it, the fast exit does not.
PRELUDE = """
import atexit, sys
from ringrift.cli import exit_now
class Loud:
    def __del__(self):
        print('teardown ran', flush=True)
keep = Loud()
atexit.register(lambda: print('atexit ran', flush=True))
"""


@pytest.mark.parametrize("status,code,err", [(0, 0, ""), (None, 0, ""), (2, 2, ""), (130, 130, ""),
                                             ("bad thing", 1, "bad thing"), (256, 0, "")])
def test_exit_now_keeps_sys_exit_statuses_and_runs_atexit_but_no_teardown(status, code, err):
    r = _run(PRELUDE + f"print('out'); exit_now({status!r})")
    assert r.returncode == code, r.stderr
    assert r.stdout.splitlines() == ["out", "atexit ran"], r.stdout
    assert r.stderr.strip() == err


def test_the_same_code_without_exit_now_runs_the_teardown():
    # the check above can fail: the finalizer does print on a normal exit
    r = _run(PRELUDE + "print('out'); sys.exit(0)")
    assert r.returncode == 0 and "teardown ran" in r.stdout


def test_exit_now_flushes_everything_written_to_a_file(tmp_path):
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        r = _run(PRELUDE + "sys.stdout.write('x' * 1_000_000); sys.stderr.write('e' * 100_000); exit_now(0)",
                 stdout=f)
    assert r.returncode == 0
    text = out.read_text()
    assert text.startswith("x" * 1_000_000) and text.endswith("atexit ran\n")
    assert r.stderr == "e" * 100_000


def test_exit_now_waits_for_a_running_non_daemon_thread():
    r = _run(PRELUDE + "import threading, time\n"
             "t = threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True)))\n"
             "t.start()\nexit_now(3)")
    assert r.returncode == 3
    assert "thread done" in r.stdout and "teardown ran" in r.stdout  # the normal exit path, whole


def test_a_console_script_exits_with_its_status_and_an_argparse_error(tmp_path):
    ok = _run("import sys; from ringrift.cli import pipeline; sys.argv = ['ringrift-pipeline', '--state', "
              "'s.json', 'status']; pipeline()", cwd=tmp_path)
    assert ok.returncode == 0 and "no pipeline state" in ok.stdout + ok.stderr
    bad = _run("import sys; from ringrift.cli import pipeline; sys.argv = ['ringrift-pipeline', 'run', 'nope']; "
               "pipeline()", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr and bad.stderr.count("\n") == 1


def _lazy_parser(made: list):
    ap = OneLineParser(prog="tool")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser, action=LazySubcommands)

    def fill(name):
        def add(p):
            made.append(name)
            p.add_argument(f"--{name}-flag", type=int, required=True)
        return add

    sub.add_parser("alpha", help="the first", fill=fill("alpha"), aliases=["a"])
    sub.add_parser("beta", help="the second", fill=fill("beta"))
    plain = sub.add_parser("gamma", help="made at once")
    plain.add_argument("--g", default=5)
    return ap


def test_lazy_subcommands_make_only_the_parser_a_command_line_names():
    made = []
    args = _lazy_parser(made).parse_args(["beta", "--beta-flag", "7"])
    assert made == ["beta"] and args.command == "beta" and args.beta_flag == 7
    made.clear()
    args = _lazy_parser(made).parse_args(["a", "--alpha-flag", "1"])  # an alias makes its parser
    assert made == ["alpha"] and args.alpha_flag == 1
    made.clear()
    assert _lazy_parser(made).parse_args(["gamma"]).g == 5 and made == []


def test_lazy_subcommands_list_every_choice_and_check_the_named_ones_arguments(capsys):
    made = []
    ap = _lazy_parser(made)
    assert all(name in ap.format_help() for name in ("alpha", "the first", "beta", "the second", "gamma"))
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["delta"])
    assert exc.value.code == 2 and "invalid choice: 'delta'" in capsys.readouterr().err and made == []
    with pytest.raises(SystemExit):
        ap.parse_args(["alpha"])  # its required flag is checked once its parser is made
    assert "--alpha-flag" in capsys.readouterr().err


def test_the_pipeline_parser_makes_three_parsers_for_a_selfplay_run(monkeypatch):
    from ringrift.pipeline import cli

    count = []
    init = argparse.ArgumentParser.__init__

    def counting(self, *a, **kw):
        count.append(kw.get("prog"))
        init(self, *a, **kw)

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", counting)
    args = cli.build_parser().parse_args(["run", "canonical_selfplay", "--num-games", "3", "--policy", "random"])
    assert args.phase == "canonical_selfplay" and args.num_games == 3
    assert len(count) == 3, count  # the tool, `run` and `run canonical_selfplay`, of 17
