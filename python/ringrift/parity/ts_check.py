"""Parity of a game database against the reference TypeScript engine.

Each sampled game is replayed through our engine to turn its 16-byte move records into the
reference's Move JSON (``move_to_json`` before each move) and to count our legal moves; the moves
and the stored per-step results (hash, phase, player, status) are then streamed to one
long-lived Node bridge (:mod:`.ts_client`) that replays them through the TS engine with the
recorder's host layer and reports the first divergence.  Games are tagged in the DB
(``parity_status`` ``ok`` / ``failed``, ``error`` when the bridge itself failed on the game).
"""

from __future__ import annotations

import collections
import json
import sys
import time
from dataclasses import dataclass, field

from .. import _core
from ..engine.errors import IllegalMoveError
from ..engine.game import Game
from ..engine.json_io import move_key, move_to_json
from .harness import _legal_detail, move_text
from .ts_client import BridgeError, TSBridge

PIPELINE_DEPTH = 4      # games in flight to the bridge at once
MAX_RESTARTS = 3        # consecutive bridge failures before the run is abandoned


@dataclass
class GameCheck:
    """The outcome of one game: ``status`` ok / failed / error, ``steps`` checked and matching."""

    row: object
    status: str = "ok"
    steps: int = 0
    message: str = ""
    bundle: str | None = None
    reply: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class DBCheck:
    matched: int = 0
    checked: int = 0
    steps: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0


def expected_status(phase: str) -> str:
    return "completed" if phase == "game_over" else "active"


def build_request(row) -> tuple[dict | None, str | None]:
    """The bridge request of a stored game, or (None, why) when our engine cannot replay it."""
    game = Game(row.board, row.num_players)
    moves, expect = [], []
    recs, hashes, phases, players = row.moves, row.hashes, row.phases, row.players
    kind = getattr(row, "hash_kind", "reference")
    for i in range(row.move_count):
        move = _core.move_from_record(recs[i].tobytes())
        n = game.num_legal_moves()
        moves.append(move_to_json(game, move))
        try:
            game.apply(move)
        except IllegalMoveError as exc:
            return None, f"step {i}: our engine refuses the stored move ({exc}); run self-verification"
        phase = _core.PHASES[int(phases[i])]
        if kind == "reference":
            h = f"{int(hashes[i]):016x}"
        else:  # the row stores our own step hash: check it, and send the TS engine the reference hash
            if game.step_hash(kind) != int(hashes[i]):
                return None, (f"step {i}: the stored {kind} hash differs from our replay; "
                              "run self-verification")
            h = game.hash()
        expect.append({"h": h, "st": expected_status(phase), "ph": phase,
                       "p": int(players[i]), "n": n})
    result = {"status": "active" if row.capped else "completed",
              "winner": int(row.winner) or None, "reason": row.reason or None}
    return {"board": row.board, "numPlayers": row.num_players, "moves": moves, "expect": expect,
            "result": result, "debug": True}, None


def describe_reply(reply: dict, extra: str = "") -> str:
    """One line for a bridge reply: each difference as ``what ours X, TS Y`` (ours = what the DB
    stores or our engine computes, TS = the reference engine)."""
    where, step = reply.get("where"), reply.get("step")
    label = {"initial": "initial state", "result": "result", "input": "request"}.get(where)
    if label is None:
        label = f"step {step}" if step is not None else where or "bridge"
    parts = [f"{what} ours {json.dumps(exp)}, TS {json.dumps(got)}" for what, exp, got in reply.get("diffs") or []]
    if reply.get("detail"):
        parts.append(str(reply["detail"]))
    if extra:
        parts.append(extra)
    return f"TS engine, {label}: " + "; ".join(parts)


# ---- bundles ---------------------------------------------------------------------------------

def _ours_at(row, step: int):
    """Our game before move ``step`` and after it (None after when step is None)."""
    game = Game(row.board, row.num_players)
    stop = row.move_count if step is None else step
    for i in range(stop):
        game.apply(_core.move_from_record(row.moves[i].tobytes()))
    if step is None:
        return game, None, None
    before = game.clone()
    move = _core.move_from_record(row.moves[step].tobytes())
    move_json = move_to_json(game, move)
    try:
        game.apply(move)
        after = game
    except IllegalMoveError:
        after = None
    return before, after, move_json


