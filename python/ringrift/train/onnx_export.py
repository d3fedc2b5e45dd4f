"""ONNX export of a trained net, and reading a model's metadata back.

The contract (docs/training.md, "The ONNX model"): inputs ``features`` float32 (B, C, H, W) and
``globals`` float32 (B, G) exactly as BatchEnv and the NPZ export write them; outputs ``policy``
float32 (B, A), logits over the board's canonical action space (mask illegal actions yourself),
and ``value`` float32 (B, 4), tanh outcome per player slot (slot 0 = the player to move). The
batch dimension is dynamic. The metadata of the checkpoint is stored as JSON under the model's
metadata_props key ``ringrift``.

The export uses the TorchScript-based exporter (``dynamo=False``): it needs only torch and
onnx, while the dynamo exporter would also need onnxscript.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from .. import atomic

META_KEY = "ringrift"
OPSET = 17


def export_onnx(model, meta: dict, path: Path) -> Path:
    import onnx
    import torch

    path = Path(path)
    cfg = model.cfg
    h, w = model.grid
    x = torch.zeros(2, cfg.planes, h, w)
    g = torch.zeros(2, cfg.globals)
    model.eval()
    with atomic.replacing(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x, g), str(tmp), input_names=["features", "globals"],
                              output_names=["policy", "value"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"features": {0: "batch"}, "globals": {0: "batch"},
                                            "policy": {0: "batch"}, "value": {0: "batch"}})
        m = onnx.load(str(tmp))
        entry = m.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True, default=str)
        onnx.save(m, str(tmp))
    return path


def model_id(path: Path) -> str:
    """A short id of a model file: the board and the first 12 hex digits of its BLAKE2b hash."""
    h = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    return h[:12]


def read_meta(session) -> dict:
    """The ``ringrift`` metadata of an onnxruntime session's model ({} when absent)."""
    props = session.get_modelmeta().custom_metadata_map
    return json.loads(props[META_KEY]) if META_KEY in props else {}


def session(path: Path, device: str = "cpu", threads: int = 0):
    """An onnxruntime InferenceSession (CUDA provider with device="cuda")."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise _err("onnx policies need onnxruntime (pip install 'ringrift[train]')") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX model")
    so = ort.SessionOptions()
    if threads > 0:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise _err("--device cuda: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise _err(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def _err(message: str):
    from .players import PlayerSpecError

    return PlayerSpecError(message)


def run(sess, features: np.ndarray, globals_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    policy, value = sess.run(["policy", "value"], {"features": np.ascontiguousarray(features, dtype=np.float32),
                                                   "globals": np.ascontiguousarray(globals_, dtype=np.float32)})
    return policy, value
