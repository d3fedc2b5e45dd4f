"""The `ray` executor: each seed range is a Ray task on a cluster that already runs Ray (KubeRay,
`ray up`, `ray start` on a few machines, a Slurm launcher).

    ringrift-pipeline --backend ray --ray-address auto run canonical_selfplay --num-games 1000000

The address is --ray-address (`auto`, `HOST:PORT` of the head's GCS, or `ray://HOST:10001` for
Ray Client), else $RAY_ADDRESS, else `auto`. A task asks for `num_cpus` = its threads (with
--device cuda, `num_gpus=1`), plays its range into a game DB in a temporary folder of the node,
and returns the DB's bytes through the object store; a DB larger than `inline_bytes` stays on
the node and is read back in chunks by tasks pinned to that node, so the driver never holds
more than one chunk. The scheduler (../scheduler.py) merges each DB as it arrives, exactly
once. Ray retries a task whose worker or node died (`max_retries`); when those retries are
spent, or the task raised, the range goes back to the scheduler, which dispatches it again.

Nothing here touches Ray's authentication: a cluster that requires a token (RAY_AUTH_MODE=token
and its token file or RAY_AUTH_TOKEN) is reached exactly as `ray` itself reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ...engine.errors import RingRiftError
from ..scheduler import Executor, RangeLost, RangeResult, RangeTask
from .base import BackendUnavailable

INSTALL_HINT = "the ray backend needs Ray: pip install 'ringrift[ray]'"
ADDRESS_ENV = "RAY_ADDRESS"
INLINE_BYTES = 64 << 20  # range DBs up to this size come back as one object
CHUNK_BYTES = 16 << 20  # larger ones in chunks of this size
INLINE_ENV = "RINGRIFT_RAY_INLINE_BYTES"  # overrides INLINE_BYTES (0: every DB in chunks)
CHUNK_ENV = "RINGRIFT_RAY_CHUNK_BYTES"  # overrides CHUNK_BYTES
MAX_RETRIES = 3  # Ray's own retries of a task whose worker or node died


def import_ray():
    """The ray module, or BackendUnavailable with the install line."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailable(INSTALL_HINT) from None
    return ray


