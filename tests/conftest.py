"""Shared helpers for the rules-engine tests: reference data paths, random play, hand-made
states, and an independent re-implementation of the reference fingerprint and hash (RULES.md 9).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from ringrift.engine import Game, IllegalMoveError

# ../shared/parity beside the repository (RULES.md, recorded games, contract vectors).
PARITY_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
REPLAYS_DIR = PARITY_DIR / "ts-replays"
VECTORS_DIR = PARITY_DIR / "contract-vectors"

BOARDS = ("square8", "hex8", "square19", "hexagonal")
CONFIGS = [(b, n) for b in BOARDS for n in (2, 3, 4)]
HEX_BOARDS = ("hex8", "hexagonal")

# RULES.md 4.3: move types allowed per phase (resign / timeout are allowed everywhere).
ALLOWED_BY_PHASE = {
    "ring_placement": {"place_ring", "skip_placement", "no_placement_action", "swap_sides"},
    "movement": {"move_stack", "overtaking_capture", "recovery_slide", "skip_recovery", "no_movement_action"},
    "capture": {"overtaking_capture", "skip_capture"},
    "chain_capture": {"continue_capture_segment"},
    "line_processing": {"process_line", "choose_line_option", "eliminate_rings_from_stack", "no_line_action"},
    "territory_processing": {"choose_territory_option", "eliminate_rings_from_stack", "no_territory_action",
                             "skip_territory_processing"},
    "forced_elimination": {"forced_elimination"},
    "game_over": set(),
}
NO_ACTION_TYPES = {"no_placement_action", "no_movement_action", "no_line_action", "no_territory_action"}
REFERENCE_REJECTS = "the reference engine rejects this listed move"


def need(path: Path, what: str) -> Path:
    """Skip (never pass silently) when the shared reference data is not beside the repo."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (expected ../shared/parity beside the repository)")
    return path


@pytest.fixture
def replays_dir() -> Path:
    return need(REPLAYS_DIR, "recorded reference games")


@pytest.fixture
def vectors_dir() -> Path:
    return need(VECTORS_DIR, "contract vectors")


