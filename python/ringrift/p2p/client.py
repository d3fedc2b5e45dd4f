"""The HTTP client of the cluster: used by nodes to talk to each other and by the pipeline's
p2p backend to talk to the leader. Every call has a timeout; downloads are streamed to disk in
chunks and checked against the announced size and SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import aiohttp

from .auth import auth_headers


def _why(exc) -> str:
    err = getattr(exc, "os_error", None)
    if err is not None and getattr(err, "errno", None):
        return os.strerror(err.errno)
    return str(err or exc)


class NodeError(Exception):
    """A call to a node failed. `status` is the HTTP status (None: no answer at all)."""

    def __init__(self, url: str, message: str, status: int | None = None, body: dict | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body or {}


class NodeClient:
    def __init__(self, token: str | None, *, timeout: float = 10.0, session: aiohttp.ClientSession | None = None):
        self.token = token
        self.timeout = timeout
        self._session = session
        self._own = session is None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # keepalive_timeout below the 10 s a node keeps an idle connection (node.HEADER_TIMEOUT):
            # a connection reused just as the node closes it fails the call (as aiohttp's default 15 s allowed)
            self._session = aiohttp.ClientSession(
                headers=auth_headers(self.token),
                connector=aiohttp.TCPConnector(limit=64, force_close=False, keepalive_timeout=5.0),
                raise_for_status=False)
            self._own = True
        return self._session

    async def close(self) -> None:
        if self._own and self._session is not None and not self._session.closed:
            await self._session.close()

    async def request(self, method: str, url: str, *, body: dict | None = None, timeout: float | None = None,
                      params: dict | None = None, headers: dict | None = None) -> dict:
        s = await self.session()
        t = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with s.request(method, url, json=body, timeout=t, params=params, headers=headers) as resp:
                raw = await resp.read()
                try:
                    data = json.loads(raw) if raw else {}
                except ValueError:
                    data = {"error": raw[:200].decode(errors="replace")}
                if resp.status >= 400:
                    msg = data.get("error") if isinstance(data, dict) else None
                    raise NodeError(url, f"HTTP {resp.status}: {msg or resp.reason}", resp.status,
                                    data if isinstance(data, dict) else None)
                return data if isinstance(data, dict) else {"data": data}
        except NodeError:
            raise
        except asyncio.TimeoutError:
            raise NodeError(url, f"no answer within {timeout or self.timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise NodeError(url, f"connection failed: {_why(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NodeError(url, f"{type(exc).__name__}: {exc}") from None

    async def get(self, url: str, **kw) -> dict:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, body: dict, **kw) -> dict:
        return await self.request("POST", url, body=body, **kw)

    async def download(self, url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
                       timeout: float = 600.0, idle: float = 30.0) -> int:
        """Stream `url` into `dest` (written under a temporary name, renamed when complete and
        verified). Returns the bytes written."""
        s = await self.session()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        h = hashlib.sha256()
        n = 0
        t = aiohttp.ClientTimeout(total=timeout, sock_read=idle)
        try:
            async with s.get(url, timeout=t) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    try:
                        msg = json.loads(raw).get("error")
                    except (ValueError, AttributeError):
                        msg = None
                    raise NodeError(url, f"HTTP {resp.status}: {msg or resp.reason}", resp.status)
                want = sha256 or resp.headers.get("X-Ringrift-Sha256")
                with open(tmp, "wb") as fh:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        fh.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
            if size is not None and n != size:
                raise NodeError(url, f"download ended after {n} of {size} bytes")
            if want and h.hexdigest() != want:
                raise NodeError(url, "downloaded file does not match its SHA-256")
            os.replace(tmp, dest)
            return n
        except NodeError:
            tmp.unlink(missing_ok=True)
            raise
        except asyncio.TimeoutError:
            tmp.unlink(missing_ok=True)
            raise NodeError(url, "download timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise NodeError(url, f"download failed: {type(exc).__name__}: {exc}") from None

    async def has(self, url: str, *, timeout: float | None = None) -> bool:
        """HEAD `url`: True for 200, False for 404; NodeError otherwise."""
        s = await self.session()
        t = aiohttp.ClientTimeout(total=timeout or self.timeout)
        try:
            async with s.head(url, timeout=t) as resp:
                if resp.status == 404:
                    return False
                if resp.status >= 400:
                    raise NodeError(url, f"HTTP {resp.status}: {resp.reason}", resp.status)
                return True
        except NodeError:
            raise
        except asyncio.TimeoutError:
            raise NodeError(url, f"no answer within {timeout or self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NodeError(url, f"{type(exc).__name__}: {_why(exc)}") from None

    async def upload(self, url: str, path: Path, *, timeout: float = 600.0, idle: float = 30.0) -> dict:
        """PUT the file `path` to `url`, streamed from disk (its Content-Length announced)."""
        s = await self.session()
        t = aiohttp.ClientTimeout(total=timeout, sock_read=idle)
        try:
            with open(path, "rb") as fh:
                async with s.put(url, data=fh, timeout=t,
                                 headers={"Content-Type": "application/octet-stream"}) as resp:
                    raw = await resp.read()
                    try:
                        data = json.loads(raw) if raw else {}
                    except ValueError:
                        data = {}
                    if resp.status >= 400:
                        msg = data.get("error") if isinstance(data, dict) else None
                        raise NodeError(url, f"HTTP {resp.status}: {msg or resp.reason}", resp.status,
                                        data if isinstance(data, dict) else None)
                    return data if isinstance(data, dict) else {}
        except NodeError:
            raise
        except asyncio.TimeoutError:
            raise NodeError(url, "upload timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NodeError(url, f"upload failed: {type(exc).__name__}: {_why(exc)}") from None