def _legal_diff(game, ts_legal: list | None) -> dict | None:
    if ts_legal is None:
        return None
    ours, theirs, sample = collections.Counter(), collections.Counter(), {}
    for m in game.legal_moves():
        j = move_to_json(game, m)
        k = move_key(j)
        ours[k] += 1
        sample.setdefault(k, j)
    for j in ts_legal:
        try:
            k = move_key(j)
        except Exception:
            k = ("unreadable", move_text(j))
        theirs[k] += 1
        sample.setdefault(k, j)

    def listing(counter):
        return sorted((sample[k] for k, c in counter.items() for _ in range(c)), key=move_text)

    # "expected" is the reference (TS) side, as in the replay harness.
    return {"countExpected": len(ts_legal), "countGot": sum(ours.values()),
            "missing": listing(theirs - ours), "extra": listing(ours - theirs)}


def make_db_bundle(path, row, reply: dict) -> dict:
    """A state bundle (``ringrift-parity-bundle/v1``, read by ringrift-diff-bundle) for a TS divergence."""
    from .bundle import SCHEMA

    step, where = reply.get("step"), reply.get("where")
    debug = reply.get("debug") or {}
    ts_before, ts_after = debug.get("before") or {}, debug.get("after") or {}
    i = step
    if where == "result" and row.move_count:
        i = row.move_count - 1
    before = after = move_json = None
    try:
        if i is None:
            before, _, _ = _ours_at(row, 0)
            after = before
        else:
            before, after, move_json = _ours_at(row, i)
    except Exception:
        pass
    applied = where in ("after", "result", "engine")
    if i is None:
        compared = "initial"
    else:
        compared = "after" if applied else "before"
    ours_cmp = after if compared in ("after", "initial") else before
    theirs_cmp = ts_after if compared in ("after", "initial") else ts_before
    legal = None
    if where == "legal" and before is not None:
        legal = _legal_diff(before, debug.get("legal"))
    return {
        "schema": SCHEMA, "mode": "ts-engine",
        "file": str(path), "line": None, "gameIndex": row.game_index, "gameId": f"game{row.id}",
        "identity": {"board": row.board, "num_players": row.num_players, "policy": row.policy,
                     "seed": row.seed, "game_index": row.game_index},
        "boardType": row.board, "numPlayers": row.num_players, "rulesOptions": None,
        "step": i, "where": where, "divergence": describe_reply(reply), "compared": compared,
        "stateBefore": before.to_json() if before is not None else None,
        "theirsBefore": ts_before.get("state"), "move": move_json,
        "oursAfter": after.to_json() if (after is not None and compared != "before") else None,
        "theirsAfter": ts_after.get("state") if compared != "before" else None,
        "fingerprint": {"ours": ours_cmp.fingerprint() if ours_cmp is not None else None,
                        "theirs": theirs_cmp.get("fingerprint")},
        "hash": {"ours": ours_cmp.hash() if ours_cmp is not None else None, "theirs": theirs_cmp.get("hash")},
        "legalDiff": legal,
        "tsFinal": reply.get("final"),
    }


# ---- the run --------------------------------------------------------------------------------

class _Lane:
    """One bridge process and the games it holds, oldest first."""

    def __init__(self, make_bridge):
        self.make_bridge = make_bridge
        self.bridge: TSBridge | None = None
        self.inflight: collections.deque = collections.deque()   # (key, request), submitted
        self.dead = False
        self.failures_in_a_row = 0
        self.start_info: dict | None = None

    def start(self) -> None:
        self.bridge = self.make_bridge()
        self.start_info = self.bridge.start()

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    def ensure_alive(self) -> None:
        """After a failure: start a fresh bridge and hand it the games that were in flight."""
        while self.dead:
            self.failures_in_a_row += 1
            if self.failures_in_a_row > MAX_RESTARTS:
                raise BridgeError(f"the TS bridge failed {self.failures_in_a_row} times in a row; giving up")
            if self.bridge is not None:
                self.bridge.kill()
            self.start()
            self.dead = False
            try:
                for _, req in self.inflight:
                    self.bridge.submit(req)
            except BridgeError:
                self.dead = True

    def submit(self, key, req) -> None:
        self.ensure_alive()
        self.inflight.append((key, req))
        try:
            self.bridge.submit(req)
        except BridgeError:
            self.dead = True   # resubmitted by ensure_alive()

    def take(self):
        self.ensure_alive()
        key, _ = self.inflight.popleft()
        try:
            reply = self.bridge.receive()
        except BridgeError as exc:
            self.dead = True
            return key, None, str(exc), "bridge"
        self.failures_in_a_row = 0
        return key, reply, None, "ts"


