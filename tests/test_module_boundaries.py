"""Module boundaries: command-line modules sit on top of the package, never under it.

A module named cli.py (and a package's __main__.py, which only starts its CLI) may import
anything; no other module under python/ringrift may import from a `cli` module, so that every
feature is reachable from Python without going through argument parsing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "ringrift"


def _is_cli_module(path: Path) -> bool:
    return path.name in ("cli.py", "__main__.py")


def cli_imports(source: str, module_parts: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a `cli` module in `source`, the source of the
    module whose dotted name is `module_parts` (needed to resolve relative imports)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module_parts[:-node.level]) if node.level <= len(module_parts) else []
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".") if node.module else []
            # `from . import cli` / `from .. import cli` import the cli module by name
            names = [".".join(target + [alias.name]) for alias in node.names] + [".".join(target)]
        else:
            continue
        found += [(node.lineno, name) for name in names if "cli" in name.split(".")]
    return found


def _module_parts(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts
    # a package's __init__ resolves relative imports against the package itself
    return parts[:-1] + ("__init__",) if parts[-1] == "__init__" else parts


def test_no_module_imports_a_cli_module():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50, f"found only {len(modules)} modules under {PACKAGE}"
    bad = []
    for path in modules:
        if _is_cli_module(path):
            continue
        for line, name in cli_imports(path.read_text(), _module_parts(path)):
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not bad, "non-CLI modules import from a CLI module:\n" + "\n".join(bad)


def test_the_checker_sees_every_form_of_import():
    parts = ("ringrift", "pipeline", "backends", "p2p")
    assert cli_imports("from ..cli import main", parts) == [(1, "ringrift.pipeline.cli.main"),
                                                           (1, "ringrift.pipeline.cli")]
    assert [n for _, n in cli_imports("from .. import cli", parts)] == ["ringrift.pipeline.cli"]
    assert [n for _, n in cli_imports("import ringrift.export.cli", parts)] == ["ringrift.export.cli"]
    assert [n for _, n in cli_imports("def f():\n    from ringrift.parity.cli import run_db", parts)] == \
        ["ringrift.parity.cli.run_db", "ringrift.parity.cli"]
    assert cli_imports("from ..api import logs_dir\nimport click\nfrom .clients import x", parts) == []


def test_importing_ringrift_and_its_pipeline_leaves_numpy_unloaded():
    # The console scripts (ringrift/cli.py) set OPENBLAS_NUM_THREADS before numpy loads; that only
    # works while the packages they import first do not load numpy themselves.
    import subprocess
    import sys

    code = "import sys, ringrift, ringrift.pipeline; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("with_config", [False, True], ids=["no-config", "repo-config"])
def test_the_main_command_plays_into_the_db_without_numpy(tmp_path, with_config):
    # The README's main command (CPU self-play into the DB, random and heuristic) runs natively
    # end to end; numpy's import is a quarter of its start-up, so it must not creep back in, also
    # where the repo's config is read (its loop section's check once imported the trainer's data
    # loader, numpy with it: 60 ms). Without a config file PyYAML is not needed either.
    import shutil
    import subprocess
    import sys

    if with_config:
        shutil.copytree(ROOT / "config", tmp_path / "config")
    # (the console script ends the process itself, after the atexit functions: ringrift/cli.py)
    code = ("import atexit, sys; from ringrift.cli import pipeline; sys.argv = ['ringrift-pipeline', '--state', "
            "'s.json', 'run', 'canonical_selfplay', '--num-games', '20', '--policy', 'heuristic', '--output-db', "
            "'g.db', '--quiet']\natexit.register(lambda: print('loaded:', 'numpy' in sys.modules, 'yaml' in "
            "sys.modules, 'dataclasses' in sys.modules))\npipeline()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    # nor dataclasses: its import and the methods it compiles were a fifth of the start-up (ringrift/cli.py)
    assert "20 new games" in r.stdout and r.stdout.strip().endswith(f"loaded: False {with_config} False"), r.stdout


def test_every_console_script_starts_through_ringrift_cli():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts and all(target.startswith("ringrift.cli:") for target in scripts.values())
    import ringrift.cli as launcher

    assert all(callable(getattr(launcher, target.split(":")[1])) for target in scripts.values())
