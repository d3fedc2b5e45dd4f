"""The SSH backend, on asyncssh.

One pooled connection per host (opened on first use, reopened after a loss), with TCP and SSH
keepalives and connect/login timeouts. Host keys are always verified against the configured
known_hosts file; a key that is not there (first contact) or that changed is refused, with the
command that pins it after it has been checked. With `ssh_key` set only that key is offered
(no agent). Workers run as `cd WORK_DIR && exec PYTHON -m ringrift.pipeline worker ...` in an
exec channel; closing the channel (or losing the connection) closes the worker's stdin, and the
worker exits on that EOF; on cancel the orchestrator also kills it by pid. Files move by SFTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from pathlib import Path

from .base import Backend, HostError, HostHandle, RemoteProcess, shell_path
from .local import LocalHost


def _asyncssh():
    import warnings

    try:
        # cryptography 44+ deprecates DSA, and asyncssh's import names its DSA types: about ten
        # warnings on every SSH command, about keys we never use
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
            import asyncssh
    except ImportError:  # pragma: no cover (a declared dependency)
        from .base import BackendUnavailable

        raise BackendUnavailable("the ssh backend needs asyncssh: pip install asyncssh") from None
    return asyncssh


class SSHProcess(RemoteProcess):
    def __init__(self, host: "SSHHost", proc):
        self.host = host
        self.proc = proc
        self.pid = None

    async def lines(self):
        asyncssh = _asyncssh()
        try:
            async for line in self.proc.stdout:
                yield line.rstrip("\n")
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.host.name, f"lost the worker's output: {exc}") from None

    async def wait(self):
        asyncssh = _asyncssh()
        try:
            res = await self.proc.wait(check=False)
        except (asyncssh.Error, OSError):
            return None
        if self.host.lost():
            return None
        return res.exit_status if res.exit_status is not None and res.exit_status >= 0 else None

    async def kill(self) -> None:
        try:
            self.proc.close()
        except Exception:  # noqa: BLE001  (already closed)
            pass
        if self.pid and not self.host.lost():
            pid = int(self.pid)
            cmd = f"grep -q ringrift.pipeline /proc/{pid}/cmdline 2>/dev/null && kill -KILL {pid} 2>/dev/null; true"
            try:
                await asyncio.wait_for(self.host._conn.run(cmd, check=False), 10)
            except Exception:  # noqa: BLE001  (the channel close already stops it)
                pass


class SSHHost(HostHandle):
    def __init__(self, cfg):
        super().__init__(cfg)
        self._conn = None
        self._lock: asyncio.Lock | None = None

    # -- connection ------------------------------------------------------------------------
    def lost(self) -> bool:
        return self._conn is None or self._conn.is_closed()

    def _pin_hint(self) -> str:
        return f"ssh-keyscan -p {self.cfg.ssh_port} {self.cfg.ssh_host} >> {self.cfg.known_hosts}"

    async def connection(self):
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.lost():
                return self._conn
            self._conn = await self._connect()
            return self._conn

    async def _connect(self):
        asyncssh = _asyncssh()
        cfg = self.cfg
        where = f"{cfg.user}@{cfg.ssh_host}:{cfg.ssh_port}"
        if not os.path.isfile(cfg.known_hosts):
            state = "is not a regular file" if os.path.exists(cfg.known_hosts) else "does not exist"
            raise HostError(self.name, f"known_hosts file {cfg.known_hosts} {state}, so the host key of "
                                       f"{cfg.ssh_host}:{cfg.ssh_port} cannot be verified; check the key and pin it: "
                                       f"{self._pin_hint()}")
        opts = dict(port=cfg.ssh_port, username=cfg.user, known_hosts=cfg.known_hosts, config=None,
                    connect_timeout=cfg.connect_timeout, login_timeout=cfg.connect_timeout,
                    keepalive_interval=cfg.keepalive_interval, keepalive_count_max=3)
        if cfg.ssh_key:
            if not os.path.isfile(cfg.ssh_key):
                raise HostError(self.name, f"ssh_key {cfg.ssh_key} does not exist")
            opts.update(client_keys=[cfg.ssh_key], agent_path=None)
        try:
            return await asyncssh.connect(cfg.ssh_host, **opts)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostError(self.name, f"host key of {cfg.ssh_host}:{cfg.ssh_port} is not in {cfg.known_hosts} "
                                       f"(first contact, or the key changed): refused ({exc.reason}). Verify the "
                                       f"key, then pin it: {self._pin_hint()}") from None
        except asyncssh.PermissionDenied:
            key = cfg.ssh_key or "the default keys and agent"
            raise HostError(self.name, f"authentication refused by {where} (client key: {key}); add the public "
                                       f"key to the host's authorized_keys") from None
        except asyncssh.DisconnectError as exc:
            raise HostError(self.name, f"{where} disconnected during login: {exc.reason}") from None
        except asyncio.TimeoutError:
            raise HostError(self.name, f"timed out connecting to {where} after {cfg.connect_timeout:g}s") from None
        except (OSError, asyncssh.Error) as exc:
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise HostError(self.name, f"cannot connect to {where}: {why}") from None

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            try:
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            except Exception:  # noqa: BLE001
                pass
            self._conn = None

    # -- paths -----------------------------------------------------------------------------
    def sftp_path(self, rel: str) -> str:
        """`rel` under work_dir, as SFTP sees it (SFTP starts in the login's home)."""
        wd = self.cfg.work_dir.rstrip("/") or "/"
        if wd == "~":
            return rel
        if wd.startswith("~/"):
            return f"{wd[2:]}/{rel}"
        return f"{wd}/{rel}"

    def _shell(self, argv: list[str]) -> str:
        wd = shell_path(self.cfg.work_dir)
        return f"mkdir -p {wd} && cd {wd} && exec {shell_path(argv[0])} {shlex.join(argv[1:])}".rstrip()

    def pipeline_argv(self, argv: list[str]) -> list[str]:
        return [self.cfg.remote_python, "-m", "ringrift.pipeline", *argv]

    _pipeline_argv = pipeline_argv

    def command_line(self, argv):
        cfg = self.cfg
        return f"ssh -p {cfg.ssh_port} {cfg.user}@{cfg.ssh_host} {shlex.quote(self._shell(self._pipeline_argv(argv)))}"

    def location(self, rel):
        return f"{self.name}:{self.sftp_path(rel)}"

    # -- commands --------------------------------------------------------------------------
    async def run(self, argv, timeout):
        asyncssh = _asyncssh()
        conn = await self.connection()
        try:
            res = await conn.run(self._shell(argv), check=False, timeout=timeout, stderr=asyncssh.STDOUT)
        except asyncssh.TimeoutError:
            raise HostError(self.name, f"{argv[0]} timed out after {timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.name, f"connection lost running {argv[0]}: {exc}") from None
        out = res.stdout if isinstance(res.stdout, str) else (res.stdout or b"").decode(errors="replace")
        return res.exit_status, out

    async def probe(self, model=None):
        extra = ["--model", model] if model else []
        rc, out = await self.run(self._pipeline_argv(["probe", "--work-dir", ".", *extra]), 120)
        for line in reversed(out.strip().splitlines()):
            if line.startswith("{"):
                try:
                    info = json.loads(line)
                    info["work_dir"] = self.cfg.work_dir
                    return info
                except ValueError:
                    break
        tail = out.strip().splitlines()[-1] if out.strip() else "no output"
        if "No module named" in out:
            tail = f"ringrift is not installed for {self.cfg.remote_python} ({tail}); run: ringrift-pipeline cluster update"
        raise HostError(self.name, f"probe failed (status {rc}): {tail}")

    async def start(self, argv):
        asyncssh = _asyncssh()
        conn = await self.connection()
        try:
            proc = await conn.create_process(self._shell(self._pipeline_argv(argv)), stderr=asyncssh.STDOUT)
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.name, f"cannot start the worker: {exc}") from None
        return SSHProcess(self, proc)

    async def _sftp(self, what: str, fn):
        asyncssh = _asyncssh()
        conn = await self.connection()
        try:
            async with conn.start_sftp_client() as sftp:
                return await fn(sftp)
        except asyncssh.SFTPNoSuchFile as exc:
            raise HostError(self.name, f"{what}: no such file ({exc.reason})") from None
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.name, f"{what} failed: {getattr(exc, 'reason', None) or exc}") from None

    async def fetch(self, rel, local):
        remote = self.sftp_path(rel)
        local.parent.mkdir(parents=True, exist_ok=True)

        async def get(sftp):
            await sftp.get(remote, str(local))
            if await sftp.exists(remote + "-wal"):
                await sftp.get(remote + "-wal", f"{local}-wal")

        await self._sftp(f"pulling {remote}", get)

    async def put(self, local, rel):
        remote = self.sftp_path(rel)

        async def put(sftp):
            parent = os.path.dirname(remote)
            if parent:
                await sftp.makedirs(parent, exist_ok=True)
            await sftp.put(str(local), remote)

        await self._sftp(f"sending {local} to {remote}", put)

    async def remove_db(self, rel):
        asyncssh = _asyncssh()
        remote = self.sftp_path(rel)

        async def remove(sftp):
            for suffix in ("", "-wal", "-shm"):
                try:
                    await sftp.remove(remote + suffix)
                except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
                    pass

        await self._sftp(f"deleting {remote}", remove)

    async def remove_dir_if_empty(self, rel):
        asyncssh = _asyncssh()
        remote = self.sftp_path(rel)

        async def rmdir(sftp):
            try:
                await sftp.rmdir(remote)  # the server refuses a folder that is not empty
                return True
            except asyncssh.SFTPError:
                return False

        try:
            return await self._sftp(f"removing {remote}", rmdir)
        except HostError:
            return False

    async def glob(self, pattern):
        asyncssh = _asyncssh()
        base = self.sftp_path("")

        async def find(sftp):
            root = base.rstrip("/") or "."
            if not await sftp.exists(root):
                return []
            try:
                return await sftp.glob(f"{base}{pattern}")
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):  # asyncssh reports "no match" as an error
                return []

        found = await self._sftp(f"listing {base}{pattern}", find)
        return sorted(str(Path(p).relative_to(base)) if base else str(p) for p in found)


class SSHBackend(Backend):
    name = "ssh"

    def __init__(self):
        self._handles: list[HostHandle] = []

    def handle(self, cfg) -> HostHandle:
        h = LocalHost(cfg) if cfg.is_local else SSHHost(cfg)
        self._handles.append(h)
        return h

    async def close(self) -> None:
        await asyncio.gather(*(h.close() for h in self._handles), return_exceptions=True)
