"""The policy/value network: a residual conv net over the native encoding's planes and globals.

Inputs are what the NPZ export and BatchEnv write (docs/npz_format.md): ``features`` (B, C, H, W)
and ``globals`` (B, G). Outputs:

* ``policy`` (B, A): logits over the board's whole action space (canonical indices);
* ``value`` (B, 4): tanh outcome per player slot, slot 0 = the player to move, slot k = the k-th
  seat after it in turn order (as the planes number players); slots >= the player count are
  meaningless.

The policy head is convolutional: every action block of the action space whose index is
``cell * K + j`` (placements, moves, captures, recovery slides, lines, territory, eliminations)
gets K logits per cell from a 1x1 convolution, read at the cell's pixel; the few one-index
blocks (skips, no-actions, swap, resign) come from a small linear layer on the pooled trunk.
So the head has about 230 channels instead of a dense layer of A outputs, and every cell is
treated alike, which suits the board's symmetries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..export import NUM_GLOBALS, NUM_PLANES, action_space, cell_pixels, spatial_size

#: CPU-friendly default (width, depth) per board.
DEFAULT_SIZE = {"square8": (48, 4), "hex8": (48, 4), "square19": (64, 6), "hexagonal": (64, 6)}


@dataclass(frozen=True)
class NetConfig:
    board: str
    width: int
    depth: int
    planes: int = NUM_PLANES
    globals: int = NUM_GLOBALS
    value_slots: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def head_layout(board: str):
    """(per-cell blocks [(offset, K)], one-index blocks [offset], number of cells, action space size)."""
    space = action_space(board)
    cells = int(space["cells"])
    per_cell, single = [], []
    for name, (off, size) in space["blocks"].items():
        if size % cells == 0:
            per_cell.append((off, size // cells))
        elif size == 1:
            single.append(off)
        else:  # pragma: no cover - every board's layout is one of the two kinds
            raise ValueError(f"{board}: action block {name} of size {size} is neither per-cell nor one index")
    return per_cell, single, cells, int(space["size"])


class ResBlock(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)
        self.c2, self.b2 = nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(x + self.b2(self.c2(y)))


class PolicyValueNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        per_cell, single, cells, size = head_layout(cfg.board)
        h, wd = spatial_size(cfg.board)
        self.grid = (h, wd)
        self.stem = nn.Conv2d(cfg.planes, w, 3, padding=1, bias=False)
        self.stem_globals = nn.Linear(cfg.globals, w)
        self.stem_bn = nn.BatchNorm2d(w)
        self.blocks = nn.Sequential(*[ResBlock(w) for _ in range(cfg.depth)])
        k_total = sum(k for _, k in per_cell)
        self.policy_conv = nn.Conv2d(w, k_total, 1)
        self.policy_single = nn.Linear(w + cfg.globals, len(single))
        self.value_conv = nn.Conv2d(w, 8, 1)
        self.value_fc = nn.Sequential(nn.Linear(8 + w + cfg.globals, 64), nn.ReLU(), nn.Linear(64, cfg.value_slots))
        self.register_buffer("cell_pixels", torch.as_tensor(np.asarray(cell_pixels(cfg.board), dtype=np.int64)),
                             persistent=False)
        # Output order: the blocks in action-space order, each either (cells * K) or 1 index.
        pieces, ch = [], 0
        blocks = sorted([(off, "cell", k) for off, k in per_cell] + [(off, "one", 1) for off in single])
        one_i = {off: i for i, off in enumerate(single)}
        for off, kind, k in blocks:
            if kind == "cell":
                pieces.append(("cell", ch, k))
                ch += k
            else:
                pieces.append(("one", one_i[off], 1))
        self.pieces = pieces
        self.cells, self.action_size = cells, size

    def forward(self, features, globals_):
        x = self.stem(features) + self.stem_globals(globals_)[:, :, None, None]
        x = self.blocks(torch.relu(self.stem_bn(x)))
        b = x.shape[0]
        pooled = x.mean(dim=(2, 3))
        pg = torch.cat([pooled, globals_], dim=1)
        # (B, cells, K_total). The cells are picked as whole rows of a (pixels, B, K) view: ONNX Runtime
        # gathers rows fast, while a gather on the last axis of (B, K, pixels) cost more than the
        # trunk of a small net.
        pc = self.policy_conv(x).flatten(2).permute(2, 0, 1)[self.cell_pixels].transpose(0, 1)
        ps = self.policy_single(pg)
        out = []
        for kind, start, k in self.pieces:
            if kind == "cell":
                out.append(pc[:, :, start:start + k].reshape(b, self.cells * k))
            else:
                out.append(ps[:, start:start + 1])
        policy = torch.cat(out, dim=1)
        v = self.value_conv(x).mean(dim=(2, 3))
        value = torch.tanh(self.value_fc(torch.cat([torch.relu(v), pg], dim=1)))
        return policy, value


def build_model(cfg: NetConfig) -> PolicyValueNet:
    return PolicyValueNet(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
