"""Board symmetries (ringrift.export.symmetry, ringrift-export --symmetries): the tables, and
the claim behind augmentation, checked on real positions: the image of a position has the
image planes, the same globals and the image legal actions, and under an exact symmetry every
move's successor is the image of the successor. A real SQLite DB for the export."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringrift import Game, _core
from ringrift.export import decode_action, encode_state, export_db, legal_action_indices, spatial_size
from ringrift.export.symmetry import augment, symmetric_action, symmetries, transform_game, transform_planes

from test_export import load, make_db, replay, rows_by_id, shards_match_one_shot

BOARDS = ("square8", "hex8", "square19", "hexagonal")
EXACT = {"square8": tuple(range(8)), "square19": tuple(range(8)), "hexagonal": tuple(range(12)),
         "hex8": (0, 3, 6, 9)}


def random_position(board: str, players: int, seed: int, plies: int) -> Game:
    game, rng = Game(board, players), random.Random(seed)
    for _ in range(plies):
        if game.is_over:
            break
        game.apply(rng.choice(game.legal_moves()))
    return game


# ---- the tables ----------------------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_tables_are_permutations_that_form_a_group(board):
    sym = symmetries(board)
    assert sym.n == (12 if board in ("hex8", "hexagonal") else 8)
    cells = sym.cells.astype(np.int64)
    n = cells.shape[1]
    assert np.array_equal(cells[0], np.arange(n)) and np.array_equal(sym.pixels[0], np.arange(sym.pixels.shape[1]))
    rows = {tuple(r) for r in cells}
    assert len(rows) == sym.n
    for t in range(sym.n):
        assert sorted(cells[t]) == list(range(n))
        assert sorted(sym.pixels[t]) == list(range(sym.pixels.shape[1]))
        for u in range(sym.n):
            assert tuple(cells[t][cells[u]]) in rows  # closed under composition


def test_symmetries_follow_the_documented_coordinates():
    g8, n = Game("square8", 2), 7
    want = {1: lambda x, y: (n - y, x), 4: lambda x, y: (n - x, y), 6: lambda x, y: (y, x)}
    for t, f in want.items():
        for c in range(64):
            assert tuple(g8.cell_coords(int(symmetries("square8").cells[t][c]))[:2]) == f(*g8.cell_coords(c)[:2])
    hx = Game("hexagonal", 2)
    for c in range(hx.num_cells):
        x, y, z = hx.cell_coords(c)
        assert hx.cell_coords(int(symmetries("hexagonal").cells[1][c])) == (-z, -x, -y)  # 60 degrees
        assert hx.cell_coords(int(symmetries("hexagonal").cells[6][c])) == (y, x, z)     # mirror


@pytest.mark.parametrize("board", BOARDS)
def test_exact_symmetries(board):
    assert symmetries(board).exact == EXACT[board]


# ---- positions ------------------------------------------------------------------------------------

def check_position(game: Game, exact_moves: int) -> None:
    """Planes, globals and legal actions of every image; successors under exact symmetries (of
    up to `exact_moves` legal moves, all kinds of move first)."""
    board = game.board
    planes, globals_ = encode_state(game)
    moves = game.legal_moves()
    by_kind: dict = {}
    for m in moves:
        by_kind.setdefault(m.type, []).append(m)
    sample = [ms[0] for ms in by_kind.values()] + [m for ms in by_kind.values() for m in ms[1:]]
    for t in range(symmetries(board).n):
        img = transform_game(game, t)
        p2, g2 = encode_state(img)
        assert np.array_equal(transform_planes(planes, board, t), p2), f"planes differ under symmetry {t}"
        assert np.array_equal(globals_, g2)
        mapped = sorted({symmetric_action(game, m, t) for m in moves})
        assert mapped == sorted({int(i) for i in legal_action_indices(img)}), f"legal actions differ under {t}"
        if t not in symmetries(board).exact:
            continue
        for m in sample[:exact_moves]:
            after = game.clone()
            after.apply(m)
            img_after = img.clone()
            img_after.apply(decode_action(img, symmetric_action(game, m, t)))
            assert transform_game(after, t).hash() == img_after.hash(), f"{m.type} under symmetry {t}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(board=st.sampled_from(("square8", "hex8")), players=st.integers(2, 4), seed=st.integers(0, 2**31),
       plies=st.integers(0, 120))
def test_small_board_positions_map_onto_their_images(board, players, seed, plies):
    check_position(random_position(board, players, seed, plies), exact_moves=40)


@pytest.mark.parametrize("board, players, plies", [("square19", 2, 400), ("hexagonal", 3, 500)])
def test_large_board_positions_map_onto_their_images(board, players, plies):
    check_position(random_position(board, players, 7, plies), exact_moves=6)


def test_every_move_kind_is_checked_somewhere():
    """The position checks see the rare kinds (lines, territory, recovery) on the exact symmetries."""
    kinds: set = set()
    for seed in range(40):
        game, rng = Game("square8", 2), random.Random(seed)
        while not game.is_over:
            moves = game.legal_moves()
            if any(m.type in ("choose_territory_option", "process_line", "choose_line_option", "recovery_slide")
                   for m in moves):
                kinds |= {m.type for m in moves}
                check_position(game, exact_moves=len(moves))
            game.apply(rng.choice(moves))
        if {"choose_territory_option", "choose_line_option", "recovery_slide"} <= kinds:
            break
    assert {"choose_territory_option", "process_line", "choose_line_option", "recovery_slide"} <= kinds


def test_hex8_territory_breaks_the_other_symmetries():
    """Why hex8 has only four exact symmetries: a territory move whose image under another one
    collapses other cells than the image of its own collapse (border steps are square steps)."""
    for seed in range(200):
        game, rng = Game("hex8", 2), random.Random(seed)
        while not game.is_over:
            moves = game.legal_moves()
            for m in moves:
                if m.type != "choose_territory_option":
                    continue
                for t in (1, 2):
                    after = game.clone()
                    after.apply(m)
                    img = transform_game(game, t)
                    img.apply(decode_action(img, symmetric_action(game, m, t)))
                    if transform_game(after, t).hash() != img.hash():
                        return
            game.apply(rng.choice(moves))
    pytest.fail("no hex8 territory move broke symmetry 1 or 2 in 200 games")


def test_bad_symmetry_arguments_are_clear_errors():
    game = Game("square8", 2)
    with pytest.raises(ValueError, match=r"symmetry 8 out of range: this board has 8 \(0 \.\. 7\)"):
        transform_game(game, 8)
    with pytest.raises(ValueError, match="same board"):
        _core.export.transform_into(game, Game("hex8", 2), 1)
    placement = game.legal_moves()[0]
    game.apply(placement)  # now in movement: the placement is no longer legal
    with pytest.raises(ValueError, match="not legal"):
        symmetric_action(game, placement, 1)
    with pytest.raises(ValueError, match="out of range"):
        transform_planes(np.zeros((26, 8, 8), np.float32), "square8", -1)


# ---- export and augmentation --------------------------------------------------------------------

@pytest.mark.parametrize("board", ["square8", "hex8"])
def test_export_stores_the_index_of_every_image(tmp_path, board):
    db = make_db(tmp_path / "g.db", [(board, 2, 5, 6), (board, 3, 6, 4)])
    export_db(db, tmp_path / "s.npz", split_ratio=0.5, with_symmetries=True)
    sym = symmetries(board)
    rows = rows_by_id(db)
    for name in ("s.npz", "s_val.npz"):
        z = load(tmp_path / name)
        meta = json.loads(str(z["metadata"]))
        assert meta["symmetries"] == sym.n and tuple(meta["exact_symmetries"]) == sym.exact
        pis = z["policy_indices_sym"]
        assert pis.shape == (len(z["values"]), sym.n) and pis.dtype == np.int32
        assert np.array_equal(pis[:, 0], z["policy_indices"])
        picks = np.random.default_rng(1).choice(len(pis), size=min(40, len(pis)), replace=False)
        for i in picks:
            game = replay(rows[int(z["game_ids"][i])], int(z["ply"][i]))
            move = _core.move_from_record(z["moves"][i].tobytes())
            for t in range(sym.n):
                assert pis[i, t] == symmetric_action(game, move, t)
                assert np.array_equal(transform_planes(z["features"][i], board, t),
                                      encode_state(transform_game(game, t))[0])
    export_db(db, tmp_path / "plain.npz", split_ratio=0.5)
    assert "policy_indices_sym" not in load(tmp_path / "plain.npz")


def test_sharded_threaded_export_keeps_the_image_indices(tmp_path):
    db = make_db(tmp_path / "g.db", [("square8", 2, 7, 8)])
    one = export_db(db, tmp_path / "one.npz", with_symmetries=True, threads=1)
    parts = export_db(db, tmp_path / "many.npz", with_symmetries=True, max_samples_per_file=150,
                      chunk_games=2, threads=2)
    assert len(parts.files["train"]) > 1 and parts.samples == one.samples
    shards_match_one_shot(tmp_path / "one.npz", parts, ("policy_indices_sym", "policy_indices", "features"))


def test_cli_and_config_turn_symmetries_on(tmp_path):
    from ringrift.export.cli import main

    db = make_db(tmp_path / "g.db", [("square8", 2, 3, 4)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("export:\n  symmetries: true\n")
    assert main(["--db", str(db), "--output", str(tmp_path / "c.npz"), "--config", str(cfg), "--quiet"]) == 0
    assert load(tmp_path / "c.npz")["policy_indices_sym"].shape[1] == 8
    assert main(["--db", str(db), "--output", str(tmp_path / "d.npz"), "--config", str(cfg), "--no-symmetries",
                 "--quiet"]) == 0
    assert "policy_indices_sym" not in load(tmp_path / "d.npz")
    cfg.write_text("export:\n  symmetries: sometimes\n")
    # a bad config is unusable input: exit status 2 (docs/cli.md)
    assert main(["--db", str(db), "--output", str(tmp_path / "e.npz"), "--config", str(cfg), "--quiet"]) == 2


def test_doc_symmetry_example_runs(tmp_path):
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "npz_format.md"
    m = re.search(r"<!-- symmetry-example -->\s*```python\n(.*?)```", doc.read_text(), re.S)
    assert m, "docs/npz_format.md lacks the marked symmetry example"
    db = make_db(tmp_path / "g.db", [("square8", 2, 9, 3)])
    export_db(db, tmp_path / "d.npz", with_symmetries=True)
    ns = {"PATH": str(tmp_path / "d.npz")}
    exec(compile(m.group(1), str(doc), "exec"), ns)
    assert ns["x"].shape == (len(ns["batch"]), 26, 8, 8) and ns["policy_index"].shape == (len(ns["batch"]),)


def test_augment_applies_one_symmetry_per_sample():
    board = "hex8"
    H, W = spatial_size(board)
    rng = np.random.default_rng(3)
    feats = rng.random((5, 26, H, W)).astype(np.float32)
    pol = rng.integers(0, 1000, size=(5, 12)).astype(np.int32)
    ts = np.array([0, 3, 6, 9, 11])
    x, p = augment(feats, pol, board, ts)
    for i, t in enumerate(ts):
        assert np.array_equal(x[i], transform_planes(feats[i], board, t))
        assert p[i] == pol[i, t]
    x1, p1 = augment(feats, pol, board, 3)
    assert np.array_equal(x1[2], transform_planes(feats[2], board, 3)) and np.array_equal(p1, pol[:, 3])
