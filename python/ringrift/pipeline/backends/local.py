"""The host `localhost`: this machine, without SSH. Workers are subprocesses of the
orchestrator running this very installation (`sys.executable`), each in its own process group,
with stdin a pipe that closes when the orchestrator goes (so a worker never outlives it)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

from .base import HostError, HostHandle, RemoteProcess


class LocalProcess(RemoteProcess):
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.pid = proc.pid

    async def lines(self):
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return
            yield raw.decode(errors="replace").rstrip("\n")

    async def wait(self):
        return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except (asyncio.TimeoutError, ProcessLookupError):
            pass


class LocalHost(HostHandle):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.work_dir = Path(os.path.expanduser(cfg.work_dir))
        self.python = os.path.join(os.path.expanduser(cfg.venv), "bin", "python") if cfg.venv else sys.executable

    def command_line(self, argv):
        return (f"(local) cd {shlex.quote(str(self.work_dir))} && "
                f"{shlex.quote(self.python)} -m ringrift.pipeline {shlex.join(argv)}")

    def location(self, rel):
        return str(self.work_dir / rel)

    def pipeline_argv(self, argv):
        return [self.python, "-m", "ringrift.pipeline", *argv]

    async def probe(self, model=None):
        if self.python == sys.executable:
            from ..worker import probe_info

            return await asyncio.to_thread(probe_info, str(self.work_dir), model)
        extra = ["--model", model] if model else []
        rc, out = await self.run(self.pipeline_argv(["probe", "--work-dir", str(self.work_dir), *extra]), 60)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostError(self.name, f"probe failed (status {rc}): {out.strip()[-300:]}") from None

    async def start(self, argv):
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "ringrift.pipeline", *argv, cwd=self.work_dir, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HostError(self.name, f"cannot start the worker: {exc.strerror or exc}") from None
        return LocalProcess(proc)

    async def fetch(self, rel, local):
        src = self.work_dir / rel
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, local)
            wal = Path(f"{src}-wal")
            if wal.exists():
                shutil.copyfile(wal, f"{local}-wal")
        except OSError as exc:
            raise HostError(self.name, f"cannot copy {src}: {exc.strerror or exc}") from None

    async def put(self, local, rel):
        dst = self.work_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dst)

    async def glob(self, pattern):
        return sorted(str(p.relative_to(self.work_dir)) for p in self.work_dir.glob(pattern) if p.is_file())

    async def remove_db(self, rel):
        for suffix in ("", "-wal", "-shm"):
            path = f"{self.work_dir / rel}{suffix}"
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise HostError(self.name, f"cannot delete {path}: {exc.strerror or exc}") from None

    async def remove_dir_if_empty(self, rel):
        try:
            (self.work_dir / rel).rmdir()  # only an empty folder goes
            return True
        except OSError:
            return False

    async def run(self, argv, timeout):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(*argv, cwd=self.work_dir, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise HostError(self.name, f"{argv[0]} timed out after {timeout:g}s") from None
        return proc.returncode, out.decode(errors="replace")