def read_games(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ---- random play -------------------------------------------------------------------------

def apply_random(game: Game, rng: random.Random):
    """Apply one uniformly chosen legal move and return it.

    A listed ``recovery_slide`` that the reference itself throws on (RULES.md 6.7) is the only
    move apply may refuse; then another move is drawn.
    """
    moves = game.legal_moves()
    assert moves, f"empty legal-move list in an active game: {game!r}"
    while True:
        move = rng.choice(moves)
        try:
            game.apply(move)
            return move
        except IllegalMoveError as exc:
            if move.type != "recovery_slide" or exc.reason != REFERENCE_REJECTS:
                raise
            moves = [m for m in moves if m != move]
            assert moves, "every listed move was rejected"


def random_game(board: str, num_players: int, seed: int, max_moves: int) -> Game:
    """A game after up to ``max_moves`` random legal moves (stops early when it ends)."""
    game = Game(board, num_players)
    rng = random.Random(seed)
    while game.status == "active" and game.move_count < max_moves:
        apply_random(game, rng)
    return game


def random_positions(board: str, num_players: int, seed: int, max_moves: int, every: int = 1):
    """Yield the live game before every ``every``-th move of a random game, and at its end."""
    game = Game(board, num_players)
    rng = random.Random(seed)
    while game.status == "active" and game.move_count < max_moves:
        if game.move_count % every == 0:
            yield game
        apply_random(game, rng)
    yield game


# ---- subprocesses ------------------------------------------------------------------------

def ctrl_c_reaches_child() -> None:
    """preexec_fn for a child a test will interrupt with SIGINT, as Ctrl-C in a terminal would. A
    process started with SIGINT ignored (a background job of a non-interactive shell, nohup) hands
    that on to its children, and Python then keeps ignoring it, rightly: the child would finish
    its run and exit 0. Such a launch of the suite is not what these tests are about."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---- hand-made states ----------------------------------------------------------------------

def key(x: int, y: int, board: str = "square8") -> str:
    return f"{x},{y},{-x - y}" if board in HEX_BOARDS else f"{x},{y}"


def make_state(board: str = "square8", num_players: int = 2, *, stacks=None, markers=None, collapsed=None,
               hands=None, eliminated=None, territory=None, phase: str = "movement", current: int = 1,
               **extra) -> dict:
    """A reference-shaped serialized state. ``stacks``: {(x, y): rings top-first};
    ``markers`` / ``collapsed``: {(x, y): owner}; per-player lists default to 0 (hands: 10)."""
    stacks, markers, collapsed = stacks or {}, markers or {}, collapsed or {}
    n = num_players
    hands = hands if hands is not None else [10] * n
    eliminated = eliminated or [0] * n
    if territory is None:
        territory = [sum(1 for o in collapsed.values() if o == p) for p in range(1, n + 1)]
    state = {
        "board": {
            "type": board,
            "stacks": {key(x, y, board): {"rings": list(r)} for (x, y), r in stacks.items()},
            "markers": {key(x, y, board): {"player": p} for (x, y), p in markers.items()},
            "collapsedSpaces": {key(x, y, board): p for (x, y), p in collapsed.items()},
        },
        "players": [{"playerNumber": p, "ringsInHand": hands[p - 1], "eliminatedRings": eliminated[p - 1],
                     "territorySpaces": territory[p - 1]} for p in range(1, n + 1)],
        "currentPlayer": current,
        "currentPhase": phase,
        "gameStatus": "active",
    }
    state.update(extra)
    return state


def load(board="square8", num_players=2, **kw) -> Game:
    return Game.from_json(make_state(board, num_players, **kw))


def cell(game: Game, x: int, y: int) -> int:
    c = game.cell_index(x, y)
    assert c >= 0, f"({x},{y}) is not on the {game.board} board"
    return c


def xy(game: Game, c) -> tuple[int, int] | None:
    if c is None:
        return None
    x, y, _ = game.cell_coords(c)
    return (x, y)


def of_type(game: Game, mtype: str) -> list:
    return [m for m in game.legal_moves() if m.type == mtype]


def types(game: Game) -> list[str]:
    return [m.type for m in game.legal_moves()]


def stack_at(game: Game, x: int, y: int):
    c = cell(game, x, y)
    return dict(game.stacks()).get(c)


# ---- independent fingerprint and hash (RULES.md 9.1 and 9.2) ----------------------------------

M32 = 0xFFFFFFFF


def reference_hash(fingerprint: str) -> str:
    a, b = 0xDEADBEEF, 0x41C6CE57
    for ch in fingerprint:
        u = ord(ch)
        a = ((a ^ u) * 0x9E3779B1) & M32
        b = ((b ^ u) * 0x5F356495) & M32
    a2 = ((((a ^ (a >> 16)) * 0x85EBCA6B) & M32) ^ (((b ^ (b >> 13)) * 0xC2B2AE35) & M32)) & M32
    b2 = ((((b ^ (b >> 16)) * 0x85EBCA6B) & M32) ^ (((a2 ^ (a2 >> 13)) * 0xC2B2AE35) & M32)) & M32
    return f"{b2:08x}{a2:08x}"


def expected_fingerprint(game: Game) -> str:
    """The fingerprint rebuilt from the public accessors (stacks, markers, collapsed, players)."""
    if game.status == "active":
        meta = f"{game.current_player}:{game.phase}:active:{int(game.pending_line_elimination)}"
    else:
        meta = f"0:game_over:completed:{int(game.pending_line_elimination)}"
    players = "|".join(sorted(f"{p['player']}:{p['rings_in_hand']}:{p['eliminated_rings']}:{p['territory_spaces']}"
                              for p in game.players()))
    stacks = []
    for c, rings in game.stacks():
        cap = 1
        while cap < len(rings) and rings[cap] == rings[0]:
            cap += 1
        stacks.append(f"{game.cell_key(c)}:{rings[0]}:{len(rings)}:{cap}")
    markers = [f"{game.cell_key(c)}:{p}" for c, p in game.markers()]
    collapsed = [f"{game.cell_key(c)}:{p}" for c, p in game.collapsed()]
    return "#".join([meta, players, "|".join(sorted(stacks)), "|".join(sorted(markers)), "|".join(sorted(collapsed))])


# ---- the suite keeps out of the user's home and the repository --------------------------------
#
# Every test runs with HOME in its own temporary folder (so ~/.ringrift/pipeline_state.json, the
# pipeline's default state file, is a temporary one), the pipeline's logs in tmp_path/logs
# ($RINGRIFT_LOG_DIR; tests that run the pipeline in tmp_path find them where the default would
# put them), the cache of validated config files in a folder beside tmp_path and the TS bridge's
# bundle cache in one folder per session. Subprocesses inherit it.
# At the end of the session the real home's ringrift folders and the repository's files are
# compared with their state at the start: any change fails the run, naming the files.

import os as _os  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_HOME = Path(_os.path.expanduser("~"))
# What a test run may create in the repository: build and tool caches (all git-ignored).
REPO_ALLOWED = {".git", "build", "dist", ".pytest_cache", ".hypothesis", "__pycache__"}
# The ground truth beside the repository (recordings, golden files) is read-only to the suite too:
# a test that opens a golden SQLite file carelessly would leave -wal/-shm files there.
SHARED_ROOT = REPO_ROOT.parent / "shared"


def footprint(home: Path, repo: Path, shared: Path | None = None) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of what a test run must not touch: the entries directly in
    `home`, everything under home's .ringrift and .cache/ringrift, every file of `repo`
    outside REPO_ALLOWED folders and *.egg-info, and every file of `shared` (when given)."""
    out: dict[str, tuple[int, int]] = {}

    def add(path: Path) -> None:
        try:
            st = path.lstat()
        except OSError:
            return
        out[str(path)] = (st.st_size if not path.is_dir() else 0, st.st_mtime_ns)

    if home.is_dir():
        for entry in home.iterdir():
            add(entry)
        for sub in (home / ".ringrift", home / ".cache" / "ringrift"):
            for dirpath, _dirs, files in _os.walk(sub):
                for name in files:
                    add(Path(dirpath) / name)
    for dirpath, dirs, files in _os.walk(repo):
        dirs[:] = [d for d in dirs if d not in REPO_ALLOWED and not d.endswith(".egg-info")]
        add(Path(dirpath))
        for name in files:
            add(Path(dirpath) / name)
    if shared is not None and shared.is_dir():
        for dirpath, _dirs, files in _os.walk(shared):
            add(Path(dirpath))
            for name in files:
                add(Path(dirpath) / name)
    return out


def footprint_changes(before: dict, after: dict) -> list[str]:
    changed = [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]
               and not Path(p).is_dir()]
    added = [f"created {p}" for p in sorted(set(after) - set(before))]
    removed = [f"removed {p}" for p in sorted(set(before) - set(after))]
    return added + changed + removed


