"""Parity harness: replay the reference engine's recorded games through ours.

Library entry points: :func:`iter_games` (a game source reading ``.jsonl``/``.jsonl.gz``
files and folders), :func:`replay_game` (one parsed record -> :class:`GameResult`) and
:func:`run_games` (any game source, optionally over worker processes).  CLIs:
``ringrift-parity`` (:mod:`.cli`) and ``ringrift-diff-bundle`` (:mod:`.diff_bundle`).

Game databases: :mod:`.db_check` (self-verification against the stored hashes) and
:mod:`.ts_check` (replay through the reference TypeScript engine of a RingRift checkout, via the
Node bridge ``ts_bridge/bridge.mjs`` driven by :mod:`.ts_client`).
"""

from .harness import Divergence, GameResult, replay_game, replay_recorded, run_games
from .replays import InputError, RecordedGame, iter_games

__all__ = ["Divergence", "GameResult", "InputError", "RecordedGame", "iter_games",
           "replay_game", "replay_recorded", "run_games"]
