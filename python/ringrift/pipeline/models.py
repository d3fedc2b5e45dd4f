"""Shipping a net to the workers: self-play with ``onnx:PATH`` and ``gumbel:onnx:PATH`` on
every backend.

The controller resolves the policy once, before anything is dispatched (``resolve_policy``):
the model file must exist and load (so a missing or broken file fails here, in one line,
before any game), and the games' stored policy is the net's id (``onnx:square8-<id>...``), as
in a local run. Workers get the file content-addressed: it lives at
``models/<sha256>.onnx`` under the worker's work dir (ssh hosts) or data dir (p2p nodes, Ray
nodes' temp dir), a worker that already holds a file of that hash is not sent it again, and a
file is installed only after its SHA-256 was checked on arrival (``install_model``); a
mismatch deletes it. The job's policy is the same spec with the path rewritten to that local
file (``ShippedModel.policy_at``), and the worker checks the hash again before playing
(``--model-sha256``), so every worker plays exactly the controller's net.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import RingRiftError
from ..exitcodes import UsageError

MODELS_DIR = "models"  # under a worker's work dir / a node's data dir
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MODEL_BYTES = int(os.environ.get("RINGRIFT_MAX_MODEL_BYTES", str(2 << 30)))  # a net far bigger than any we train
CHUNK = 1 << 20


class ModelError(UsageError):
    """A model file that cannot be shipped or used (one line): unusable input, exit status 2."""


def sha256_file(path) -> str:
    import hashlib  # here: the self-play of a plain policy never hashes a model (3 ms of start-up)

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def model_rel(sha256: str) -> str:
    """Where a worker keeps the model of hash `sha256`, relative to its work/data dir."""
    return f"{MODELS_DIR}/{sha256}.onnx"


def model_path_ok(path: str, sha256: str) -> bool:
    """Whether `path` is the content-addressed place of `sha256` (what a job may name)."""
    return bool(SHA256.match(sha256)) and path == model_rel(sha256)


@dataclass(frozen=True)
class ShippedModel:
    path: Path  # on the controller
    sha256: str
    size: int
    prefix: str  # the policy spec is prefix + model path + suffix
    suffix: str

    @property
    def rel(self) -> str:
        return model_rel(self.sha256)

    def policy_at(self, path: str) -> str:
        """The policy spec with the model at `path` (a worker's copy)."""
        return f"{self.prefix}{path}{self.suffix}"

    @property
    def remote_policy(self) -> str:
        """The spec a worker plays: the model at models/<sha256>.onnx under its work dir."""
        return self.policy_at(self.rel)


def model_of_policy(policy: str) -> tuple[str, str, str] | None:
    """(prefix, model path, suffix) of an ``onnx:PATH...`` or ``gumbel:onnx:PATH...`` spec, None
    for a policy without a model file."""
    if policy.startswith("onnx:"):
        from ..train.players import PlayerSpecError, parse_spec

        try:
            _, path, _ = parse_spec(policy)
        except PlayerSpecError as exc:
            raise ModelError(f"--policy: {exc}") from None
        prefix = "onnx:"
    elif policy.startswith("gumbel:onnx:"):
        from ..search.spec import parse_policy

        try:
            p = parse_policy(policy)
        except ValueError as exc:
            raise ModelError(f"--policy: {exc}") from None
        path, prefix, policy = p.model, "gumbel:onnx:", p.spec
    else:
        return None
    if not policy.startswith(prefix + path):  # the path is the spec's first field in both forms
        raise ModelError(f"--policy {policy!r}: cannot tell the model path apart from the options")
    return prefix, path, policy[len(prefix) + len(path):]


def resolve_policy(policy: str, board: str | None = None) -> tuple[str, ShippedModel | None]:
    """(the policy stored with the games, the model to ship or None). For a net's policy: the
    file must exist, be readable and load in ONNX Runtime here (its metadata names its board),
    checked before any game is dispatched; one-line ModelError otherwise."""
    parts = model_of_policy(policy)
    if parts is None:
        return policy, None
    prefix, path, suffix = parts
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file {path}: no such file")
    if not p.is_file():
        raise ModelError(f"model file {path}: not a regular file")
    try:
        size = p.stat().st_size
        digest = sha256_file(p)
    except OSError as exc:
        raise ModelError(f"model file {path}: cannot read it ({exc.strerror or exc})") from None
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"model file {path}: {size} bytes, over the {MAX_MODEL_BYTES} bytes a worker accepts "
                         f"(RINGRIFT_MAX_MODEL_BYTES)")
    name = stored_name(prefix + path + suffix, board)
    return name, ShippedModel(path=p.resolve(), sha256=digest, size=size, prefix=prefix, suffix=suffix)


