"""Self-verification of a game database: every stored game replays through our engine from the
initial position, each stored move must be on the legal surface and each stored hash must match
(of the kind the row stores: the reference hash, or self-play's fast step hash),
and the stored result must be what the replay ends in. Games are tagged with the outcome
(``parity_status`` 'ok' / 'failed') so later phases can take only verified games."""

from __future__ import annotations

import sys

from .. import _core
from ..engine.game import Game


def verify_row(row) -> str | None:
    """None when the stored game replays exactly, else what differed."""
    game = Game(row.board, row.num_players)
    step, why = _core.replay_verify(game, row.moves, row.hashes, getattr(row, "hash_kind", "reference"))
    if step >= 0:
        return f"step {step}: {why}"
    if len(row.phases) and row.phases[-1] != _core.PHASES.index(game.phase):
        return f"final phase stored {_core.PHASES[row.phases[-1]]}, replay {game.phase}"
    if bool(row.capped) != (game.status == "active"):
        return f"stored capped={bool(row.capped)} but the replay is {game.status}"
    if (row.winner or None) != game.winner or (row.reason or None) != game.victory_reason:
        return f"stored result {row.winner}/{row.reason}, replay {game.winner}/{game.victory_reason}"
    return None


def verify_db(path, *, sample: int | None = None, sample_seed: int = 0, tag: bool = True,
              quiet: bool = False, out=None) -> tuple[int, int, int]:
    """Verify (a sample of) the games in the DB at `path`; returns (matched, checked, steps)."""
    from ..db import GameDB

    out = sys.stdout if out is None else out
    matched = checked = steps = 0
    ok_ids, failed_ids = [], []
    with GameDB(path, create=False, readonly=not tag) as db:  # untagged: a read-only dataset will do
        def corrupt(game_id, why):  # a row that cannot be decoded fails as a game, the rest is checked
            nonlocal checked
            checked += 1
            failed_ids.append(game_id)
            if not quiet:
                print(f"{path} game {game_id}: corrupt row: {why}", file=out, flush=True)

        try:
            for row in db.iter_games(sample=sample or None, seed_for_sample=sample_seed, on_corrupt=corrupt):
                checked += 1
                problem = verify_row(row)
                if problem is None:
                    matched += 1
                    steps += row.move_count
                    ok_ids.append(row.id)
                else:
                    failed_ids.append(row.id)
                    if not quiet:
                        print(f"{path} game {row.id} ({row.board} {row.num_players}p seed {row.seed} "
                              f"index {row.game_index}): {problem}", file=out, flush=True)
        finally:  # tag what was checked, even when the run is abandoned (Ctrl-C), as the TS check does
            if tag:
                db.set_parity_status(ok_ids, "ok")
                db.set_parity_status(failed_ids, "failed")
    return matched, checked, steps
