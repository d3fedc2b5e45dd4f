"""Loading and validating the pipeline's YAML configuration and its hosts file.

Errors name the file, the line and the key: an unknown key, a value of the wrong type, a
missing required key, a malformed document or a missing file never pass silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .. import BOARDS, POLICIES
from ..engine.errors import RingRiftError
from . import config_cache
from .loop import LOOP_DEFAULTS, LOOP_SCHEMA
from .train_phase import TRAIN_DEFAULTS, TRAIN_SCHEMA

if TYPE_CHECKING:
    import yaml

DEFAULT_CONFIG = Path("config/pipeline_config.yaml")
DEFAULT_HOSTS = Path("config/distributed_hosts.yaml")


class ConfigError(RingRiftError, ValueError):
    """The configuration file is missing, malformed or invalid."""


class MapOf:
    """A mapping of free-form names (letters, digits, '_', '.', '-') to values of `schema`;
    an empty value (null) is an empty mapping."""

    def __init__(self, schema, what: str = "name"):
        self.schema = schema
        self.what = what


class ListOf:
    """A YAML sequence whose items each match the scalar `schema`."""

    def __init__(self, schema):
        self.schema = schema


class Struct:
    """A mapping with exactly these (optional) keys, of which `required` must be present."""

    def __init__(self, fields: dict, required: tuple = ()):
        self.fields = fields
        self.required = required


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# Schema: a dict is a mapping with exactly these keys (all optional); a tuple is (type, check).
_POSITIVE_INT = (int, lambda v: v > 0, "a positive integer")
_NON_NEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
_POSITIVE_NUM = ((int, float), lambda v: v > 0, "a positive number")
_NON_NEG_NUM = ((int, float), lambda v: v >= 0, "a non-negative number")
_FRACTION = ((int, float), lambda v: 0 <= v <= 1, "a number between 0 and 1")
_TEXT = (str, lambda v: bool(v.strip()), "a non-empty string")
# The same bounds as the command-line flags they stand in for (pipeline/api.py selfplay_spec), so
# a value out of range is named here, with its file and line, not blamed on a flag never given.
_MOVE_CAP = (int, lambda v: 1 <= v <= 1_000_000, "an integer 1..1000000")
_BOARD_CAPS = {board: _MOVE_CAP for board in BOARDS}
_SEED = (int, lambda v: 0 <= v <= 2**63 - 1, "an integer 0..9223372036854775807")
_THREADS = (int, lambda v: 0 <= v <= 1024, "an integer 0..1024 (0: every core)")
_GAMES_PER_WORKER = (int, lambda v: 1 <= v <= 2**63 - 1, "an integer 1..9223372036854775807")

def _gumbel_ok(value: str) -> bool:
    from ..search.spec import is_gumbel_policy, parse_policy

    if not is_gumbel_policy(value):
        return False
    try:
        parse_policy(value)
    except ValueError:
        return False
    return True


SCHEMA = {
    "default_board": (str, lambda v: v in BOARDS, f"one of {', '.join(BOARDS)}"),
    "selfplay": {
        "games_per_worker": _GAMES_PER_WORKER,
        "max_moves": _BOARD_CAPS,
        "timeout_seconds": _POSITIVE_NUM,
        "num_players": (int, lambda v: 2 <= v <= 4, "2, 3 or 4"),
        "policy": (str, lambda v: v in POLICIES or _gumbel_ok(v) or (v.startswith("onnx:") and len(v) > 5),
                   " or ".join(POLICIES) + " or onnx:PATH or gumbel:EVALUATOR[:key=value,...]"),
        "seed": _SEED,
        "threads": _THREADS,
        "keep_worker_dbs": (bool, lambda v: True, "true or false"),
    },
    "parity": {
        "sample_size": _NON_NEG_INT,
        "fail_threshold": _FRACTION,
    },
    "export": {
        "compression": (bool, lambda v: True, "true or false"),
        "split_ratio": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1] (1 = one file, no validation split)"),
        "symmetries": (bool, lambda v: True, "true or false"),
        "encoding": (str, lambda v: v in ("native", "upstream"), "native or upstream"),
    },
    "hosts_file": _TEXT,
    "train": TRAIN_SCHEMA,
    "loop": LOOP_SCHEMA,
}

DEFAULTS = {
    "default_board": "square8",
    "selfplay": {
        "games_per_worker": 1000,
        "max_moves": {"square8": 2000, "hex8": 2000, "square19": 10000, "hexagonal": 10000},
        "timeout_seconds": 3600,
        "num_players": 2,
        "policy": "random",
        "seed": 0,
        "threads": 0,
        "keep_worker_dbs": False,
    },
    "parity": {"sample_size": 0, "fail_threshold": 0.0},
    "export": {"compression": True, "split_ratio": 0.9, "symmetries": False, "encoding": "native"},
    "hosts_file": None,
    "train": TRAIN_DEFAULTS,
    "loop": LOOP_DEFAULTS,
}

# ---- hosts file ------------------------------------------------------------------------------

ROLES = ("selfplay", "standby")
CAPABILITIES = ("cpu", "gpu")

# A host name, an IPv4 address or an IPv6 one: no spaces, no shell characters and no leading '-',
# since the name goes into messages that suggest commands to copy (ssh-keyscan -p PORT HOST):
# "-oProxyCommand=..." or "h; rm -rf ~" there would run what the file says.
_SSH_HOST = re.compile(r"^(?!-)[A-Za-z0-9._:%\[\]-]{1,253}$")
_SSH_USER = re.compile(r"^(?!-)[A-Za-z0-9._-]{1,64}$")

HOST_FIELDS = {
    "ssh_host": (str, lambda v: bool(_SSH_HOST.match(v)), "a host name or an IP address"),
    "ssh_port": (int, lambda v: 1 <= v <= 65535, "a port number (1-65535)"),
    "ssh_user": (str, lambda v: bool(_SSH_USER.match(v)), "a user name (letters, digits, '.', '_', '-')"),
    "ssh_key": _TEXT,
    "known_hosts": _TEXT,
    "python": _TEXT,
    "venv": _TEXT,
    "work_dir": _TEXT,
    "role": (str, lambda v: v in ROLES, " or ".join(ROLES)),
    "capabilities": ListOf((str, lambda v: v in CAPABILITIES, " or ".join(CAPABILITIES))),
    "max_parallel_jobs": (int, lambda v: 1 <= v <= 8, "an integer from 1 to 8"),
    "threads": _NON_NEG_INT,
    "connect_timeout": _POSITIVE_NUM,
    "keepalive_interval": _POSITIVE_NUM,
    "min_free_disk_gb": _NON_NEG_NUM,
    "enabled": (bool, lambda v: True, "true or false"),
}

HOSTS_SCHEMA = {
    "defaults": {k: v for k, v in HOST_FIELDS.items() if k != "ssh_host"},
    "hosts": MapOf(Struct(HOST_FIELDS), what="host name"),
}

HOST_DEFAULTS = {
    "ssh_host": None,
    "ssh_port": 22,
    "ssh_user": None,
    "ssh_key": None,
    "known_hosts": "~/.ssh/known_hosts",
    "python": "python3",
    "venv": None,
    "work_dir": "~/.ringrift/work",
    "role": "selfplay",
    "capabilities": ["cpu"],
    "max_parallel_jobs": 1,
    "threads": 0,
    "connect_timeout": 10,
    "keepalive_interval": 15,
    "min_free_disk_gb": 1,
    "enabled": True,
}


class HostConfig(NamedTuple):
    """One host of `distributed_hosts.yaml`, defaults filled in. `ssh_key` and `known_hosts`
    are local paths (resolved); `python`, `venv` and `work_dir` are paths on the host. A NamedTuple:
    see ringrift/cli.py on dataclasses."""

    name: str
    ssh_host: str | None
    ssh_port: int
    ssh_user: str | None
    ssh_key: str | None
    known_hosts: str
    python: str
    venv: str | None
    work_dir: str
    role: str
    capabilities: list
    max_parallel_jobs: int
    threads: int
    connect_timeout: float
    keepalive_interval: float
    min_free_disk_gb: float
    enabled: bool
    source: str = ""  # "FILE:LINE" of the host's entry

    @property
    def is_local(self) -> bool:
        """A host without ssh_host is this machine (only the name `localhost` may omit it)."""
        return self.ssh_host is None

    @property
    def user(self) -> str:
        if self.ssh_user:
            return self.ssh_user
        import getpass  # here: only a remote host without ssh_user needs it

        return getpass.getuser()

    @property
    def remote_python(self) -> str:
        return f"{self.venv.rstrip('/')}/bin/python" if self.venv else self.python

    def target(self) -> str:
        if self.is_local:
            return "this machine"
        return f"{self.user}@{self.ssh_host}:{self.ssh_port}"


class HostsConfig(NamedTuple):
    """The hosts file's hosts (a NamedTuple, as HostConfig)."""

    path: Path | None  # None: no hosts file
    hosts: list

    @property
    def remote(self) -> list:
        return [h for h in self.hosts if not h.is_local]

    @property
    def all_local(self) -> bool:
        """No host but this machine: every phase runs here, in-process."""
        return not self.remote


