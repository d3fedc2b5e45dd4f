"""Players that choose moves for the games of a BatchEnv: a net (``onnx:PATH``) or a built-in
policy (``random`` / ``heuristic``, the same C++ choice as self-play).

Randomness is per game: the player of game i of a run with seed S draws only from its own stream
(Philox keyed by (S, i) for the net, the self-play Rng of (S, i) for the built-ins), one draw
per decision, so game i of seed S is the same game whatever the batch size, slot or thread count.

Net spec: ``onnx:PATH[:temperature=T][:lookahead=K][:horizon=move|turn]``

* temperature T (default 1): sample from softmax(logits / T) over the playable actions;
  T = 0 takes the most probable action (the first in surface order on ties).
* lookahead K (default 0 = off): one-ply search on the value head. The K most probable playable
  actions are each played in a scratch env and the net's value of the position they lead to,
  seen by the mover (or the exact outcome when the game ends there), picks the move;
  temperature is then unused.
* horizon (with lookahead; default ``move``): where "one ply" ends. ``move``: right after the
  candidate action, which is often mid-turn (after a placement the same player still has to
  move). ``turn``: after the candidate, the rest of the mover's own turn is played out in the
  scratch env (forced moves as they are, other decisions by the net's most probable action)
  until another player is to move or the game ends, and that position is valued. RingRift turns
  are sequences of decisions by one player (placement, movement, capture segments, line and
  territory choices), so ``turn`` values each candidate where the opponent takes over. Costs
  K extra positions per decision for ``move``, plus one more batched call per further decision
  of the turn for ``turn`` (at most TURN_STEPS).

A position with one playable action (bookkeeping moves) is played without asking the net.

A net of upstream's encoding plays with upstream's planes and its history of earlier states
(``upstream_play``); lookahead is for native nets only.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..engine.errors import RingRiftError
from ..selfplay.batch_env import BatchEnv, to_host

BUILTIN = ("random", "heuristic")
MAX_LOOKAHEAD = 256  # moves looked at per decision: each costs a row of every batch's net input
HORIZONS = ("move", "turn")
# A turn is a handful of decisions (placement, movement, capture segments, line / territory
# choices); the cap only guards the scratch play-out against a turn that never ends.
TURN_STEPS = 64


def game_generator(seed: int, game: int) -> np.random.Generator:
    """Game `game`'s own random stream of a run seeded `seed`: Philox keyed by (seed, game), so a
    game draws the same numbers whatever its batch, slot or thread."""
    return np.random.Generator(np.random.Philox(key=((int(seed) & (2**64 - 1)) << 64) | int(game)))


class PlayerSpecError(RingRiftError, ValueError):
    """A player spec or model that cannot be used (one line)."""


def parse_spec(spec: str) -> tuple[str, str | None, dict]:
    """``random`` / ``heuristic`` / ``heuristic:random=P`` / ``onnx:PATH[:key=value...]`` / ``gumbel:...``
    -> (kind, path, options)."""
    if spec in BUILTIN:
        return spec, None, {}
    if spec.startswith("heuristic:"):
        key, _, val = spec[len("heuristic:"):].partition("=")
        try:
            share = float(val) if key == "random" else None
        except ValueError:
            share = None
        if share is None or not 0 <= share <= 1:
            raise PlayerSpecError(f"{spec}: expected heuristic:random=P with a share P in [0, 1]")
        return "mixed", None, {"random_share": share}
    if spec.startswith("gumbel:"):
        from ..search.spec import parse_policy

        try:
            p = parse_policy(spec)
        except ValueError as exc:
            raise PlayerSpecError(str(exc)) from None
        return "gumbel", p.model or None, {"spec": p}
    if not spec.startswith("onnx:"):
        raise PlayerSpecError(f"unknown policy {spec!r} (expected random, heuristic or onnx:PATH)")
    parts = spec[len("onnx:"):].split(":")
    opts = {}
    while len(parts) > 1 and "=" in parts[-1]:
        key, _, val = parts.pop().partition("=")
        if key in ("t", "temperature"):
            try:
                opts["temperature"] = float(val)
            except ValueError:
                raise PlayerSpecError(f"{spec}: temperature {val!r} is not a number") from None
            if not opts["temperature"] >= 0:
                raise PlayerSpecError(f"{spec}: temperature must be >= 0")
        elif key == "lookahead":
            if not val.isdigit() or int(val) > MAX_LOOKAHEAD:  # memory grows with K: a bound, not a crash
                raise PlayerSpecError(f"{spec}: lookahead {val!r} is not a count 0..{MAX_LOOKAHEAD}")
            opts["lookahead"] = int(val)
        elif key == "horizon":
            if val not in HORIZONS:
                raise PlayerSpecError(f"{spec}: horizon {val!r} is not one of {', '.join(HORIZONS)}")
            opts["horizon"] = val
        else:
            raise PlayerSpecError(f"{spec}: unknown option {key!r} (temperature, lookahead, horizon)")
    path = ":".join(parts)
    if not path:
        raise PlayerSpecError(f"{spec}: no model path after onnx:")
    return "onnx", path, opts


def make_player(spec: str, *, temperature: float | None = None, device: str = "cpu", threads: int = 0):
    kind, path, opts = parse_spec(spec)
    if kind in BUILTIN:
        return BuiltinPlayer(kind)
    if kind == "mixed":
        return MixedPlayer(opts["random_share"])
    if kind == "gumbel":
        return SearchPlayer(opts["spec"], threads=threads)
    if temperature is not None and "temperature" not in opts:
        opts["temperature"] = temperature
    return NetPlayer(path, device=device, threads=threads, **opts)


class BuiltinPlayer:
    def __init__(self, policy: str):
        self.policy = policy
        self.name = policy

    def bind(self, env: BatchEnv, seed: int):
        self.env, self.seed = env, seed
        self.rng = np.zeros(env.n, dtype=np.uint64)
        self.chosen = np.zeros((env.n, 16), dtype=np.uint8)
        self.error = np.zeros(env.n, dtype=np.uint8)

    def start(self, slots: np.ndarray, games: np.ndarray) -> None:
        if len(slots):
            self.rng[slots] = _core.env_rng_for_games(self.seed, games.astype(np.int64))

    def choose(self, slots: np.ndarray) -> np.ndarray:
        """Chooses in ``slots``; the moves are left in ``self.chosen`` (applied by play_step)."""
        only = np.zeros(self.env.n, dtype=np.uint8)
        only[slots] = 1
        _core.env_choose_host(self.env.board, self.env.states, only, self.policy, self.rng, self.chosen, self.error,
                              self.env.threads)
        if self.error[slots].any():
            bad = int(slots[np.flatnonzero(self.error[slots])[0]])
            raise RuntimeError(f"game slot {bad}: the {self.policy} policy found no playable move")
        return only


class MixedPlayer(BuiltinPlayer):
    """``heuristic:random=P``: the heuristic with a share P of random decisions, for more varied
    self-play positions. At each decision of game i a uniform draw u from the game's own stream
    (Philox keyed by (seed + 7919, i)) picks the chooser: random if u < P, else heuristic. Both
    are the C++ self-play choices, the heuristic from game i's self-play stream of the seed and
    random from its stream of a second seed, so game i of seed S is the same game in any batch."""

    def __init__(self, random_share: float):
        self.share = float(random_share)
        self.policy = "heuristic"
        self.name = f"heuristic:random={self.share:g}"

    def bind(self, env: BatchEnv, seed: int):
        from .games import _player_seed

        if env.device != "cpu":
            raise PlayerSpecError(f"{self.name} plays on the CPU only (device='cpu')")
        super().bind(env, seed)
        self.random = BuiltinPlayer("random")
        self.random.bind(env, _player_seed(seed, 1))
        self.random.chosen = self.chosen  # one move buffer: play_step applies it for both
        self.gens = [None] * env.n

    def start(self, slots: np.ndarray, games: np.ndarray) -> None:
        super().start(slots, games)
        self.random.start(slots, games)
        for s, g in zip(slots.tolist(), games.tolist()):
            self.gens[s] = game_generator(int(self.seed) + 7919, g)

    def choose(self, slots: np.ndarray) -> np.ndarray:
        u = np.array([self.gens[s].random() for s in slots.tolist()])
        by_random = u < self.share
        if by_random.any():
            self.random.choose(slots[by_random])
        if not by_random.all():
            super().choose(slots[~by_random])
        only = np.zeros(self.env.n, dtype=np.uint8)
        only[slots] = 1
        return only


class SearchPlayer:
    """The Gumbel search as a player (``gumbel:EVALUATOR[:...]`` or ``gumbel:onnx:PATH[:...]``):
    each step one batched search over the games in ``slots`` from their env states; with a net,
    one ONNX Runtime call per search step for all those trees' leaves. The search of game i at
    ply k draws from stream ``search_stream(i, k)`` of the player's seed, as in search self-play,
    so game i of seed S is the same game in any slot or batch."""

    def __init__(self, spec, *, threads: int = 0):
        from ..search.spec import NET

        self.spec = spec
        self.threads = threads
        try:
            self.name = spec.name  # reads a net's file: its id, not its path
        except (ValueError, FileNotFoundError) as exc:
            raise PlayerSpecError(str(exc)) from None
        self.evaluate = None
        self.is_net = spec.evaluator == NET

    def bind(self, env: BatchEnv, seed: int):
        if self.is_net:
            from ..search.selfplay import net_evaluator

            try:
                self.evaluate = net_evaluator(self.spec.model, env.board, threads=self.threads)
            except ValueError as exc:
                raise PlayerSpecError(str(exc)) from None
        self.env, self.seed = env, seed
        self.game_of = np.full(env.n, -1, dtype=np.int64)

    def start(self, slots: np.ndarray, games: np.ndarray) -> None:
        self.game_of[slots] = games

    def choose(self, slots: np.ndarray) -> np.ndarray:
        from ..search.gumbel import GumbelSearch
        from ..search.selfplay import search_stream

        env, s = self.env, self.spec
        games = [env.game(int(k)) for k in slots.tolist()]
        streams = [search_stream(int(self.game_of[k]), g.move_count) for k, g in zip(slots.tolist(), games)]
        search = GumbelSearch(games, simulations=s.sims, top_k=s.top_k, seed=self.seed, streams=streams,
                              evaluator="heuristic" if self.is_net else s.evaluator, c_visit=s.c_visit,
                              c_scale=s.c_scale, gumbel_scale=s.temp, rollout_moves=s.rollout,
                              threads=self.threads if self.threads > 0 else _core.hardware_threads())
        acts = np.array([r.action for r in search.run(self.evaluate)], dtype=np.int32)
        if (acts < 0).any():
            bad = int(slots[np.flatnonzero(acts < 0)[0]])
            raise RuntimeError(f"game slot {bad}: the search found no playable move")
        return acts


class NetPlayer:
    def __init__(self, path: str, *, temperature: float = 1.0, lookahead: int = 0, horizon: str = "move",
                 device: str = "cpu", threads: int = 0):
        from .onnx_export import model_id, read_meta, session

        if horizon not in HORIZONS:
            raise PlayerSpecError(f"horizon {horizon!r} is not one of {', '.join(HORIZONS)}")
        self.path, self.temperature, self.lookahead = path, float(temperature), int(lookahead)
        self.horizon = horizon
        self.sess = session(path, device, threads)
        self.meta = read_meta(self.sess)
        self.id = model_id(path)
        opts = f":temperature={self.temperature:g}" if not self.lookahead else f":lookahead={self.lookahead}"
        if self.lookahead and horizon != "move":
            opts += f":horizon={horizon}"
        # What a game DB stores as the game's policy: the model's id, not its path.
        self.name = f"onnx:{self.meta.get('board', '?')}-{self.id}{opts}"
        self.scratch = None

    def bind(self, env: BatchEnv, seed: int):
        from .checkpoint import BASE_KEYS

        m = self.meta
        self.upstream = None
        if m.get("encoding") == "upstream":
            from .upstream_play import UpstreamInputs, check_model

            why = check_model(m, env.board, self.path)
            if why:
                raise PlayerSpecError(why)
            if self.lookahead:
                raise PlayerSpecError(f"{self.path}: a net of upstream's encoding plays without lookahead "
                                      f"(use temperature=T)")
            self.upstream = UpstreamInputs(env)
        else:
            if m.get("board") != env.board or m.get("action_space_size") != env.action_size:
                raise PlayerSpecError(f"{self.path}: a net for board {m.get('board')!r} cannot play {env.board}")
            if m.get("encoding") != "native":
                raise PlayerSpecError(f"{self.path}: a net of encoding {m.get('encoding')!r}; BatchEnv gives 'native'")
            if not env.features:
                raise PlayerSpecError("an onnx player needs a BatchEnv with features=True")
        missing = [k for k in BASE_KEYS if k not in m]
        if missing:
            raise PlayerSpecError(f"{self.path}: no ringrift metadata {missing} (not written by ringrift-train)")
        self.env, self.seed = env, seed
        self.gens = [None] * env.n
        if self.lookahead:
            self.scratch = BatchEnv(env.board, env.num_players, env.n * self.lookahead, threads=env.threads)

    def start(self, slots: np.ndarray, games: np.ndarray) -> None:
        for s, g in zip(slots.tolist(), games.tolist()):
            self.gens[s] = game_generator(self.seed, g)
        if self.upstream is not None:
            self.upstream.start(slots)

    def before_step(self, live: np.ndarray) -> None:
        """Every game in ``live`` is about to make one move (whoever chooses it)."""
        if self.upstream is not None:
            self.upstream.before_step(live)

    def after_step(self, live: np.ndarray) -> None:
        if self.upstream is not None:
            self.upstream.after_step(live)

    def evaluate(self, features, globals_):
        from .onnx_export import run

        return run(self.sess, features, globals_)

    def choose(self, slots: np.ndarray) -> np.ndarray:
        """Canonical actions for the games in ``slots`` (whose mover this player is)."""
        env = self.env
        counts = to_host(env.info["num_actions"])[slots]
        acts = to_host(env.legal_actions)[slots, 0].astype(np.int32)  # forced moves
        ask = slots[counts > 1]
        if not len(ask):
            return acts
        if self.upstream is not None:
            logits, _ = self.evaluate(*self.upstream.inputs(ask))
        else:
            logits, _ = self.evaluate(to_host(env.planes)[ask], to_host(env.globals)[ask])
        # Only the playable actions matter: gather their logits from the env's action lists
        # (surface order) instead of masking the whole action space.
        n_act = counts[counts > 1]
        width = int(n_act.max())
        legal = to_host(env.legal_actions)[ask, :width]
        valid = np.arange(width)[None, :] < n_act[:, None]
        if self.upstream is not None:
            z = self.upstream.legal_logits(logits, ask, legal, n_act)
        else:
            z = np.where(valid, np.take_along_axis(logits, np.where(valid, legal, 0), axis=1).astype(np.float64),
                         -np.inf)
        if self.lookahead:
            pick = self._lookahead(ask, legal, z)
        elif self.temperature == 0:
            pick = z.argmax(axis=1)  # the first most probable in surface order
        else:
            z = z / self.temperature
            z -= z.max(axis=1, keepdims=True)
            cdf = np.cumsum(np.exp(z), axis=1)
            u = np.array([self.gens[s].random() for s in ask.tolist()])
            pick = np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), n_act - 1)
        acts[counts > 1] = legal[np.arange(len(ask)), pick]
        return acts

    def _lookahead(self, ask: np.ndarray, legal: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Column (into ``legal``) of the best of the K most probable actions by the value head."""
        env, scr, k = self.env, self.scratch, self.lookahead
        m = len(ask)
        n_legal = np.isfinite(z).sum(axis=1)
        top = np.argsort(-z, axis=1, kind="stable")[:, :k]  # (m, <=k) columns, most probable first
        if top.shape[1] < k:
            top = np.concatenate([top, np.repeat(top[:, :1], k - top.shape[1], axis=1)], axis=1)
        # fewer than k playable actions: repeat the best one (evaluated twice, harmless)
        top = np.where(np.arange(k)[None, :] < n_legal[:, None], top, top[:, :1])
        rows = np.repeat(ask, k)
        scr.states[:m * k] = to_host(env.states)[rows]
        acts = np.full(scr.n, -1, dtype=np.int32)
        acts[:m * k] = legal[np.repeat(np.arange(m), k), top.reshape(-1)]
        scr.step(acts)
        mover = to_host(env.info["current"])[rows].astype(np.int64)  # seat 1..n
        if self.horizon == "turn":
            self._finish_turns(m * k, mover)
        done = scr.info["done"][:m * k] != 0
        cur = scr.info["current"][:m * k].astype(np.int64)
        n = env.num_players
        _, value = self.evaluate(scr.planes[:m * k], scr.globals[:m * k])
        slot = (mover - cur) % n  # the mover's slot in the successor's mover-relative value vector
        v = value[np.arange(m * k), slot]
        exact = scr.info["values"][np.arange(m * k), mover - 1]
        v = np.where(done, exact, v).reshape(m, k)
        best = v.argmax(axis=1)  # the most probable one on ties
        return top[np.arange(m), best]

    def _finish_turns(self, r: int, mover: np.ndarray) -> None:
        """Plays scratch games 0..r-1 on while their mover is still ``mover`` and they are not over:
        forced moves as they are, the others by the net's most probable playable action."""
        scr = self.scratch
        for _ in range(TURN_STEPS):
            on = np.flatnonzero((scr.info["done"][:r] == 0) & (scr.info["current"][:r].astype(np.int64) == mover))
            if not len(on):
                return
            acts = np.full(scr.n, -1, dtype=np.int32)
            counts = scr.info["num_actions"][on]
            acts[on] = scr.legal_actions[on, 0]
            ask = on[counts > 1]
            if len(ask):
                n_act = counts[counts > 1]
                width = int(n_act.max())
                legal = scr.legal_actions[ask, :width]
                valid = np.arange(width)[None, :] < n_act[:, None]
                logits, _ = self.evaluate(scr.planes[ask], scr.globals[ask])
                z = np.where(valid, np.take_along_axis(logits, np.where(valid, legal, 0), axis=1), -np.inf)
                acts[ask] = legal[np.arange(len(ask)), z.argmax(axis=1)]
            scr.step(acts)


