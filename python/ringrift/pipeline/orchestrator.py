"""canonical_selfplay across hosts: the run's spec, the output DB's present indices, the
dealt plan (`--dry-run`) and the end-of-run report.

The run itself is the scheduler's (scheduler.py: plan, dispatch, re-dispatch, checked merge,
state file) with one executor per backend (backends/: `hosts.py` for ssh, `p2p.py`, `pool.py`
for local, `ray_backend.py`). For the hosts of the hosts file, every range of the run is dealt to
a host by its position (one pass per job slot, `ranges.assign`), so the plan below is known
before anything starts and a resumed run sends a range back to the host that holds its partial
work. Games are deterministic in (board, players, policy, seed, index), so a range played again
elsewhere plays exactly the games that were lost; whatever is merged is done for good.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..engine.errors import RingRiftError
from .ranges import IndexSet, Range, assign, index_runs, split

if TYPE_CHECKING:
    from .models import ShippedModel


class SelfplaySpec(NamedTuple):
    """What a canonical_selfplay run plays and where. A NamedTuple (change one with _replace):
    see ringrift/cli.py on dataclasses."""

    board: str
    players: int
    policy: str
    seed: int
    num_games: int
    max_moves: int
    output_db: Path
    games_per_worker: int
    timeout: float
    threads: int | None = None  # None: each host's `threads`, else the config's
    default_threads: int = 0
    batch_size: int | None = None
    keep_worker_dbs: bool = False  # config selfplay.keep_worker_dbs
    device: str = "cpu"  # cuda: hosts declaring capability gpu play on their GPU
    # A net's policy: `policy` is the name its games are stored under (the net's id), `play_policy`
    # the spec with the model's path on this machine, `model` the file shipped to the workers
    # (models.py); all None for a policy without a model file.
    play_policy: str | None = None
    model: "ShippedModel | None" = None

    @property
    def local_policy(self) -> str:
        """The spec to play in this process (the model at its path here)."""
        return self.play_policy or self.policy

    @property
    def run_id(self) -> str:
        return f"{self.board}_{self.players}p_{self.policy}_s{self.seed}"

    def identity(self) -> dict:
        return {"board": self.board, "num_players": self.players, "policy": self.policy, "seed": self.seed}

    def run_key(self) -> dict:
        return {"phase": "canonical_selfplay", "board": self.board, "players": self.players, "policy": self.policy,
                "seed": self.seed, "num_games": self.num_games, "output_db": str(self.output_db.resolve())}

    def remote_db(self, r: Range) -> str:
        return f"runs/{self.run_id}/range_{r.tag}.db"

    def parts_dir(self) -> Path:
        return self.output_db.parent / f".{self.output_db.name}.parts"

    def threads_for(self, cfg) -> int:
        if self.threads is not None:
            return self.threads
        return cfg.threads or self.default_threads

    def worker_argv(self, cfg, r: Range, todo: IndexSet) -> list[str]:
        policy = self.model.remote_policy if self.model else self.policy
        argv = ["worker", "--board", self.board, "--players", str(self.players), "--policy", policy,
                "--seed", str(self.seed), "--indices", str(todo), "--max-moves", str(self.max_moves),
                "--threads", str(self.threads_for(cfg)), "--parallel-jobs", str(cfg.max_parallel_jobs),
                "--output-db", self.remote_db(r), "--host-name", cfg.name, "--exit-on-stdin-eof"]
        if self.batch_size:
            argv += ["--batch-size", str(self.batch_size)]
        if self.device != "cpu":
            argv += ["--device", self.device]
        if self.model:
            argv += ["--model-sha256", self.model.sha256]
        return argv


_RANGE_DB = re.compile(r"(?:^|/)range_(\d+)_(\d+)\.db$")


def range_of_db(rel: str) -> Range | None:
    """The range a worker DB was named for (`runs/<run>/range_<start>_<end>.db`), or None."""
    m = _RANGE_DB.search(rel)
    return Range(int(m.group(1)), int(m.group(2))) if m else None


def selfplay_hosts(hosts, device: str = "cpu") -> list:
    workers = [h for h in hosts if h.role == "selfplay"]
    if not workers:
        raise RingRiftError("no host has role 'selfplay' in the hosts file; nothing can play the games")
    if device == "cuda":
        workers = [h for h in workers if "gpu" in h.capabilities]
        if not workers:
            raise RingRiftError("--device cuda: no selfplay host declares capability gpu in the hosts file "
                                "(capabilities: [cpu, gpu] on the GPU hosts)")
    return workers


def present_indices(path: Path, spec: SelfplaySpec, *, create: bool) -> IndexSet:
    """Indices of this run already in the output DB. Refuses a DB whose games of this run come
    from another engine version. With `create` false nothing is created or written. A file with
    no log beside it is read as immutable (no -wal/-shm appear); one whose -wal holds frames (a
    writer crashed or is still at work) is read through its log, read-only, so that the games
    committed there count too (the -wal and -shm are already there)."""
    from ..selfplay.runner import ENGINE_VERSION

    where = "board = ? AND num_players = ? AND policy = ? AND seed = ?"
    params = (spec.board, spec.players, spec.policy, spec.seed)

    def read(con):
        versions = {v for (v,) in con.execute(f"SELECT DISTINCT engine_version FROM games WHERE {where}", params)}
        return versions, index_runs(con.execute(f"SELECT game_index FROM games WHERE {where} ORDER BY game_index",
                                                params))

    from ..db.errors import DBError

    if create:
        from ..db import GameDB

        try:
            with GameDB(path) as db:
                versions, present = read(db.conn)
        except sqlite3.Error as exc:  # a page past the header is damaged
            raise DBError(f"{path}: not a readable game database ({exc})", path=str(path)) from None
    else:
        from ..db.store import wal_holds_frames

        if not path.exists():
            return IndexSet()
        if path.is_dir():
            raise DBError(f"{path}: is a directory, not a game database", path=str(path))
        try:
            logged = wal_holds_frames(path)
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if logged else '&immutable=1'}", uri=True)
            try:
                fmt = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if not fmt or fmt[0] != "ringrift-gamedb":
                    raise DBError(f"{path}: not a ringrift game database", path=str(path))
                versions, present = read(con)
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise DBError(f"{path}: not a readable game database ({exc})", path=str(path)) from None
    if versions - {ENGINE_VERSION}:
        raise RingRiftError(f"{path} holds games of this run from engine {', '.join(sorted(map(str, versions)))}; "
                            f"this is {ENGINE_VERSION}: refusing to mix engine versions in one run "
                            f"(use another --output-db or --seed)")
    return present


def plan_ranges(spec: SelfplaySpec, hosts, present: IndexSet):
    """[(range, host name, missing indices as an IndexSet)] for every range of the run, in order."""
    ranges = split(spec.num_games, spec.games_per_worker)
    owner = assign(ranges, hosts)
    return [(r, owner[r], IndexSet.interval(r.start, r.end) - present) for r in ranges]


def print_plan(spec: SelfplaySpec, handles: dict, plan, out) -> None:
    todo_ranges = [(r, h, t) for r, h, t in plan if t]
    done = sum(r.count - t.count for r, _, t in plan)
    w = out.write
    w(f"plan: canonical_selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}, "
      f"{spec.num_games} games into {spec.output_db}\n")
    hosts = ", ".join(f"{h.name} ({h.cfg.target()}, {h.cfg.max_parallel_jobs} job"
                      f"{'s' if h.cfg.max_parallel_jobs > 1 else ''})" for h in handles.values())
    w(f"  hosts: {hosts}\n")
    w(f"  {done} games already in the output DB; {sum(t.count for _, _, t in todo_ranges)} to play in "
      f"{len(todo_ranges)} of {len(plan)} ranges of up to {spec.games_per_worker}\n")
    if spec.model:
        w(f"  {model_plan(spec)}: to each host's work_dir/models/{spec.model.sha256[:12]}....onnx by SFTP before "
          f"any range (not to a host that holds that hash already; the host checks the SHA-256 before using it); "
          f"hosts without onnxruntime get no work\n")
    parts = spec.parts_dir()
    for r, host, todo in plan:
        if not todo:
            w(f"  {r}  complete, skipped\n")
            continue
        h = handles[host]
        local = parts / f"{host}_{r.tag}.db"
        w(f"  {r}  {todo.count} games on {host}\n")
        w(f"    run:   {h.command_line(spec.worker_argv(h.cfg, r, todo))}\n")
        w(f"    pull:  {h.location(spec.remote_db(r))} -> {local}\n")
        w(f"    merge: {local} -> {spec.output_db} (then {local} is deleted)\n")
        if not spec.keep_worker_dbs:
            w(f"    clean: {h.location(spec.remote_db(r))} (and its -wal, -shm) is deleted on {host} once the "
              f"merge has committed\n")
    if spec.keep_worker_dbs:
        w("  worker DBs stay on the hosts after their merge (selfplay.keep_worker_dbs: true)\n")
    else:
        w(f"  worker DBs are deleted on the hosts after their merge (selfplay.keep_worker_dbs: false); at the end, "
          f"each healthy host's runs/{spec.run_id}/range_*.db whose games are all merged is deleted too\n")
    from .backends.hosts import HOST_FAILURES

    w(f"  each host runs at most max_parallel_jobs ranges at once; a host that cannot be reached or runs another "
      f"build gets no work; a range that fails (or exceeds {spec.timeout:g}s) is dispatched again, to another "
      f"host when there is one, and a host that fails {HOST_FAILURES} times in a row is dropped, its waiting "
      f"ranges going to the healthy host with the fewest\n")


def model_plan(spec: SelfplaySpec) -> str:
    """The dry run's words for the net of a net's policy."""
    m = spec.model
    return f"the net {m.path} ({m.size} bytes, sha256 {m.sha256[:12]}..., stored as policy {spec.policy}) is shipped"


def report_selfplay(ctx, spec, st, summary: dict, *, workers: str, unit: str) -> int:
    """Print and log a distributed self-play summary and mark the phase done in the state file.
    `workers` says where it ran ("3 hosts"), `unit` names one of them ("host", "node")."""
    from ..db import GameDB

    with GameDB(spec.output_db, readonly=True) as db:
        total = db.count_games(**spec.identity())
    secs = summary["seconds"]
    by_worker = ", ".join(f"{h}: {n}" for h, n in sorted(summary["by_host"].items())) or "-"
    lines = [
        f"selfplay {spec.board} {spec.players}p policy={spec.policy} seed={spec.seed}: {summary['new']} new games "
        f"({summary['already']} already present, target {spec.num_games}) on {workers}",
        f"  ranges played by {unit}: {by_worker}; re-dispatched: {summary.get('redispatched', 0)}",
        f"  time: {secs:.2f}s, {summary['new'] / secs if secs > 0 else 0:.1f} games/s",
        f"  database: {spec.output_db} ({total} games of this run)",
    ]
    for line in lines:
        print(line)
        ctx.logger.info(line)
    st.data["games_completed"] = total
    for wk in st.data["workers"].values():
        if wk.get("status") in ("idle", "running"):
            wk["status"] = "done"
    st.set_phase("canonical_selfplay", "done")
    return 0