def _yaml():
    """PyYAML, imported where a file is read: a run without a config file (the built-in defaults)
    starts 16 ms sooner without it."""
    import yaml

    return yaml


def _scalar(node: yaml.Node, file: str):
    """The value of a composed node, as yaml.safe_load gives it (its tag was resolved when the
    document was composed); a value it cannot build (`!!python/object`, `!!int abc`, an unknown
    tag) is a ConfigError naming the file and the line."""
    yaml = _yaml()
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        why = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"{file}:{node.start_mark.line + 1}: cannot read this value ({why})") from None


def _validate(node: yaml.Node, schema, path: str, file: str, lines: dict | None = None,
              key_line: int | None = None) -> object:
    yaml = _yaml()
    line = node.start_mark.line + 1
    if lines is None:
        lines = {}
    lines[path] = line
    if isinstance(schema, MapOf):
        if isinstance(node, yaml.ScalarNode) and _scalar(node, file) is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{file}:{line}: '{path}' must be a mapping of {schema.what}s")
        out = {}
        for key_node, value_node in node.value:
            # a name as written: `off` or `yes` is a host name here, not a YAML 1.1 boolean
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else _scalar(key_node, file)
            kline = key_node.start_mark.line + 1
            where = f"{path}.{key}"
            if not isinstance(key, str) or not _NAME.match(key):
                raise ConfigError(f"{file}:{kline}: '{where}': a {schema.what} is letters, digits, '_', '.' "
                                  f"and '-' (at most 63 characters)")
            if key in out:
                raise ConfigError(f"{file}:{kline}: duplicate key '{where}'")
            out[key] = _validate(value_node, schema.schema, where, file, lines, key_line=kline)
            lines[where] = kline
        return out
    if isinstance(schema, ListOf):
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{file}:{line}: '{path}' must be a list")
        return [_validate(item, schema.schema, f"{path}[{i}]", file, lines) for i, item in enumerate(node.value)]
    if isinstance(schema, Struct):
        at = key_line or line
        if isinstance(node, yaml.ScalarNode) and _scalar(node, file) is None:
            raise ConfigError(f"{file}:{at}: '{path}' is empty; it needs at least "
                              f"{', '.join(schema.required) or 'one key'}")
        out = _validate(node, schema.fields, path, file, lines)
        for key in schema.required:
            if key not in out:
                raise ConfigError(f"{file}:{at}: '{path}' is missing the required key '{key}'")
        return out
    if isinstance(schema, dict):
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{file}:{line}: '{path or '<root>'}' must be a mapping")
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file)
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key not in schema:
                known = ", ".join(sorted(schema))
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: unknown key '{where}' (known: {known})")
            if key in out:
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: duplicate key '{where}'")
            out[key] = _validate(value_node, schema[key], where, file, lines)
        return out
    types, check, what = schema
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{file}:{line}: '{path}' must be {what}")
    value = _scalar(node, file)
    # bool is an int in Python; never accept one where a number is meant, or vice versa.
    bool_mismatch = isinstance(value, bool) != (types is bool)
    if bool_mismatch or not isinstance(value, types) or not check(value):
        raise ConfigError(f"{file}:{line}: '{path}' must be {what}, got {value!r}")
    return value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


