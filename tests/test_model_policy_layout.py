"""The policy head's logits are laid out in the action space's order (docs/training.md): per-cell
blocks cell-major with K values per cell, one-index blocks in place. Checked on every board against
a direct computation from the head's convolution (the forward picks cells as whole rows for speed)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the train extra is not installed: pip install torch '.[train]'")

from ringrift.train.model import NetConfig, build_model  # noqa: E402


@pytest.mark.parametrize("board", ["square8", "hex8", "square19", "hexagonal"])
def test_policy_logits_follow_the_action_space_layout(board):
    torch.manual_seed(1)
    m = build_model(NetConfig(board, 4, 1)).eval()
    h, w = m.grid
    x, g = torch.randn(3, m.cfg.planes, h, w), torch.randn(3, m.cfg.globals)
    with torch.no_grad():
        policy, _ = m(x, g)
        # the trunk and heads again, by the plain definition: logit of (cell c, channel j) at c * K + j
        t = m.stem(x) + m.stem_globals(g)[:, :, None, None]
        t = m.blocks(torch.relu(m.stem_bn(t)))
        pg = torch.cat([t.mean(dim=(2, 3)), g], dim=1)
        conv = m.policy_conv(t).flatten(2)  # (B, K_total, pixels)
        single = m.policy_single(pg)
    col = 0
    for kind, start, k in m.pieces:
        if kind == "cell":
            for c in (0, m.cells // 2, m.cells - 1):
                pix = int(m.cell_pixels[c])
                for j in range(k):
                    assert torch.allclose(policy[:, col + c * k + j], conv[:, start + j, pix], atol=1e-5)
            col += m.cells * k
        else:
            assert torch.allclose(policy[:, col], single[:, start], atol=1e-5)
            col += 1
    assert col == policy.shape[1] == m.action_size