def play_step(env: BatchEnv, players: list, owner: np.ndarray, active: np.ndarray) -> np.ndarray:
    """One move in every active, unfinished game: ``owner[i]`` is the index in ``players`` of the
    player of game i's mover. Net moves go through ``env.step``; built-in moves are chosen and
    applied in C++ (the same step). Returns the actions array as EnvRecorder.record wants it
    (>= 0 for every game that moved)."""
    live = active & (to_host(env.info["done"]) == 0)
    moving = np.flatnonzero(live)
    watchers = [p for p in players if hasattr(p, "before_step")]  # players that keep a history of states
    for p in watchers:
        p.before_step(moving)
    actions = np.full(env.n, -1, dtype=np.int32)
    builtin = []
    for pi, p in enumerate(players):
        slots = np.flatnonzero(live & (owner == pi))
        if not len(slots):
            continue
        if isinstance(p, BuiltinPlayer):
            builtin.append((p, slots, p.choose(slots)))
        else:
            actions[slots] = p.choose(slots)
    env.step(actions)
    for p, slots, only in builtin:
        acts = np.where(only != 0, 0, -1).astype(np.int32)
        _core.env_apply_host(env.board, env.states, acts, p.chosen, env.info, env.threads)
        env.last_moves[slots] = p.chosen[slots]
        env.observe(only)
        actions[slots] = 0
    for p in watchers:
        p.after_step(moving)
    return actions