# Bounds on what a config or hosts file may be: far above any real one (the repo's config is 3 KB
# and 3 levels deep), low enough that a stream (/dev/zero) is not read into memory and that a
# deeply nested document does not overflow the C stack in PyYAML's recursive composer (about
# 30,000 levels segfaulted the interpreter).
MAX_FILE_BYTES = 1 << 20
MAX_NESTING = 64


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise ConfigError(f"{path}: {what} not found")
    if path.is_dir():
        raise ConfigError(f"{path}: {what} is a directory")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {what} is larger than {MAX_FILE_BYTES >> 20} MiB: not a config file")
        return data.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def _load_validated(path: Path, what: str, schema) -> tuple[dict, dict]:
    """The file's values checked against `schema` ({} for an empty document) and the line of
    each key; from the cache of validated files when this text was validated by this code before
    (config_cache.py: no PyYAML import then)."""
    text = _read_text(path, what)
    hit = config_cache.lookup(what, text)
    if hit is not None:
        return hit
    root = _compose(path, what, text)
    lines: dict = {}
    values = {} if root is None else _validate(root, schema, "", str(path), lines)
    config_cache.store(what, text, values, lines)
    return values, lines


def _compose(path: Path, what: str, text: str):
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:  # libyaml's parser where PyYAML has it: the same nodes, with their lines (repo config: 0.19 ms, not 3.5)
        depth = 0
        for event in yaml.parse(text, Loader=loader):  # events come without recursion: depth first
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    raise ConfigError(f"{path}:{event.start_mark.line + 1}: {what} nested more than "
                                      f"{MAX_NESTING} levels deep")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        # The libyaml of newer PyYAML wheels (6.0.4) refuses 1,000 levels itself, while scanning
        # ahead of the events counted above: the same error, said as ours.
        if "maximum nesting depth" in problem:
            raise ConfigError(f"{where}: {what} nested more than {MAX_NESTING} levels deep") from None
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None


