"""Live inputs for a net of upstream's encoding (``onnx:PATH`` of a net trained on
``ringrift-export --encoding upstream`` data or upstream's own files).

Upstream's sample of a state is its base frame followed by the base frames of the three states
before it in the same game, newest first, zeros before the game's start (docs/upstream_npz.md,
"History stacking"); each frame is encoded from its own state's player to move. The export
replays recorded games; here the same C++ frame encoder (``_core.upstream.encode_env_frames``)
reads the live BatchEnv states, and every game keeps its last three frames: ``before_step``
encodes the state of every game about to move (``players.play_step`` calls it before each
step), ``after_step`` pushes that frame into the game's history. So the planes the net sees for
move j of a game are the planes the upstream export writes for sample j of that game.

The net's policy is over upstream's board-aware indices; the playable actions of a state are
mapped to them by ``_core.upstream.env_policy_indices`` (the move each action decodes to,
encoded as upstream's exporter encodes a recorded move). An action upstream has no index for
(``swap_sides`` on hex boards) is never chosen by the net.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..selfplay.batch_env import to_host

#: What our encoder computes; a net trained on another version of upstream's encoding is refused.
FEATURE_VERSION, HISTORY_LENGTH = 2, 3


def encoder_type(board: str) -> str:
    return "hex_v3" if board in ("hex8", "hexagonal") else f"square_v{FEATURE_VERSION}"


def check_model(meta: dict, board: str, path) -> str | None:
    """Why a net of upstream's encoding cannot play ``board`` with these inputs (None: it can)."""
    lay = _core.upstream.layout(board)
    want = {"board": board, "encoder_type": encoder_type(board), "feature_version": FEATURE_VERSION,
            "history_length": HISTORY_LENGTH, "policy_size": int(lay["policy_size"]),
            "in_channels": int(lay["in_channels"])}
    for key, value in want.items():
        if meta.get(key) != value:
            return (f"{path}: a net of upstream's encoding with {key} {meta.get(key)!r}; live play computes "
                    f"{key} {value!r}")
    return None


class UpstreamInputs:
    """Per-game frame history of a BatchEnv and the net's inputs from it."""

    def __init__(self, env):
        lay = _core.upstream.layout(env.board)
        self.board, self.env = env.board, env
        self.planes, self.size = int(lay["base_planes"]), int(lay["spatial_size"])
        shape = (env.n, self.planes, self.size, self.size)
        self.current = np.zeros(shape, dtype=np.float32)
        self.globals = np.zeros((env.n, _core.upstream.NUM_GLOBALS), dtype=np.float32)
        self.history = np.zeros((env.n, HISTORY_LENGTH) + shape[1:], dtype=np.float32)  # newest first

    def start(self, slots: np.ndarray) -> None:
        self.history[slots] = 0.0

    def before_step(self, live: np.ndarray) -> None:
        if len(live):
            f, g = _core.upstream.encode_env_frames(self.board, to_host(self.env.states), live.astype(np.int64))
            self.current[live], self.globals[live] = f, g

    def after_step(self, live: np.ndarray) -> None:
        if len(live):
            self.history[live, 1:] = self.history[live, :-1]
            self.history[live, 0] = self.current[live]

    def inputs(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (k, 4 * planes, S, S), globals (k, 20)) of the games in ``slots``."""
        k = len(slots)
        feats = np.concatenate([self.current[slots][:, None], self.history[slots]], axis=1)
        return feats.reshape(k, -1, self.size, self.size), self.globals[slots]

    def legal_logits(self, logits: np.ndarray, slots: np.ndarray, legal: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Logit of each playable action ``legal[i, :counts[i]]`` (-inf elsewhere and where
        upstream has no index for the action)."""
        idx = _core.upstream.env_policy_indices(self.board, to_host(self.env.states), slots.astype(np.int64),
                                                 legal.astype(np.int32), counts.astype(np.int32))
        z = np.take_along_axis(logits, np.maximum(idx, 0), axis=1).astype(np.float64)
        z = np.where(idx >= 0, z, -np.inf)
        none = ~np.isfinite(z).any(axis=1)  # no action upstream can name: choose among them uniformly
        if none.any():
            valid = np.arange(z.shape[1])[None, :] < counts[:, None]
            z[none] = np.where(valid[none], 0.0, -np.inf)
        return z
