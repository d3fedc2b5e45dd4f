"""Loading and validating the pipeline's YAML configuration.

Errors name the file, the line and the key: an unknown key, a value of the wrong type, a
malformed document or a missing file never pass silently.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..engine.errors import RingRiftError

BOARDS = ("square8", "hex8", "square19", "hexagonal")
DEFAULT_CONFIG = Path("config/pipeline_config.yaml")


class ConfigError(RingRiftError, ValueError):
    """The configuration file is missing, malformed or invalid."""


# Schema: a dict is a mapping with exactly these keys (all optional); a tuple is (type, check).
_POSITIVE_INT = (int, lambda v: v > 0, "a positive integer")
_NON_NEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
_FRACTION = ((int, float), lambda v: 0 <= v <= 1, "a number between 0 and 1")
_BOARD_CAPS = {board: _POSITIVE_INT for board in BOARDS}

SCHEMA = {
    "default_board": (str, lambda v: v in BOARDS, f"one of {', '.join(BOARDS)}"),
    "selfplay": {
        "games_per_worker": _POSITIVE_INT,
        "max_moves": _BOARD_CAPS,
        "timeout_seconds": ((int, float), lambda v: v > 0, "a positive number"),
        "num_players": (int, lambda v: 2 <= v <= 4, "2, 3 or 4"),
        "policy": (str, lambda v: v in ("random", "heuristic"), "random or heuristic"),
        "seed": _NON_NEG_INT,
        "threads": _NON_NEG_INT,
    },
    "parity": {
        "sample_size": _NON_NEG_INT,
        "fail_threshold": _FRACTION,
    },
    "export": {
        "compression": (bool, lambda v: True, "true or false"),
        "split_ratio": ((int, float), lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    },
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
    },
    "parity": {"sample_size": 100, "fail_threshold": 0.0},
    "export": {"compression": True, "split_ratio": 0.9},
}


def _scalar(node: yaml.Node):
    return yaml.safe_load(yaml.serialize(node))


def _validate(node: yaml.Node, schema, path: str, file: str) -> object:
    line = node.start_mark.line + 1
    if isinstance(schema, dict):
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{file}:{line}: '{path or '<root>'}' must be a mapping")
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            where = f"{path}.{key}" if path else str(key)
            if key not in schema:
                known = ", ".join(sorted(schema))
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: unknown key '{where}' (known: {known})")
            if key in out:
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: duplicate key '{where}'")
            out[key] = _validate(value_node, schema[key], where, file)
        return out
    types, check, what = schema
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{file}:{line}: '{path}' must be {what}")
    value = _scalar(node)
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


def load_config(path: str | Path | None = None, *, required: bool = False) -> dict:
    """Load the pipeline config (defaults filled in). With no path, use config/pipeline_config.yaml
    when it exists, else the built-in defaults."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return _merge(DEFAULTS, {})
        path, required = DEFAULT_CONFIG, True
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        return _merge(DEFAULTS, {})
    return _merge(DEFAULTS, _validate(root, SCHEMA, "", str(path)))
