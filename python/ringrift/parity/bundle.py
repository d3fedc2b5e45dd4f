"""State bundles: one JSON file per divergence, read back by ``ringrift-diff-bundle``.

Fields: ``file``, ``line``, ``gameIndex``, ``gameId``, ``boardType``, ``numPlayers``,
``rulesOptions``, ``step``, ``where``, ``divergence`` (the one-line message),
``compared`` (``after`` the move, ``before`` it, or ``initial``), ``stateBefore`` (our
state before the move), ``theirsBefore`` (the recorded state before it, when known),
``move`` (recorded Move JSON), ``oursAfter``, ``theirsAfter`` (recorded ``s`` or null),
``fingerprint`` and ``hash`` (``{"ours", "theirs"}`` at the compared point) and
``legalDiff`` (``countExpected``, ``countGot``, ``missing``, ``extra``) or null.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SCHEMA = "ringrift-parity-bundle/v1"


def _safe(f, *args):
    """Call an engine accessor for a bundle; a failure leaves the field null."""
    try:
        return f(*args)
    except Exception:
        return None


def _recorded_before(rec: dict, i: int):
    """(state, fingerprint, hash) recorded just before move ``i``."""
    if i == 0:
        return rec["initialState"], rec.get("initialFingerprint"), rec.get("initialHash")
    prev = rec["steps"][i - 1]
    return prev.get("s"), prev.get("fp"), prev.get("h")


def make_bundle(rec: dict, res, cur) -> dict:
    """Build the bundle of ``res.divergence`` from the record and the replay cursor."""
    div = res.divergence
    game, steps = cur.game, rec["steps"]
    i = div.step
    if div.where == "result":
        i = len(steps) - 1 if steps else None
    ours_fp = _safe(lambda: game.fingerprint()) if game is not None else None
    ours_hash = _safe(lambda: game.hash()) if game is not None else None
    ours_now = _safe(lambda: game.to_json()) if game is not None else None

    before = theirs_before = move = ours_after = theirs_after = theirs_fp = theirs_hash = None
    if i is None:  # initial state (or setup failure)
        compared = "initial"
        ours_after, theirs_after = ours_now, rec["initialState"]
        theirs_fp, theirs_hash = rec.get("initialFingerprint"), rec.get("initialHash")
    else:
        move = rec["moves"][i]
        theirs_before = _recorded_before(rec, i)[0]
        theirs_after = steps[i].get("s")
        if cur.applied or div.where == "result":
            compared = "after"
            before = _safe(lambda: cur.before.to_json()) if cur.before is not None else None
            ours_after = ours_now
            theirs_fp, theirs_hash = steps[i].get("fp"), steps[i]["h"]
            if div.where == "result":
                theirs_fp = rec["result"].get("finalFingerprint", theirs_fp)
                theirs_hash = rec["result"]["finalHash"]
        else:
            compared = "before"
            before = ours_now
            _, theirs_fp, theirs_hash = _recorded_before(rec, i)

    return {
        "schema": SCHEMA,
        "file": res.source, "line": res.line, "gameIndex": res.game_index, "gameId": res.game_id,
        "boardType": rec.get("boardType"), "numPlayers": rec.get("numPlayers"),
        "rulesOptions": rec.get("rulesOptions"),
        "step": i, "where": div.where, "divergence": div.describe(), "compared": compared,
        "stateBefore": before, "theirsBefore": theirs_before, "move": move,
        "oursAfter": ours_after, "theirsAfter": theirs_after,
        "fingerprint": {"ours": ours_fp, "theirs": theirs_fp},
        "hash": {"ours": ours_hash, "theirs": theirs_hash},
        "legalDiff": cur.legal_diff,
    }


def bundle_name(bundle: dict) -> str:
    stem = Path(str(bundle["file"])).name
    for suffix in (".gz", ".jsonl"):
        stem = stem.removesuffix(suffix)
    parts = [stem, f"L{bundle['line']}" if bundle["line"] is not None else None, bundle["gameId"],
             f"step{bundle['step']}" if bundle["step"] is not None else bundle["where"]]
    name = "_".join(str(p) for p in parts if p is not None)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".json"


def write_bundle(directory, bundle: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / bundle_name(bundle)
    path.write_text(json.dumps(bundle, indent=1) + "\n", encoding="utf-8")
    return path


def read_bundle(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"not a parity bundle (schema {SCHEMA})")
    return data
