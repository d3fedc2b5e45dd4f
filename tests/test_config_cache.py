"""The cache of validated config files (ringrift/pipeline/config_cache.py): a hit gives exactly
what validation gave, without PyYAML; any change to the file or to the validating code misses;
a cache that is off, unwritable or damaged costs a normal load and never an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringrift.pipeline import config_cache
from ringrift.pipeline.config import ConfigError, load_config, load_hosts

REPO = Path(__file__).resolve().parents[1]

HOSTS = ("defaults:\n  ssh_key: keys/id\n  max_parallel_jobs: 3\nhosts:\n  a:\n    ssh_host: 10.1.1.1\n"
         "    ssh_port: 2222\n  localhost:\n    role: standby\n")


def _files(tmp_path):
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS)
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("selfplay:\n  seed: 7\n  max_moves:\n    square8: 333\nhosts_file: hosts.yaml\n")
    return cfg, hosts


def _entries():
    return sorted(p.name for p in config_cache.cache_dir().glob("*.json"))


def test_a_hit_gives_what_validation_gave(tmp_path, monkeypatch):
    cfg, _ = _files(tmp_path)
    assert config_cache.cache_dir() is not None and _entries() == []
    first = load_config(cfg)
    first_hosts = load_hosts(first)
    assert [n.split("-")[0] for n in _entries()] == ["config_file", "hosts_file"]

    # The second load must come from the entries: validation itself would fail now.
    def no_validation(*args, **kwargs):
        raise AssertionError("validated again")

    monkeypatch.setattr("ringrift.pipeline.config._compose", no_validation)
    again = load_config(cfg)
    assert again == first and again["selfplay"]["max_moves"]["square8"] == 333
    hosts = load_hosts(again)
    assert hosts == first_hosts and hosts.hosts[0].ssh_key == str(tmp_path / "keys/id")
    assert again["_hosts_ref"] == f"{cfg}:5"  # the line of hosts_file, kept in the entry


def test_a_hit_starts_without_pyyaml(tmp_path):
    cfg, _ = _files(tmp_path)
    code = ("import sys; from ringrift.pipeline.config import load_config, load_hosts; "
            f"c = load_config({str(cfg)!r}); h = load_hosts(c); print('yaml' in sys.modules, c['selfplay']['seed'], "
            "[x.name for x in h.hosts])")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[0].stdout.split() == ["True", "7", "['a',", "'localhost']"]  # the first load reads YAML ...
    assert runs[1].stdout.split() == ["False", "7", "['a',", "'localhost']"]  # ... the second does not


def test_an_edited_file_is_validated_again(tmp_path):
    cfg, _ = _files(tmp_path)
    load_config(cfg)
    cfg.write_text("selfplay:\n  seed: 8\n")
    assert load_config(cfg)["selfplay"]["seed"] == 8
    cfg.write_text("selfplay:\n  seed: -1\n")  # an error is never served from an older entry
    with pytest.raises(ConfigError, match=r":2: 'selfplay.seed' must be an integer 0\.\."):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r":2: 'selfplay.seed' must be"):  # nor cached itself
        load_config(cfg)


def test_a_change_to_the_validating_code_misses(tmp_path, monkeypatch):
    cfg, _ = _files(tmp_path)
    load_config(cfg)
    calls = []
    real = config_cache.store
    monkeypatch.setattr(config_cache, "store", lambda *a, **k: calls.append(1) or real(*a, **k))
    load_config(cfg)
    assert calls == []  # a hit
    code = config_cache._code()
    monkeypatch.setattr(config_cache, "_code", lambda: [code[0][:1] + [code[0][1] + 1] + code[0][2:]] + code[1:])
    load_config(cfg)
    assert calls == [1]  # config.py of another size: validated again


def test_off_damaged_or_unwritable_caches_load_normally(tmp_path, monkeypatch):
    cfg, _ = _files(tmp_path)
    monkeypatch.setenv(config_cache.ENV, "off")
    assert config_cache.cache_dir() is None and load_config(cfg)["selfplay"]["seed"] == 7

    folder = tmp_path / "cache"
    monkeypatch.setenv(config_cache.ENV, str(folder))
    load_config(cfg)
    (entry,) = folder.glob("config_file-*.json")
    for damage in (b"", b"{not json", b"[]", json.dumps({"key": 1}).encode(), b"\xff" * 10):
        entry.write_bytes(damage)
        assert load_config(cfg)["selfplay"]["seed"] == 7
    # An entry of another file's text with the right name is not used.
    doc = json.loads(entry.read_text())
    doc["values"]["selfplay"]["seed"] = 99
    doc["text"] = doc["text"].replace("seed: 7", "seed: 99")
    entry.write_text(json.dumps(doc))
    assert load_config(cfg)["selfplay"]["seed"] == 7

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(config_cache.ENV, str(blocker / "cache"))  # a folder that cannot be made
    assert load_config(cfg)["selfplay"]["seed"] == 7
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_only_values_json_keeps_exactly_are_stored():
    for values in ({"a": (1, 2)}, {1: "a"}, {"a": float("nan")}, {"a": object()}):
        assert not config_cache.store("config file", "x", values, {})
    assert config_cache.store("config file", "x", {"a": [1, 2.0, True, None, "s"]}, {"a": 1})
    assert config_cache.lookup("config file", "x") == ({"a": [1, 2.0, True, None, "s"]}, {"a": 1})
    assert config_cache.lookup("config file", "y") is None
    assert config_cache.lookup("hosts file", "x") is None


def test_a_copy_of_the_file_hits_and_old_entries_go(tmp_path, monkeypatch):
    cfg, _ = _files(tmp_path)
    load_config(cfg)
    copy = tmp_path / "elsewhere" / "pipeline.yaml"
    copy.parent.mkdir()
    copy.write_text(cfg.read_text())
    monkeypatch.setattr("ringrift.pipeline.config._compose", lambda *a: pytest.fail("validated again"))
    assert load_config(copy)["selfplay"]["seed"] == 7 and load_config(copy)["_source"] == copy
    monkeypatch.setattr(config_cache, "MAX_ENTRIES", 3)
    for i in range(6):
        assert config_cache.store("config file", f"text {i}", {"i": i}, {})
    assert len(_entries()) == 3 and config_cache.lookup("config file", "text 5") == ({"i": 5}, {})


def test_the_default_folder_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(config_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config_cache.cache_dir() == tmp_path / "xdg/ringrift/config"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config_cache.cache_dir() == Path(os.path.expanduser("~")) / ".cache/ringrift/config"


def test_every_validator_source_exists():
    for rel in config_cache.VALIDATOR_SOURCES:
        assert (REPO / "python/ringrift" / rel).is_file(), rel
