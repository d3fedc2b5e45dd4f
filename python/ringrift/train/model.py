"""The policy/value network: a residual conv net over an encoding's planes and globals.

Inputs are what the NPZ export and BatchEnv write (docs/npz_format.md): ``features`` (B, C, H, W)
and ``globals`` (B, G); or, for a net of upstream's encoding (``NetConfig.encoding="upstream"``),
the planes and globals of ``ringrift-export --encoding upstream`` (docs/upstream_npz.md). Outputs:

* ``policy`` (B, A): logits over the board's whole action space (canonical indices, or upstream's
  board-aware policy indices: A = upstream's ``policy_size``);
* ``value`` (B, 4): tanh outcome per player slot, slot 0 = the player to move, slot k = the k-th
  seat after it in turn order (as the planes number players); slots >= the player count are
  meaningless.

The policy head is convolutional: every action block of the action space whose index is
``cell * K + j`` (placements, moves, captures, recovery slides, lines, territory, eliminations)
gets K logits per cell from a 1x1 convolution, read at the cell's pixel; the few one-index
blocks (skips, no-actions, swap, resign) come from a small linear layer on the pooled trunk.
So the head has about 230 channels instead of a dense layer of A outputs, and every cell is
treated alike, which suits the board's symmetries. Upstream's policy layout has the same two
kinds of blocks (per-cell blocks over the S x S grid, one-index blocks) plus unused padding
indices up to its ``policy_size``; padding gets a constant logit of PAD_LOGIT.
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
    encoding: str = "native"  # or "upstream": the planes, globals and policy indices of upstream's encoding

    def to_dict(self) -> dict:
        return asdict(self)


#: The logit of upstream's unused policy indices (never a target, never playable).
PAD_LOGIT = -1e4


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


def upstream_head_layout(board: str):
    """Upstream's board-aware policy layout (docs/upstream_npz.md, "Policy index") as
    (per-cell blocks [(offset, K)], one-index blocks [offset], padding (offset, count), the pixel
    of each policy cell, grid (S, S), policy size). Policy cells run over the whole S x S grid:
    square ``y * S + x``, whose pixel in upstream's [x][y] planes is ``x * S + y``; hex
    ``(y + r) * S + (x + r)``, the pixel itself."""
    from .. import _core

    lay = _core.upstream.layout(board)
    n, size = int(lay["spatial_size"]), int(lay["policy_size"])
    cells, d = n * n, n - 1
    hex_board = board in ("hex8", "hexagonal")
    if hex_board:
        per_cell = [(0, 3), (3 * cells, 6 * d)]
        single = [3 * cells + 6 * d * cells]
        pixels = np.arange(cells)
    else:
        move = 3 * cells
        line = move + 8 * d * cells
        elim = line + 4 * cells
        skips = elim + cells  # skip_placement, swap_sides, skip_recovery, 4 line options
        territory = skips + 7
        tail = territory + 32 * cells  # 7 no-action / skip / forced-elimination indices
        per_cell = [(0, 3), (move, 8 * d), (line, 4), (elim, 1), (territory, 32)]
        single = list(range(skips, skips + 7)) + list(range(tail, tail + 7))
        pos = np.arange(cells)
        pixels = (pos % n) * n + pos // n
    used = max([off + k * cells for off, k in per_cell] + [off + 1 for off in single])
    if used > size:  # pragma: no cover - the layout above is upstream's
        raise ValueError(f"{board}: upstream policy layout needs {used} indices, policy_size is {size}")
    return per_cell, single, (used, size - used), pixels, (n, n), size


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
        if cfg.encoding == "upstream":
            per_cell, single, pad, pixels, (h, wd), size = upstream_head_layout(cfg.board)
            cells = len(pixels)
        elif cfg.encoding == "native":
            per_cell, single, cells, size = head_layout(cfg.board)
            pad, pixels = None, cell_pixels(cfg.board)
            h, wd = spatial_size(cfg.board)
        else:
            raise ValueError(f"unknown encoding {cfg.encoding!r} (native or upstream)")
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
        self.register_buffer("cell_pixels", torch.as_tensor(np.asarray(pixels, dtype=np.int64)),
                             persistent=False)
        # Output order: the blocks in action-space order, each either (cells * K) or 1 index
        # (then upstream's padding).
        pieces, ch = [], 0
        blocks = sorted([(off, "cell", k) for off, k in per_cell] + [(off, "one", 1) for off in single])
        one_i = {off: i for i, off in enumerate(single)}
        at = 0
        for off, kind, k in blocks:
            if off != at:  # pragma: no cover - both layouts are contiguous up to the padding
                raise ValueError(f"{cfg.board}: policy layout has a gap at index {at}")
            if kind == "cell":
                pieces.append(("cell", ch, k))
                ch += k
                at += cells * k
            else:
                pieces.append(("one", one_i[off], 1))
                at += 1
        if pad is not None and pad[1] > 0:
            pieces.append(("pad", 0, pad[1]))
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
            elif kind == "one":
                out.append(ps[:, start:start + 1])
            else:  # upstream's unused indices
                out.append((torch.zeros_like(ps[:, :1]) + PAD_LOGIT).expand(b, k))
        policy = torch.cat(out, dim=1)
        v = self.value_conv(x).mean(dim=(2, 3))
        value = torch.tanh(self.value_fc(torch.cat([torch.relu(v), pg], dim=1)))
        return policy, value


def build_model(cfg: NetConfig) -> PolicyValueNet:
    return PolicyValueNet(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
