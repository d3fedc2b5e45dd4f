"""Tests of the parity harness (``ringrift.parity``).

The first group runs the real engine over the recorded reference games (skipped when
``../shared/parity`` is absent).  The second group checks the harness's own logic
(file reading, comparisons, CLI, bundles, diff) against a tiny stand-in engine.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from ringrift.parity import cli, diff_bundle, iter_games, replay_game
from ringrift.parity.bundle import read_bundle

SHARED_PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
REPLAYS = SHARED_PARITY / "ts-replays"


def _need_corpus() -> Path:
    if not REPLAYS.is_dir():
        pytest.skip(f"recorded reference games not found at {REPLAYS} (../shared/parity beside the repo)")
    return REPLAYS


def _first_game(name: str) -> dict:
    with gzip.open(_need_corpus() / name, "rt", encoding="utf-8") as fh:
        return json.loads(fh.readline())


def _write_jsonl(path: Path, lines: list) -> Path:
    text = "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --------------------------------------------------------------------------------------
# Real engine over the recorded games
# --------------------------------------------------------------------------------------

def test_cli_corpus_slice(capsys):
    replays = _need_corpus()
    rc = cli.main(["--replays", str(replays / "debug_square8_2p_seed100.jsonl.gz"),
                   str(replays / "hex8_2p_seed4000.jsonl.gz"), "--max-games", "5"])
    out = capsys.readouterr().out
    assert _last_line(out).startswith("parity: 5/5 games match ("), out
    assert rc == 0


def test_corrupted_game_diverges_at_the_right_step(tmp_path, capsys):
    game = _first_game("square8_2p_seed1000.jsonl.gz")
    bad_hash = copy.deepcopy(game)
    bad_hash["steps"][10]["h"] = "0123456789abcdef"
    bad_hash["steps"][20]["n"] += 1
    bad_count = copy.deepcopy(game)
    bad_count["steps"][20]["n"] += 1
    path = _write_jsonl(tmp_path / "corrupt.jsonl.gz", [bad_hash, bad_count, game])

    rc = cli.main(["--replays", str(path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert lines[-1] == f"parity: 1/3 games match ({10 + 20 + len(game['steps'])} steps)"
    assert f"{path}:1 " in lines[0] and 'step 10: hash expected "0123456789abcdef" got "' in lines[0]
    n = game["steps"][20]["n"]
    assert f"{path}:2 " in lines[1] and f"step 20: legal move count expected {n + 1} got {n}" in lines[1]
    assert len(lines) == 3


def test_malformed_lines_are_reported_and_counted(tmp_path, capsys):
    game = _first_game("square8_2p_seed1000.jsonl.gz")
    no_steps = {k: v for k, v in game.items() if k != "steps"}
    path = _write_jsonl(tmp_path / "mixed.jsonl", [game, "{not json", no_steps])
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"this is not gzip data")

    rc = cli.main(["--replays", str(path), str(broken)])
    captured = capsys.readouterr()
    assert rc == 1
    assert _last_line(captured.out) == f"parity: 1/4 games match ({len(game['steps'])} steps)"
    assert f"{path}:2: malformed input: bad JSON" in captured.err
    assert f"{path}:3 game 0 {game['gameId']}: malformed input: missing field 'steps'" in captured.err
    assert f"{broken}:1: malformed input: cannot read" in captured.err


def test_bundle_round_trip(tmp_path, capsys):
    game = _first_game("debug_square8_2p_seed100.jsonl.gz")
    k = 12
    step = game["steps"][k]
    step["h"] = "fedcba9876543210"
    step["s"]["players"][0]["ringsInHand"] += 5           # recorded state says otherwise
    step["fp"] = step["fp"].replace("#1:", "#1:9", 1)       # and so does its fingerprint
    path = _write_jsonl(tmp_path / "debug_corrupt.jsonl.gz", [game])
    bundles = tmp_path / "bundles"

    assert cli.main(["--replays", str(path), "--bundle-dir", str(bundles)]) == 1
    out = capsys.readouterr().out
    assert f"step {k}: hash expected" in out
    (bundle_path,) = bundles.iterdir()
    b = read_bundle(bundle_path)
    assert (b["step"], b["compared"], b["gameId"]) == (k, "after", game["gameId"])
    assert b["move"] == game["moves"][k] and b["theirsAfter"] == step["s"]
    assert b["stateBefore"] is not None and b["oursAfter"] is not None
    assert b["hash"]["theirs"] == "fedcba9876543210" and b["fingerprint"]["theirs"] == step["fp"]

    assert diff_bundle.main([str(bundle_path)]) == 1
    report = capsys.readouterr().out
    assert "player 1 ringsInHand: ours" in report
    assert "players: only ours" in report


# --------------------------------------------------------------------------------------
# Harness logic against a stand-in engine
# --------------------------------------------------------------------------------------

class FakeEngine:
    """A toy game with the engine API: players alternately add 1 or 2 rings to a pile
    (as a new stack); whoever brings the total to ``target`` or more wins."""

    class RingRiftError(Exception):
        pass

    class IllegalMoveError(RingRiftError):
        pass

    class MoveParseError(RingRiftError, ValueError):
        pass

    class Move:
        def __init__(self, player, amount):
            self.player, self.amount = player, amount

    class Game:
        def __init__(self, state):
            self.s = state

        @classmethod
        def from_json(cls, initial_state, board, num_players, rules_options=None):
            return cls(copy.deepcopy(initial_state))

        @property
        def phase(self):
            return self.s["currentPhase"]

        @property
        def current_player(self):
            return self.s["currentPlayer"]

        @property
        def status(self):
            return self.s["gameStatus"]

        @property
        def winner(self):
            return self.s.get("winner")

        @property
        def victory_reason(self):
            return "ring_elimination" if self.s.get("winner") else None

        def legal_moves(self):
            if self.status != "active":
                return []
            return [FakeEngine.Move(self.current_player, a) for a in (1, 2)]

        def num_legal_moves(self):
            return len(self.legal_moves())

        def apply(self, move):
            if move.player != self.current_player or self.status != "active":
                raise FakeEngine.IllegalMoveError("not your turn")
            s = self.s
            s["total"] += move.amount
            s["players"][move.player - 1]["ringsInHand"] -= move.amount
            s["board"]["stacks"][f"{s['total']},0"] = {
                "position": {"x": s["total"], "y": 0}, "rings": [move.player] * move.amount,
                "stackHeight": move.amount, "capHeight": move.amount, "controllingPlayer": move.player}
            if s["total"] >= s["target"]:
                s.update(gameStatus="completed", currentPhase="game_over", winner=move.player)
            else:
                s["currentPlayer"] = 3 - move.player

        def clone(self):
            return FakeEngine.Game(copy.deepcopy(self.s))

        def to_json(self):
            return copy.deepcopy(self.s)

        def fingerprint(self):
            s = self.s
            done = s["gameStatus"] != "active"
            head = f"{0 if done else s['currentPlayer']}:{s['currentPhase']}:{s['gameStatus']}:0"
            players = "|".join(f"{p['playerNumber']}:{p['ringsInHand']}" for p in s["players"])
            stacks = "|".join(f"{k}:{v['controllingPlayer']}:{v['stackHeight']}"
                              for k, v in sorted(s["board"]["stacks"].items()))
            return f"{head}#{players}#{stacks}##"

        def hash(self):
            return hashlib.sha256(self.fingerprint().encode()).hexdigest()[:16]

    @staticmethod
    def move_to_json(game, move):
        return {"type": "add_rings", "player": move.player, "amount": move.amount}

    @staticmethod
    def move_key(move_json):
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in move_json.items()
                            if k not in ("id", "timestamp", "thinkTime", "moveNumber")))

    @staticmethod
    def move_from_json(game, move_json):
        if not isinstance(move_json, dict) or "type" not in move_json:
            raise FakeEngine.MoveParseError("no move type")
        for m in game.legal_moves():
            if FakeEngine.move_key(FakeEngine.move_to_json(game, m)) == FakeEngine.move_key(move_json):
                return m
        raise FakeEngine.IllegalMoveError("not legal")


def fake_record(amounts, *, debug=False, target=7, index=0):
    """Record a toy game the way the reference recorder does, using the stand-in engine."""
    init = {"gameId": f"toy-{index}", "board": {"type": "toy", "size": 1, "stacks": {}, "markers": {},
                                                 "collapsedSpaces": {}, "eliminatedRings": {}},
            "players": [{"playerNumber": n, "ringsInHand": 9, "eliminatedRings": 0} for n in (1, 2)],
            "currentPlayer": 1, "currentPhase": "play", "gameStatus": "active", "total": 0, "target": target,
            "pendingLineRewardElimination": False}
    E = FakeEngine
    g = E.Game.from_json(init, "toy", 2)
    rec = {"schema": "ringrift-tsoracle/v1", "gameIndex": index, "gameId": f"toy-{index}", "boardType": "toy",
           "numPlayers": 2, "rulesOptions": {}, "initialState": copy.deepcopy(init), "initialHash": g.hash(),
           "initialFingerprint": g.fingerprint(), "moves": [], "steps": []}
    for i, a in enumerate(amounts):
        legal = sorted(json.dumps(E.move_to_json(g, m), separators=(",", ":")) for m in g.legal_moves())
        move = {"id": f"m{i}", "type": "add_rings", "player": g.current_player, "amount": a,
                "timestamp": "1970-01-01T00:00:00.000Z", "thinkTime": 0, "moveNumber": i + 1}
        step = {"n": g.num_legal_moves(), "c": a - 1}
        g.apply(E.move_from_json(g, move))
        step.update(h=g.hash(), p=g.current_player, ph=g.phase, st=g.status)
        if debug:
            step.update(legal=legal, s=g.to_json(), fp=g.fingerprint())
        rec["moves"].append(move)
        rec["steps"].append(step)
    assert g.status == "completed", "choose amounts that finish the toy game"
    rec["result"] = {"gameStatus": g.status, "winner": g.winner, "reason": g.victory_reason,
                     "terminatedBy": "orchestrator", "finalHash": g.hash(), "finalFingerprint": g.fingerprint(),
                     "finalPhase": g.phase, "finalPlayers": 2}
    return rec


GAMES = [[1, 2, 2, 2], [2, 2, 2, 1], [1, 1, 1, 1, 1, 1, 1], [2, 1, 2, 2]]


def run_fake(argv):
    return cli.main(argv, engine=FakeEngine)


def test_fake_folder_and_both_suffixes_match(tmp_path, capsys):
    _write_jsonl(tmp_path / "a.jsonl.gz", [fake_record(GAMES[0], index=0), fake_record(GAMES[1], index=1)])
    (tmp_path / "sub").mkdir()
    _write_jsonl(tmp_path / "sub" / "b.jsonl", [fake_record(GAMES[2], debug=True)])
    (tmp_path / "ignored.txt").write_text("not a replay")
    assert [g.line for g in iter_games([tmp_path])] == [1, 2, 1]
    assert run_fake(["--replays", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "parity: 3/3 games match (15 steps)\n"


def test_fake_jobs_and_max_games(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "g.jsonl", [fake_record(a, index=i) for i, a in enumerate(GAMES)])
    bad = fake_record(GAMES[0], index=9)
    bad["steps"][1]["p"] = 2
    _write_jsonl(tmp_path / "h.jsonl", [bad])
    assert run_fake(["--replays", str(path), str(tmp_path / "h.jsonl"), "--jobs", "3"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{tmp_path / 'h.jsonl'}:1 game 9 toy-9: step 1: player expected 2 got 1",
                   "parity: 4/5 games match (20 steps)"]
    assert run_fake(["--replays", str(path), "--max-games", "2", "--quiet"]) == 0
    assert capsys.readouterr().out == "parity: 2/2 games match (8 steps)\n"
    assert run_fake(["--replays", str(path), "--max-games", "0"]) == 1   # nothing ran


def test_fake_step_and_result_checks():
    rec = fake_record(GAMES[0], debug=True)
    assert replay_game(rec, engine=FakeEngine).ok

    r = copy.deepcopy(rec)
    r["steps"][2]["n"] = 3
    res = replay_game(r, engine=FakeEngine)
    assert (res.divergence.step, res.divergence.where, res.steps) == (2, "legal", 2)
    assert "legal move count expected 3 got 2" in res.describe()

    r = copy.deepcopy(rec)   # same count, different move: the multiset check catches it
    r["steps"][1]["legal"][0] = json.dumps({"type": "add_rings", "player": 2, "amount": 5})
    d = replay_game(r, engine=FakeEngine).divergence
    assert d.step == 1 and not d.diffs
    assert 'missing 1 [{"amount":5,' in d.detail and 'extra 1 [{"amount":1,' in d.detail

    r = copy.deepcopy(rec)
    r["moves"][3]["amount"] = 4
    d = replay_game(r, engine=FakeEngine).divergence
    assert (d.step, d.where) == (3, "move") and "not among our legal moves" in d.detail

    r = copy.deepcopy(rec)   # phase is compared only while active; terminal: ours must be game_over
    r["steps"][-1]["ph"] = "ring_placement"
    r["steps"][-1]["p"] = 1
    assert replay_game(r, engine=FakeEngine).ok
    r["steps"][-1]["st"] = "active"
    d = replay_game(r, engine=FakeEngine).divergence
    assert d.step == 3 and ("status", "active", "completed") in d.diffs

    r = copy.deepcopy(rec)
    r["result"]["winner"] = 1
    r["result"]["reason"] = "territory_control"
    res = replay_game(r, engine=FakeEngine)
    assert res.steps == 4 and res.divergence.where == "result"
    assert res.describe().endswith('result: winner expected 1 got 2; reason expected "territory_control" '
                                   'got "ring_elimination"')

    r = copy.deepcopy(rec)
    r["initialHash"] = "0" * 16
    assert replay_game(r, engine=FakeEngine).divergence.where == "initial"


def test_fake_malformed_input(tmp_path, capsys):
    good = fake_record(GAMES[0])
    short = copy.deepcopy(good)
    del short["steps"][2]["h"]
    path = _write_jsonl(tmp_path / "m.jsonl", [good, "{oops", "", "[1, 2]", short])
    not_gzip = tmp_path / "n.jsonl.gz"
    not_gzip.write_bytes(b"plain text, not gzip")

    rc = run_fake(["--replays", str(path), str(not_gzip), str(tmp_path / "missing.jsonl")])
    cap = capsys.readouterr()
    assert rc == 1
    assert _last_line(cap.out) == "parity: 1/6 games match (4 steps)"
    err = cap.err
    assert f"{path}:2: malformed input: bad JSON" in err
    assert f"{path}:4: malformed input: bad JSON: expected an object" in err
    assert f"{path}:5 game 0 toy-0: malformed input: steps[2] missing field 'h'" in err
    assert f"{not_gzip}:1: malformed input: cannot read (BadGzipFile" in err
    assert f"{tmp_path / 'missing.jsonl'}: malformed input: no such file" in err


def test_truncated_gzip_keeps_the_games_before_the_break(tmp_path):
    lines = [json.dumps(fake_record(GAMES[0], index=i)) + "\n" for i in range(200)]
    data = gzip.compress("".join(lines).encode())
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    games = list(iter_games([path]))
    assert games[0].load()["gameId"] == "toy-0"
    assert games[-1].error.startswith("cannot read (EOFError") and games[-1].line == len(games)
    assert all(g.error is None for g in games[:-1])


def test_fake_engine_exception_is_a_failed_game(tmp_path, capsys):
    class Exploding(FakeEngine):
        class Game(FakeEngine.Game):
            def apply(self, move):
                if self.s["total"] >= 3:
                    raise RuntimeError("boom")
                super().apply(move)

    path = _write_jsonl(tmp_path / "x.jsonl", [fake_record(GAMES[0])])
    assert cli.main(["--replays", str(path), "--bundle-dir", str(tmp_path / "b")], engine=Exploding) == 1
    out = capsys.readouterr().out
    assert "step 2: RuntimeError: boom [bundle " in out
    (bundle,) = (tmp_path / "b").iterdir()
    assert read_bundle(bundle)["compared"] == "before"


def test_fake_bundle_round_trip(tmp_path, capsys):
    rec = fake_record(GAMES[0], debug=True)
    step = rec["steps"][2]
    step["h"] = "f" * 16
    step["s"]["players"][1]["ringsInHand"] = 1
    step["s"]["board"]["stacks"]["5,0"]["rings"] = [2, 1]
    step["s"]["board"]["stacks"]["9,0"] = step["s"]["board"]["stacks"]["5,0"]
    step["s"]["currentPhase"] = "movement"
    step["fp"] = step["fp"].replace("|2:7#", "|2:1#")
    path = _write_jsonl(tmp_path / "d.jsonl.gz", [rec])
    out_dir = tmp_path / "bundles"
    assert run_fake(["--replays", str(path), "--bundle-dir", str(out_dir)]) == 1
    (bundle,) = out_dir.iterdir()
    assert bundle.name == "d_L1_toy-0_step2.json"
    assert f"[bundle {bundle}]" in capsys.readouterr().out
    b = read_bundle(bundle)
    assert b["stateBefore"]["total"] == 3 and b["oursAfter"]["total"] == 5
    assert b["legalDiff"] is None and b["fingerprint"]["theirs"] == step["fp"]

    assert diff_bundle.main([str(bundle)]) == 1
    report = capsys.readouterr().out
    for expected in ('divergence: step 2: hash expected "ffffffffffffffff"',
                     "player 2 ringsInHand: ours 7 | theirs 1",
                     "5,0: ours rings [1,1] height 2 cap 2 player 1 | theirs rings [2,1]",
                     "9,0: ours (absent) | theirs rings [2,1]",
                     'currentPhase: ours "play" | theirs "movement"',
                     "players: only ours 2:7 | only theirs 2:1"):
        assert expected in report, report

    # a legal-move divergence: the bundle compares the states before the move
    rec = fake_record(GAMES[1], debug=True)
    rec["steps"][1]["legal"].append(rec["steps"][1]["legal"][0])
    rec["steps"][1]["n"] = 3
    _write_jsonl(path, [rec])
    run_fake(["--replays", str(path), "--bundle-dir", str(tmp_path / "b2")])
    (bundle,) = (tmp_path / "b2").iterdir()
    b = read_bundle(bundle)
    assert b["compared"] == "before" and b["oursAfter"] is None
    assert b["legalDiff"]["countExpected"] == 3 and len(b["legalDiff"]["missing"]) == 1
    assert diff_bundle.main([str(bundle)]) == 1
    report = capsys.readouterr().out
    assert "state before the move: no differences" in report and "missing (recorded, not ours): 1" in report

    (tmp_path / "junk.json").write_text("{}")
    assert diff_bundle.main([str(tmp_path / "junk.json")]) == 2