def load_config(path: str | Path | None = None, *, required: bool = False) -> dict:
    """Load the pipeline config (defaults filled in). With no path, use config/pipeline_config.yaml
    when it exists, else the built-in defaults.

    The result carries `_source` (the file, or None) and `_hosts_ref` ("FILE:LINE" of
    `hosts_file`, for error messages); `hosts_file` is resolved against the config's folder.
    """
    if path is None:
        if not DEFAULT_CONFIG.exists():
            cfg = _merge(DEFAULTS, {})
            cfg.update(_source=None, _hosts_ref=None)
            return cfg
        path = DEFAULT_CONFIG
    path = Path(path)
    values, lines = _load_validated(path, "config file", SCHEMA)
    cfg = _merge(DEFAULTS, values)
    cfg["_source"] = path
    cfg["_hosts_ref"] = None
    if cfg["hosts_file"] is not None:
        hosts = Path(os.path.expanduser(cfg["hosts_file"]))
        cfg["hosts_file"] = str(hosts if hosts.is_absolute() else path.parent / hosts)
        cfg["_hosts_ref"] = f"{path}:{lines.get('hosts_file', 1)}"
    return cfg


def _local_path(value: str | None, base: Path) -> str | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p))


def load_hosts(cfg: dict | None = None, path: str | Path | None = None) -> HostsConfig:
    """The hosts of the hosts file: `path`, else the config's `hosts_file`, else
    config/distributed_hosts.yaml when it exists. No file: no hosts (everything runs here)."""
    ref = None
    if path is None and cfg is not None and cfg.get("hosts_file"):
        path, ref = cfg["hosts_file"], cfg.get("_hosts_ref")
    if path is None:
        if not DEFAULT_HOSTS.exists():
            return HostsConfig(None, [])
        path = DEFAULT_HOSTS
    path = Path(path)
    if not path.exists():
        extra = f" (named by 'hosts_file' at {ref})" if ref else ""
        raise ConfigError(f"{path}: hosts file not found{extra}")
    data, lines = _load_validated(path, "hosts file", HOSTS_SCHEMA)
    defaults = _merge(HOST_DEFAULTS, data.get("defaults", {}))
    hosts = []
    for name, entry in (data.get("hosts") or {}).items():
        merged = _merge(defaults, entry)
        where = f"{path}:{lines.get(f'hosts.{name}', 1)}"
        if merged["ssh_host"] is None and name != "localhost":
            raise ConfigError(f"{where}: 'hosts.{name}' is missing the required key 'ssh_host' "
                              f"(only a host named 'localhost' runs on this machine without SSH)")
        if not merged["enabled"]:
            continue
        merged["ssh_key"] = _local_path(merged["ssh_key"], path.parent)
        merged["known_hosts"] = _local_path(merged["known_hosts"], path.parent)
        hosts.append(HostConfig(name=name, source=where, **merged))
    return HostsConfig(path, hosts)