def ray_address(arg: str | None) -> str:
    return arg or os.environ.get(ADDRESS_ENV) or "auto"


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """For HOST:PORT and ray://HOST:PORT, a TCP connect first: ray.init retries an address that
    does not answer for minutes, this fails in one line."""
    import socket
    from urllib.parse import urlsplit

    if address == "auto" or address.startswith("local"):
        return
    try:
        u = urlsplit(address if "://" in address else f"gcs://{address}")
        host, port = u.hostname, u.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise RingRiftError(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise RingRiftError(f"cannot connect to the Ray cluster at {address!r}: {exc.strerror or exc}") from None


def connect(address: str):
    """ray.init against an existing cluster (never starts one); returns (ray, connected_here)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    check_reachable(address)
    try:
        ray.init(address=address, namespace="ringrift", log_to_driver=False, logging_level="WARNING",
                 configure_logging=True)
    except ConnectionError as exc:
        raise RingRiftError(f"cannot connect to the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None
    except (ValueError, RuntimeError) as exc:
        raise RingRiftError(f"cannot connect to the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None
    return ray, True


# ---- what runs on the nodes (module-level, so Ray ships them by reference) --------------------

def _node_name(ray) -> str:
    ctx = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"


def play_range(fields: dict, indices: str, threads: int, inline_bytes: int) -> dict:
    """A Ray task: play `indices` of the run `fields` into a fresh DB on this node."""
    import shutil
    import tempfile

    import ray

    from ...db import GameDB
    from ..ranges import IndexSet
    from ..worker import selfplay_range

    node = _node_name(ray)
    policy = fields["policy"]
    if fields.get("model"):  # a net's policy: the node's copy of the model (fetched once per node)
        policy = node_model(ray, fields["model"])
    folder = tempfile.mkdtemp(prefix="ringrift-range-")
    path = os.path.join(folder, "range.db")
    try:
        with GameDB(path) as db:
            stats = selfplay_range(db, board=fields["board"], num_players=fields["players"], seed=fields["seed"],
                                   policy=policy, indices=IndexSet.parse(indices), threads=threads,
                                   max_moves=fields["max_moves"], batch_size=fields["batch_size"],
                                   host=f"ray:{node}", device=fields["device"])
        files = sorted(f for f in os.listdir(folder) if f.startswith("range.db"))
        sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in files}
        out = {"node": node, "node_id": ray.get_runtime_context().get_node_id(), "games": stats["games"],
               "seconds": stats["seconds"], "sizes": sizes}
        if sum(sizes.values()) <= inline_bytes:
            out["data"] = {}
            for f in files:
                with open(os.path.join(folder, f), "rb") as fh:
                    out["data"][f] = fh.read()
            shutil.rmtree(folder, ignore_errors=True)
        else:
            out["folder"] = folder  # read back in chunks by read_chunk, then remove_folder
        return out
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def node_work_dir() -> str:
    """Where a Ray node keeps shipped models (models/<sha256>.onnx below it):
    $RINGRIFT_RAY_WORK_DIR, else ringrift-ray in the node's temporary folder."""
    import tempfile

    return os.environ.get("RINGRIFT_RAY_WORK_DIR") or os.path.join(tempfile.gettempdir(), "ringrift-ray")


def node_model(ray, model: dict) -> str:
    """The policy spec with the model at this node's copy. When the node lacks it (or its bytes
    differ), the bytes come from the object store (`model["ref"]`, put there once by the
    driver), are checked against the SHA-256 and moved into place."""
    from ..models import ModelError, have_model, install_model, model_rel

    work = node_work_dir()
    sha = model["sha256"]
    if not have_model(work, sha):
        data = ray.get(model["ref"][0])
        os.makedirs(os.path.join(work, "models"), exist_ok=True)
        part = os.path.join(work, "models", f".{sha}.{os.getpid()}.part")
        with open(part, "wb") as fh:
            fh.write(data)
        try:
            install_model(work, sha, part)
        except ModelError as exc:
            raise RuntimeError(f"{_node_name(ray)}: {exc}") from None
    return model["prefix"] + os.path.join(work, model_rel(sha)) + model["suffix"]


def read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def remove_folder(folder: str) -> None:
    import shutil

    if os.path.basename(folder).startswith("ringrift-range-"):
        shutil.rmtree(folder, ignore_errors=True)


def node_info() -> dict:
    """A Ray task: this package's version and build on the node it runs on."""
    import ray

    from ... import __version__
    from ..worker import build_id, engine_id

    return {"node": _node_name(ray), "version": __version__, "build": build_id(), "engine": engine_id(),
            "python": sys.version.split()[0]}


# ---- the executor -------------------------------------------------------------------------------

class RayExecutor(Executor):
    name = "ray"

    def __init__(self, spec, address: str | None = None, *, max_retries: int = MAX_RETRIES,
                 inline_bytes: int | None = None, chunk_bytes: int | None = None):
        self.ray = import_ray()
        self.spec = spec
        self.address = ray_address(address)
        self.max_retries = max_retries
        self.inline_bytes = _size_env(INLINE_ENV, INLINE_BYTES, 0) if inline_bytes is None else inline_bytes
        self.chunk_bytes = _size_env(CHUNK_ENV, CHUNK_BYTES, 1) if chunk_bytes is None else chunk_bytes
        self.threads = max(1, spec.threads if spec.threads else (spec.default_threads or 1))
        self.connected_here = False
        self._capacity = 1

    async def open(self) -> None:
        # In this thread: ray.init sets its signal handlers only from the main thread.
        ray, self.connected_here = connect(self.address)
        res = ray.cluster_resources()
        if self.spec.device == "cuda":
            slots = int(res.get("GPU", 0))
            if slots < 1:
                raise RingRiftError(f"--device cuda: the Ray cluster at {self.address!r} has no GPU")
        else:
            slots = int(res.get("CPU", 0) // self.threads)
            if slots < 1:
                raise RingRiftError(f"the Ray cluster at {self.address!r} has {res.get('CPU', 0):g} CPUs, fewer "
                                    f"than the {self.threads} threads of one range (--threads)")
        self._capacity = 2 * slots  # one queued behind each running range keeps every node busy
        remote = ray.remote
        # SPREAD: ranges are independent CPU work; Ray's default policy packs tasks onto the
        # driver's node until it is half busy, so short ranges could all run on a few nodes.
        opts = dict(max_retries=self.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD")
        if self.spec.device == "cuda":
            opts.update(num_cpus=1, num_gpus=1)
        else:
            opts.update(num_cpus=self.threads)
        self._play = remote(play_range).options(**opts)
        if self.spec.model:  # a net's policy: its bytes go into the object store once
            self._model_ref = ray.put(self.spec.model.path.read_bytes())
        self._read = remote(read_chunk)
        self._remove = remote(remove_folder)

    def capacity(self) -> int:
        return self._capacity

    def _fields(self) -> dict:
        s = self.spec
        out = {"board": s.board, "players": s.players, "seed": s.seed, "policy": s.policy, "max_moves": s.max_moves,
               "batch_size": s.batch_size, "device": s.device}
        if s.model:  # the ref in a list: Ray hands it over unresolved, so a node fetches the bytes only when it lacks them
            out["model"] = {"sha256": s.model.sha256, "ref": [self._model_ref], "prefix": s.model.prefix,
                            "suffix": s.model.suffix}
        return out

    async def run_range(self, task: RangeTask, report) -> RangeResult:
        ray = self.ray
        r = task.range
        ref = self._play.remote(self._fields(), str(task.todo), self.threads, self.inline_bytes)
        try:
            out = await ref
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayError as exc:
            raise RangeLost("ray", f"range {r}: {_first_line(exc)}") from None
        parts = self.spec.parts_dir()
        parts.mkdir(parents=True, exist_ok=True)
        node = out["node"]
        local = parts / f"ray_{node.replace('/', '_')}_{r.tag}.db"
        report(node, out["games"], task.todo.count)
        for f in ("", "-wal", "-shm"):
            local.with_name(local.name + f).unlink(missing_ok=True)
        if "data" in out:
            for f, data in out["data"].items():
                local.with_name(local.name + f[len("range.db"):]).write_bytes(data)
        else:
            await self._fetch_chunks(out, local, r)
        return RangeResult(worker=node, db=local, info={"games": out["games"], "seconds": out["seconds"]})

    async def _fetch_chunks(self, out: dict, local, r) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        pin = dict(scheduling_strategy=NodeAffinitySchedulingStrategy(out["node_id"], soft=False), num_cpus=0,
                   max_retries=0)
        try:
            for f, size in out["sizes"].items():
                path = os.path.join(out["folder"], f)
                with open(local.with_name(local.name + f[len("range.db"):]), "wb") as fh:
                    for offset in range(0, size, self.chunk_bytes):
                        fh.write(await self._read.options(**pin).remote(path, offset, self.chunk_bytes))
        except self.ray.exceptions.RayError as exc:
            raise RangeLost(out["node"], f"range {r}: its DB could not be read back from the node: "
                                         f"{_first_line(exc)}") from None
        chunks = sum(-(-size // self.chunk_bytes) for size in out["sizes"].values())
        logging.getLogger("ringrift.pipeline").info(
            f"{out['node']}: range {r}: DB of {sum(out['sizes'].values())} bytes read back in {chunks} chunks")
        try:
            await self._remove.options(**pin).remote(out["folder"])
        except self.ray.exceptions.RayError:
            pass  # the games are here; the node's temporary folder goes with the node

    async def close(self) -> None:
        if self.connected_here:
            await asyncio.to_thread(self.ray.shutdown)
            self.connected_here = False


def _size_env(name: str, default: int, least: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not least <= value <= 1 << 40:
        raise RingRiftError(f"${name}={raw!r}: expected a byte count {least}..{1 << 40}")
    return value


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---- cluster list | health ----------------------------------------------------------------------

def cluster_ray(command: str, address: str | None, out) -> int:
    """`ringrift-pipeline --backend ray cluster list|health`: the Ray cluster's nodes and
    resources; health also runs a task on every alive node for this package's version and build
    there (exit status 1 when a node is dead or runs another build)."""
    from ... import __version__
    from ..worker import build_id

    addr = ray_address(address)
    ray, here = connect(addr)
    try:
        nodes = ray.nodes()
        rows = [("node", "address", "state", "CPU", "GPU", "memory")]
        for n in nodes:
            res = n.get("Resources") or {}
            rows.append((n["NodeID"][:8], f"{n.get('NodeManagerAddress')}:{n.get('NodeManagerPort')}",
                         "alive" if n.get("Alive") else "dead", f"{res.get('CPU', 0):g}", f"{res.get('GPU', 0):g}",
                         f"{res.get('memory', 0) / 2**30:.1f} GiB"))
        infos: dict = {}
        if command == "health":
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            probe = ray.remote(node_info)
            refs = {n["NodeID"]: probe.options(num_cpus=0, max_retries=0, scheduling_strategy=
                                               NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                    for n in nodes if n.get("Alive")}
            for nid, ref in refs.items():
                try:
                    infos[nid] = ray.get(ref, timeout=120)
                except ray.exceptions.RayError as exc:
                    infos[nid] = {"error": _first_line(exc)}
                except Exception as exc:  # GetTimeoutError in older Rays is not a RayError
                    infos[nid] = {"error": _first_line(exc)}
        local_build = build_id()
        bad = 0
        if command == "health":
            rows[0] += ("ringrift", "build")
            for i, n in enumerate(nodes, start=1):
                info = infos.get(n["NodeID"])
                if not n.get("Alive"):
                    bad += 1
                    rows[i] += ("-", "-")
                elif info is None or "error" in info:
                    bad += 1
                    rows[i] += ("UNUSABLE", (info or {}).get("error", "no answer")[:80])
                else:
                    same = info["build"] == local_build
                    bad += not same
                    rows[i] += (info["version"], f"{info['build']} ({'same' if same else 'DIFFERS'})")
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out.write(f"Ray cluster at {addr}: {sum(1 for n in nodes if n.get('Alive'))} alive nodes of {len(nodes)}\n")
        for r in rows:
            out.write("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")
        if command == "health":
            alive = sum(1 for n in nodes if n.get("Alive"))
            out.write(f"{alive - (bad - (len(nodes) - alive))}/{alive} alive nodes healthy (this machine: ringrift "
                      f"{__version__} build {local_build})\n")
        return 1 if bad else 0
    finally:
        if here:
            ray.shutdown()