def stored_name(policy: str, board: str | None = None) -> str:
    """The name the games of a net's policy are stored under (loads the model: its id and board)."""
    from ..train.players import PlayerSpecError

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelError("onnx policies need onnxruntime on this machine too (it reads the model's id and board "
                         "before dispatch): pip install 'ringrift[train]'") from None
    try:
        if policy.startswith("gumbel:"):
            from ..search.selfplay import net_evaluator, parse_policy

            p = parse_policy(policy)
            if board is not None:
                net_evaluator(p.model, board, threads=1)  # refuses a net of another board or encoding
            return p.name
        from ..train.players import make_player

        player = make_player(policy, threads=1)
        if board is not None and player.meta.get("board") != board:
            raise ModelError(f"model file {player.path}: a net for board {player.meta.get('board')!r}, not {board}")
        return player.name
    except (PlayerSpecError, ValueError, FileNotFoundError) as exc:
        raise ModelError(f"model: {exc}") from None
    except RingRiftError:
        raise
    except Exception as exc:  # noqa: BLE001  (onnxruntime's own error types)
        raise ModelError(f"model file: cannot load it in ONNX Runtime: {str(exc).splitlines()[0]}") from None


# ---- the worker's side ------------------------------------------------------------------------

def have_model(work_dir, sha256: str) -> bool:
    """Whether `work_dir` holds the model of hash `sha256` (its bytes checked)."""
    path = Path(work_dir) / model_rel(sha256)
    try:
        return path.is_file() and sha256_file(path) == sha256
    except OSError:
        return False


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return getattr(onnxruntime, "__version__", "?")


def install_model(work_dir, sha256: str, part) -> Path:
    """Check the received file `part` against `sha256` and move it into place
    (models/<sha256>.onnx under `work_dir`); a mismatch deletes it (ModelError)."""
    part = Path(part)
    if not SHA256.match(sha256):
        raise ModelError(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)")
    try:
        got = sha256_file(part)
    except OSError as exc:
        raise ModelError(f"received model {part}: cannot read it ({exc.strerror or exc})") from None
    if got != sha256:
        part.unlink(missing_ok=True)
        raise ModelError(f"received model does not match its SHA-256 (expected {sha256[:16]}..., got {got[:16]}...): "
                         f"deleted, not used")
    dest = Path(work_dir) / model_rel(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return dest


def check_model(path, sha256: str | None) -> None:
    """Before a worker plays: its model file is there and has the hash the controller sent."""
    if not Path(path).is_file():
        raise ModelError(f"model file {path}: no such file on this worker")
    if sha256 is not None and sha256_file(path) != sha256:
        raise ModelError(f"model file {path} does not match the SHA-256 the controller sent ({sha256[:16]}...)")


def install_main(args) -> int:
    """``python -m ringrift.pipeline model-install``: what the ssh backend runs on a host after
    copying a model there. One JSON line: {"ok": true, "path": ...} or {"ok": false, "error": ...}."""
    try:
        dest = install_model(args.work_dir, args.sha256, Path(args.work_dir) / args.part)
    except ModelError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"ok": True, "path": str(dest)}), flush=True)
    return 0