class BridgeRunner:
    """Streams games to ``jobs`` long-lived bridges (each holding up to ``depth`` games), restarts
    a bridge after a failure, and yields the answers in input order."""

    def __init__(self, make_bridge, *, jobs: int = 1, depth: int = PIPELINE_DEPTH):
        self.lanes = [_Lane(make_bridge) for _ in range(max(1, jobs))]
        self.depth = max(1, depth)

    @property
    def start_info(self) -> dict | None:
        return self.lanes[0].start_info

    def start(self) -> None:
        try:
            for lane in self.lanes:
                lane.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()

    def run(self, items):
        """``items``: iterable of (key, request or None, why).  Yields (key, reply, why, kind) in
        input order: kind "ts" with the bridge's reply, "ours" when there was no request (``why``
        says why), "bridge" when the bridge failed on that game (``why`` is the error)."""
        order: collections.deque = collections.deque()   # (lane or None, key, why), input order
        limit = self.depth * len(self.lanes)

        def take():
            lane, key, why = order.popleft()
            if lane is None:
                return key, None, why, "ours"
            return lane.take()

        for key, req, why in items:
            if req is None:
                order.append((None, key, why))
            else:
                lane = min(self.lanes, key=lambda ln: len(ln.inflight))
                lane.submit(key, req)
                order.append((lane, key, None))
            while order and (order[0][0] is None or len(order) > limit):
                yield take()
        while order:
            yield take()


def _judge(path, row, reply, why, kind, bundle_dir) -> GameCheck:
    check = GameCheck(row)
    if kind == "ours":
        check.status, check.message = "failed", why
    elif kind == "bridge":
        check.status, check.message = "error", f"TS bridge error: {why}"
    elif not reply["ok"]:
        check.status, check.steps, check.reply = "failed", reply["steps"], reply
        extra = ""
        if reply.get("where") == "legal" and reply.get("step") is not None:
            try:   # which moves differ, as the replay harness reports them
                before, _, _ = _ours_at(row, reply["step"])
                extra = _legal_detail(_legal_diff(before, (reply.get("debug") or {}).get("legal")))
            except Exception:
                pass
        check.message = describe_reply(reply, extra)
        if bundle_dir is not None:
            try:
                from .bundle import write_bundle
                check.bundle = str(write_bundle(bundle_dir, make_db_bundle(path, row, reply)))
            except Exception as exc:
                check.message += f"; bundle not written: {exc!r}"
    else:
        check.steps = reply["steps"]
    return check


def verify_db_ts(path, runner: BridgeRunner, *, sample: int | None = None, sample_seed: int = 0,
                 tag: bool = True, quiet: bool = False, bundle_dir=None, out=None,
                 progress=None) -> DBCheck:
    """Check (a sample of) the games of the DB at ``path`` against the TS engine."""
    from ..db import GameDB

    out = sys.stdout if out is None else out
    res = DBCheck()
    t0 = time.monotonic()
    tags: dict[str, list[int]] = {"ok": [], "failed": [], "error": []}
    with GameDB(path, create=False, readonly=not tag) as db:  # untagged: a read-only dataset will do
        def corrupt(game_id, why):  # a row that cannot be decoded fails as a game, the rest is checked
            res.checked += 1
            tags["failed"].append(game_id)
            res.failures.append(GameCheck(None, "failed", 0, f"corrupt row: {why}"))
            if not quiet:
                if progress:
                    progress.clear()
                print(f"{path} game {game_id}: corrupt row: {why}", file=out, flush=True)

        def items():
            for row in db.iter_games(sample=sample or None, seed_for_sample=sample_seed, on_corrupt=corrupt):
                req, why = build_request(row)
                yield row, req, why

        try:
            for row, reply, why, kind in runner.run(items()):
                res.checked += 1
                check = _judge(path, row, reply, why, kind, bundle_dir)
                res.steps += check.steps
                tags[check.status].append(row.id)
                if check.ok:
                    res.matched += 1
                else:
                    res.failures.append(check)
                    if not quiet:
                        text = (f"{path} game {row.id} ({row.board} {row.num_players}p seed {row.seed} "
                                f"index {row.game_index}): {check.message}")
                        if check.bundle:
                            text += f" [bundle {check.bundle}]"
                        if progress:
                            progress.clear()
                        print(text, file=out, flush=True)
                if progress:
                    progress.update(res, row)
        finally:  # tag what was checked, even when the run is abandoned
            if tag:
                for status, ids in tags.items():
                    if ids:
                        db.set_parity_status(ids, status)
    res.seconds = time.monotonic() - t0
    return res
