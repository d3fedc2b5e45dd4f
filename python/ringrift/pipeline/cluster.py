"""`ringrift-pipeline cluster list|health|sync|update`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import logging
import os
import shlex
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import __version__
from ..engine.errors import RingRiftError
from .backends import HostError
from .backends.base import shell_path


def local_entry():
    """The implicit host of a run without a hosts file: this machine."""
    from .config import HOST_DEFAULTS, HostConfig

    return HostConfig(name="localhost", source="(no hosts configured)", **HOST_DEFAULTS)


def cmd_list(hosts_cfg, out) -> int:
    w = out.write
    if not hosts_cfg.hosts:
        where = hosts_cfg.path or "no hosts file"
        w(f"no hosts configured ({where}): every phase runs on this machine\n")
        return 0
    w(f"hosts of {hosts_cfg.path}:\n")
    rows = [("name", "target", "role", "capabilities", "jobs", "work_dir", "python")]
    for h in hosts_cfg.hosts:
        rows.append((h.name, h.target(), h.role, ",".join(h.capabilities), str(h.max_parallel_jobs),
                     h.work_dir if not h.is_local else os.path.expanduser(h.work_dir),
                     h.remote_python if not h.is_local else (h.venv and h.remote_python) or sys.executable))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        w("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")
    return 0


def _health_row(cfg, info, local_build) -> tuple[list[str], list[str]]:
    problems = []
    if info.get("build") != local_build:
        problems.append(f"ringrift build {info.get('build')} differs from this machine's {local_build} "
                        f"(run: ringrift-pipeline cluster update)")
    if info.get("disk_free_gb", 0) < cfg.min_free_disk_gb:
        problems.append(f"{info.get('disk_free_gb')} GiB free in {info.get('work_dir')}, below min_free_disk_gb "
                        f"{cfg.min_free_disk_gb:g}")
    if "gpu" in cfg.capabilities and info.get("gpu", "none") == "none":
        problems.append("declared capability gpu, but no GPU was found (cupy / nvidia-smi)")
    return problems


async def _probe_all(handles):
    async def one(h):
        return await asyncio.wait_for(h.probe(), h.cfg.connect_timeout + 120)

    return await asyncio.gather(*(one(h) for h in handles), return_exceptions=True)


def cmd_health(handles, out) -> int:
    from .worker import build_id

    local_build = build_id()

    async def main():
        try:
            return await _probe_all(handles)
        finally:
            await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)

    results = asyncio.run(main())
    rows = [("host", "status", "version", "build", "engine", "cores", "gpu", "disk free", "load")]
    notes = []
    bad = 0
    for h, res in zip(handles, results):
        if isinstance(res, BaseException):
            bad += 1
            reason = res.reason if isinstance(res, HostError) else (str(res) or type(res).__name__)
            if isinstance(res, asyncio.TimeoutError):
                reason = "probe timed out"
            rows.append((h.name, "UNHEALTHY", "-", "-", "-", "-", "-", "-", "-"))
            notes.append(f"{h.name}: unreachable or unusable: {reason}")
            continue
        problems = _health_row(h.cfg, res, local_build)
        if problems:
            bad += 1
            notes.extend(f"{h.name}: {p}" for p in problems)
        same = " (same)" if res.get("build") == local_build else " (DIFFERS)"
        rows.append((h.name, "UNHEALTHY" if problems else "healthy", str(res.get("version")),
                     f"{res.get('build')}{same}", str(res.get("engine")), str(res.get("cores")), str(res.get("gpu")),
                     f"{res.get('disk_free_gb')} GiB", "/".join(str(x) for x in res.get("load", []))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")
    for n in notes:
        out.write(f"  {n}\n")
    out.write(f"{len(handles) - bad}/{len(handles)} hosts healthy (this machine: ringrift {__version__} "
              f"build {local_build})\n")
    return 1 if bad else 0


def check_part(path: Path) -> tuple[int, set]:
    """Games and engine versions of a pulled DB (a read-write open folds a pulled -wal in)."""
    from ..db import GameDB

    with GameDB(path, create=False) as db:
        versions = {v for (v,) in db.conn.execute("SELECT DISTINCT engine_version FROM games")}
        return db.count_games(), versions


def cmd_sync(handles, output_db: Path, logger: logging.Logger, out, err) -> int:
    """Pull every game DB under each host's work_dir/runs and merge it into `output_db`."""
    from ..db import GameDB
    from ..db.errors import DBError
    from ..selfplay.runner import ENGINE_VERSION

    parts = output_db.parent / f".{output_db.name}.parts"
    output_db.parent.mkdir(parents=True, exist_ok=True)
    GameDB(output_db).close()
    lock = asyncio.Lock()
    report: dict = {}

    async def one(h):
        files = await h.glob("runs/*/*.db")
        added = pulled = 0
        problems = []
        for rel in files:
            local = parts / f"sync_{h.name}_{rel.replace('/', '_')}"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{local}{suffix}").unlink(missing_ok=True)
            await h.fetch(rel, local)
            pulled += 1
            async with lock:
                try:
                    n, versions = await asyncio.to_thread(check_part, local)
                    if versions - {ENGINE_VERSION}:
                        problems.append(f"{rel}: games of engine {', '.join(sorted(map(str, versions)))}, this machine "
                                        f"runs {ENGINE_VERSION}: not merged (run: ringrift-pipeline cluster update)")
                    else:
                        added += await asyncio.to_thread(_merge_into, output_db, local)
                except DBError as exc:
                    problems.append(f"{rel}: {exc}")
                finally:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{local}{suffix}").unlink(missing_ok=True)
        logger.info(f"sync {h.name}: {pulled} DBs pulled, {added} new games")
        report[h.name] = (pulled, added, problems)

    async def main():
        try:
            return await asyncio.gather(*(one(h) for h in handles), return_exceptions=True)
        finally:
            await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)

    results = asyncio.run(main())
    try:
        parts.rmdir()
    except OSError:
        pass
    bad = 0
    for h, res in zip(handles, results):
        if isinstance(res, BaseException):
            bad += 1
            reason = res.reason if isinstance(res, HostError) else str(res)
            out.write(f"{h.name}: FAILED: {reason}\n")
            continue
        pulled, added, problems = report[h.name]
        out.write(f"{h.name}: {pulled} game DBs pulled, {added} new games merged\n")
        for p in problems:
            bad += 1
            out.write(f"  {h.name}: {p}\n")
    with GameDB(output_db) as db:  # read-write: its close folds the WAL in and removes -wal/-shm
        total = db.count_games()
    out.write(f"database: {output_db} ({total} games)\n")
    return 1 if bad else 0


