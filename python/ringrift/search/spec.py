"""The ``gumbel:EVALUATOR[:key=value,...]`` policy spec: parsing and normalising it, without
numpy or the search itself, so the pipeline can check a policy name at start-up cheaply (the
self-play CLI path never imports numpy). ``ringrift.search.selfplay`` documents the keys."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from .. import _core

#: The search's leaf evaluators a spec may name (the net, ``onnx:PATH``, is given by path).
LEAF_EVALUATORS = tuple(e for e in _core.SEARCH_LEAF_EVALS if e != "net")

PREFIX = "gumbel:"
NET = "onnx"  # the evaluator that is a trained net: gumbel:onnx:PATH[:key=value,...]


@dataclass(frozen=True)
class GumbelPolicy:
    evaluator: str = "heuristic"
    sims: int = 32
    top_k: int = 16
    temp: float = 1.0
    c_visit: float = 50.0
    c_scale: float = 1.0
    rollout: int = 32
    model: str = ""  # the ONNX file of evaluator "onnx"

    def _keys(self) -> str:
        return ",".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self)
                        if f.name not in ("evaluator", "model"))

    @property
    def spec(self) -> str:
        """The normalised spec, usable again (a net's spec keeps its path)."""
        if self.evaluator == NET:
            return f"{PREFIX}{NET}:{self.model}:{self._keys()}"
        return f"{PREFIX}{self.evaluator}:{self._keys()}"

    @property
    def name(self) -> str:
        """The policy stored with the games: the spec, with a net named by its id (reads the file)."""
        if self.evaluator == NET:
            from ..train.onnx_export import model_id

            return f"{PREFIX}{NET}:{self.net_board()}-{model_id(self.model)}:{self._keys()}"
        return self.spec

    def net_board(self) -> str:
        import json
        from pathlib import Path

        import onnx

        if not Path(self.model).is_file():
            raise FileNotFoundError(f"{self.model}: no such ONNX model")
        try:
            m = onnx.load(self.model, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises several types
            raise ValueError(f"{self.model}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        meta = {p.key: p.value for p in m.metadata_props}
        return json.loads(meta.get("ringrift", "{}")).get("board", "?")


def _fmt(v) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def is_gumbel_policy(policy: str) -> bool:
    return isinstance(policy, str) and policy.startswith(PREFIX)


def parse_policy(spec: str) -> GumbelPolicy:
    """``gumbel:EVALUATOR[:key=value,...]`` -> GumbelPolicy; ValueError naming what is wrong."""
    if not is_gumbel_policy(spec):
        raise ValueError(f"not a gumbel policy: {spec!r} (expected gumbel:EVALUATOR[:key=value,...])")
    parts = spec[len(PREFIX):].split(":", 1)
    evaluator = parts[0]
    kw: dict = {"evaluator": evaluator}
    if evaluator == NET:  # gumbel:onnx:PATH[:key=value,...][:key=value...]: options are the trailing k=v segments
        segs = parts[1].split(":") if len(parts) > 1 else []
        opts = []
        while len(segs) > 1 and "=" in segs[-1]:
            opts.insert(0, segs.pop())
        kw["model"] = ":".join(segs)
        if not kw["model"]:
            raise ValueError(f"policy {spec!r}: no model path after gumbel:onnx:")
        parts = [evaluator, ",".join(opts)]
    elif evaluator not in LEAF_EVALUATORS:
        raise ValueError(f"policy {spec!r}: unknown evaluator {evaluator!r} "
                         f"(expected {', '.join(LEAF_EVALUATORS)} or onnx:PATH)")
    types = {f.name: f.type for f in fields(GumbelPolicy)}
    seen: set = set()
    if len(parts) > 1 and parts[1]:
        for item in parts[1].split(","):
            key, eq, value = item.partition("=")
            if not eq or key not in types or key in ("evaluator", "model"):
                raise ValueError(f"policy {spec!r}: bad option {item!r} (keys: sims, top_k, temp, c_visit, c_scale, rollout)")
            if key in seen:  # sims=8,sims=16 silently meant 16
                raise ValueError(f"policy {spec!r}: {key} is given twice")
            seen.add(key)
            # plain ASCII numbers only: int() also takes "1_0", " 8" and other scripts' digits
            if not re.fullmatch(r"[0-9]+" if types[key] != "float" else r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?", value):
                raise ValueError(f"policy {spec!r}: {key} must be a number, got {value!r}")
            kw[key] = float(value) if types[key] == "float" else int(value)
    p = GumbelPolicy(**kw)
    if not 1 <= p.sims <= 100_000:
        raise ValueError(f"policy {spec!r}: sims must be 1..100000")
    if not 1 <= p.top_k <= _core.SEARCH_MAX_TOPK:
        raise ValueError(f"policy {spec!r}: top_k must be 1..{_core.SEARCH_MAX_TOPK}")
    if not 0 <= p.rollout <= 100_000:
        raise ValueError(f"policy {spec!r}: rollout must be 0..100000")
    for key in ("temp", "c_visit", "c_scale"):
        v = getattr(p, key)
        if not (math.isfinite(v) and 0 <= v <= 1e6):  # the search works in float: a bound, not just finite
            raise ValueError(f"policy {spec!r}: {key} must be a number 0..1e6")
    return p


def check_policy(value: str) -> str:
    """A self-play policy name: a core policy (random, heuristic) as it is, or a gumbel:... spec,
    normalised. ValueError (one line) for anything else; usable as an argparse ``type``."""
    from .. import POLICIES

    if value in POLICIES:
        return value
    if is_gumbel_policy(value):
        return parse_policy(value).spec
    raise ValueError(f"unknown policy {value!r} (expected {', '.join(POLICIES)} or gumbel:EVALUATOR[:key=value,...])")