def pytest_sessionstart(session):
    session.config._ringrift_footprint = footprint(REAL_HOME, REPO_ROOT, SHARED_ROOT)


def _foreign_state_write(change: str, basetemp: Path | None) -> bool:
    """Whether a change to the real ~/.ringrift/pipeline_state.json(.lock) was made by a
    pipeline of some other process on this machine: the state names the run's files, and
    those of this session's tests lie under its basetemp."""
    path = Path(change.split(" ", 1)[1])
    if basetemp is None or path.parent != REAL_HOME / ".ringrift" or not path.name.startswith("pipeline_state"):
        return False
    try:
        run = json.loads((path.parent / "pipeline_state.json").read_text()).get("run") or {}
    except (OSError, ValueError, AttributeError):
        return False
    named = [Path(v) for k, v in run.items() if k in ("output_db", "db") and isinstance(v, str)]
    return bool(named) and not any(p.is_relative_to(basetemp) for p in named)


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_ringrift_footprint", None)
    if before is None:
        return
    changes = footprint_changes(before, footprint(REAL_HOME, REPO_ROOT, SHARED_ROOT))
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = factory.getbasetemp().resolve() if factory is not None else None
    foreign = [c for c in changes if _foreign_state_write(c, basetemp)]
    ours = [c for c in changes if c not in foreign]
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    say = tr.write_line if tr is not None else print
    if foreign:
        say("note: another process on this machine changed the real pipeline state during the run "
            "(its run's files are not this session's): " + "; ".join(foreign))
    if ours:
        say("\n".join(["the test run wrote outside its temporary folders (tests must use tmp_path):"] + ours[:30]))
        session.exitstatus = 1


@pytest.fixture(scope="session")
def _bridge_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ts-bridge-cache")


@pytest.fixture(autouse=True)
def _keep_out_of_home_and_repo(tmp_path, monkeypatch, _bridge_cache):
    monkeypatch.setenv("HOME", str(tmp_path / ".home"))
    monkeypatch.setenv("RINGRIFT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("RINGRIFT_TS_BRIDGE_CACHE", str(_bridge_cache))
    monkeypatch.setenv("RINGRIFT_CONFIG_CACHE", str(tmp_path.parent / f"{tmp_path.name}-config-cache"))


@pytest.fixture(scope="session")
def tiny_net(tmp_path_factory):
    """A tiny square8 net (ONNX) trained a few steps on 6 heuristic games: enough to drive `onnx:`
    and `gumbel:onnx:` players in tests. Needs torch and onnxruntime (the tests that use it skip
    without them)."""
    from ringrift.db import GameDB
    from ringrift.export import export_db
    from ringrift.selfplay.runner import run_selfplay
    from ringrift.train.trainer import TrainOptions, train

    d = tmp_path_factory.mktemp("tiny_net")
    with GameDB(d / "g.db") as db:
        run_selfplay(db, board="square8", num_games=6, policy="heuristic", seed=1, threads=1)
    export_db(d / "g.db", d / "d.npz", include_unchecked=True, drop_forced=True, split_ratio=0.8, seed=1, threads=1)
    train(TrainOptions(data=str(d / "d.npz"), out=str(d / "run"), width=8, depth=1, batch_size=32, warmup=2,
                       threads=1, epochs=1, max_batches=3, plot=False, log=lambda s: None))
    return d / "run" / "model.onnx"
