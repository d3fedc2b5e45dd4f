"""Training-data export: game DB -> ``.npz`` samples (``docs/npz_format.md``).

* :func:`export_db` / ``ringrift-export``: replay validated games in C++ and write one sample
  per pre-move state (planes, globals, played action, rank-aware outcome values);
* the fixed per-board action index space: :func:`encode_action`, :func:`decode_action`,
  :func:`canonical_action`, :func:`legal_action_indices`, :func:`action_space`;
* the state encoder: :func:`encode_state`, :data:`PLANE_NAMES`, :data:`GLOBAL_NAMES`;
* board symmetries for augmentation: :mod:`ringrift.export.symmetry`;
* :func:`export_upstream` / ``ringrift-export --encoding upstream``: the same games in upstream's
  training encoding (``docs/upstream_npz.md``).
"""

from .actions import (
    MOVE_TYPES,
    action_space,
    action_space_size,
    canonical_action,
    decode_action,
    describe_action,
    encode_action,
    legal_action_indices,
)
from . import symmetry
from .exporter import FORMAT_NAME, FORMAT_VERSION, ExportError, ExportResult, export_db, split_games
from .upstream import export_upstream
from .features import (
    CLIP,
    GLOBAL_NAMES,
    NUM_GLOBALS,
    NUM_PLANES,
    PLANE_NAMES,
    cell_pixels,
    encode_state,
    outcome_values,
    spatial_size,
)

__all__ = [
    "CLIP",
    "ExportError",
    "ExportResult",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GLOBAL_NAMES",
    "MOVE_TYPES",
    "NUM_GLOBALS",
    "NUM_PLANES",
    "PLANE_NAMES",
    "action_space",
    "action_space_size",
    "canonical_action",
    "cell_pixels",
    "decode_action",
    "describe_action",
    "encode_action",
    "encode_state",
    "export_db",
    "export_upstream",
    "legal_action_indices",
    "outcome_values",
    "spatial_size",
    "split_games",
    "symmetry",
]