def _merge_into(output_db: Path, part: Path) -> int:
    from ..db import GameDB

    with GameDB(output_db) as db:
        return db.merge_from(part)


# ---- update: ship this machine's exact build ----------------------------------------------

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_from_installed(dest: Path | None) -> Path:
    """Pack the installed ringrift (the package files exactly as installed, compiled engine
    included) into a wheel that pip can install elsewhere: the same build, byte for byte.
    With `dest` None only the wheel's file name is returned (nothing is written)."""
    import ringrift

    try:
        dist = importlib.metadata.distribution("ringrift")
    except importlib.metadata.PackageNotFoundError:
        raise RingRiftError("ringrift is not installed as a package here (run: pip install .)") from None
    pkg = Path(ringrift.__file__).resolve().parent
    site = Path(str(dist.locate_file(""))).resolve()
    if pkg.parent != site:
        raise RingRiftError(f"the running ringrift ({pkg}) is not the installed distribution in {site} "
                            f"(an editable or source-tree run?); install it with pip install . first")
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [ln.split(":", 1)[1].strip() for ln in wheel_meta.splitlines() if ln.startswith("Tag:")]
    if not tags:
        raise RingRiftError("the installed ringrift has no WHEEL tag; reinstall it with pip install .")
    info_dir = next((Path(str(f)).parts[0] for f in dist.files or [] if str(f).endswith(".dist-info/METADATA")), None)
    if info_dir is None:
        raise RingRiftError("the installed ringrift has no METADATA record; reinstall it with pip install .")
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            entries.append((f"ringrift/{path.relative_to(pkg).as_posix()}", path))
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if parts and parts[0] == info_dir and parts[-1] not in skip:
            entries.append((Path(str(f)).as_posix(), site / Path(str(f))))
    name = f"ringrift-{dist.version}-{tags[0]}.whl"
    if dest is None:
        return Path(name)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / name
    record = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, path in entries:
            data = path.read_bytes()
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
            record.append(f"{arc},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return out


def cmd_update(handles, logger: logging.Logger, out, dry_run: bool = False) -> int:
    from .worker import build_id

    local_build = build_id()
    with tempfile.TemporaryDirectory(prefix="ringrift-wheel-") as tmp:
        wheel = wheel_from_installed(None if dry_run else Path(tmp))
        wname = wheel.name
        if dry_run:
            out.write(f"plan: pack the installed ringrift (build {local_build}) as {wname}, then on each host:\n")
        results: dict = {}

        async def one(h):
            cfg = h.cfg
            if cfg.is_local and not cfg.venv:
                results[h.name] = "this machine (the source of the build)"
                return
            rel = f"dist/{wname}"
            py = cfg.remote_python
            create = None
            if cfg.venv:
                create = ["sh", "-c", f"test -x {shell_path(py)} || {shlex.quote(cfg.python)} -m venv "
                                      f"--system-site-packages {shell_path(cfg.venv)}"]
            install = ["sh", "-c", f"{shell_path(py)} -m pip install -q --disable-pip-version-check --no-deps "
                                   f"--force-reinstall {shlex.quote(rel)} && {shell_path(py)} -m pip install -q "
                                   f"--disable-pip-version-check {shlex.quote(rel)}"]
            if dry_run:
                out.write(f"  {h.name}: copy {wname} -> {h.location(rel)}\n")
                for argv in ([create] if create else []) + [install]:
                    out.write(f"    run on {h.name}, in {cfg.work_dir}: {shlex.join(argv)}\n")
                out.write(f"    check: its ringrift build must be {local_build}\n")
                return
            await h.put(wheel, rel)
            if create:
                rc, text = await h.run(create, 600)
                if rc != 0:
                    raise HostError(h.name, f"cannot create the venv {cfg.venv}: {text.strip()[-300:]}")
            rc, text = await h.run(install, 900)
            logger.info(f"update {h.name}: pip exited {rc}: {text.strip()[-2000:]}")
            if rc != 0:
                raise HostError(h.name, f"pip install failed (status {rc}): {text.strip().splitlines()[-1:] or ''}")
            info = await h.probe()
            if info.get("build") != local_build:
                raise HostError(h.name, f"after the install the host runs build {info.get('build')}, not "
                                        f"{local_build}: versions do not match")
            results[h.name] = f"ringrift {info.get('version')} build {info.get('build')} (matches)"

        async def main():
            try:
                return await asyncio.gather(*(one(h) for h in handles), return_exceptions=True)
            finally:
                await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)

        res = asyncio.run(main())
    if dry_run:
        out.write("nothing was changed (--dry-run)\n")
        return 0
    bad = 0
    for h, r in zip(handles, res):
        if isinstance(r, BaseException):
            bad += 1
            reason = r.reason if isinstance(r, HostError) else (str(r) or type(r).__name__)
            out.write(f"{h.name}: FAILED: {reason}\n")
            logger.error(f"update {h.name}: {reason}")
        else:
            out.write(f"{h.name}: {results[h.name]}\n")
    out.write(f"{len(handles) - bad}/{len(handles)} hosts run this machine's build {local_build}\n")
    return 1 if bad else 0
