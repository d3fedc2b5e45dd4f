"""The nets of a node: content-addressed model files for ``onnx:`` and ``gumbel:onnx:`` self-play.

A model lives at DATA_DIR/models/<sha256>.onnx. The pipeline uploads its model to the leader
(``PUT /models/<sha256>``); before the leader starts a job of a net's run on another node it
asks that node whether it holds the hash (``HEAD /models/<sha256>``) and uploads the file only
when it does not, so each node receives a model once. An upload is authenticated like every
request (the node's bearer check), refused over MAX_MODEL_BYTES (its Content-Length first,
then as it streams), streamed to a temporary file in chunks (never held in memory), and moved
into place only when its SHA-256 is the one in its URL; otherwise it is deleted and refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from pathlib import Path

from aiohttp import web

from ..pipeline.models import MAX_MODEL_BYTES, MODELS_DIR, SHA256, model_rel
from .client import NodeError
from .httpbody import BodyStalled, end_connection, iter_body

log = logging.getLogger("ringrift.p2p")


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ModelStore:
    def __init__(self, data_dir: Path, node_id: str, stall: float):
        self.data_dir = data_dir
        self.node_id = node_id
        self.stall = stall  # seconds an upload may send no bytes before it is refused (408)
        self.uploads = 0  # PUT requests of a well-formed hash (the leader asks first, so a held model gets none)
        self.received = 0  # models stored by an upload
        self.rejected = 0  # uploads refused (hash mismatch, too large, cut short)
        self._push_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._put_locks: dict[str, asyncio.Lock] = {}

    def path(self, sha256: str) -> Path:
        return self.data_dir / model_rel(sha256)

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    # -- HTTP ----------------------------------------------------------------------------------
    def _sha(self, request) -> str | None:
        sha = request.match_info["sha256"]
        return sha if SHA256.match(sha) else None

    async def h_list(self, request):
        folder = self.data_dir / MODELS_DIR
        names = sorted(p.name for p in folder.glob("*.onnx")) if folder.is_dir() else []
        return web.json_response({"node_id": self.node_id, "models": [n[:-5] for n in names][:1000],
                                  "uploads": self.uploads, "received": self.received,
                                  "rejected": self.rejected})

    async def h_get(self, request):
        sha = self._sha(request)
        if sha is None:
            return _error("the model's name must be its SHA-256 (64 lowercase hex digits)", 400)
        if not self.has(sha):
            return _error(f"no model {sha[:12]} on node {self.node_id}", 404)
        return web.FileResponse(self.path(sha), headers={"X-Ringrift-Sha256": sha,
                                                         "Content-Type": "application/octet-stream"})

    async def h_put(self, request):
        sha = self._sha(request)
        if sha is None:
            return _error("the model's name must be its SHA-256 (64 lowercase hex digits)", 400)
        self.uploads += 1
        if request.content_length is not None and request.content_length > MAX_MODEL_BYTES:
            self.rejected += 1
            return _error(f"model upload over {MAX_MODEL_BYTES} bytes", 413)
        lock = self._put_locks.setdefault(sha, asyncio.Lock())
        async with lock:  # two uploads of one model: the second finds it stored
            if self.has(sha):
                return web.json_response({"sha256": sha, "stored": False, "present": True})
            folder = self.data_dir / MODELS_DIR
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{sha}.{uuid.uuid4().hex[:8]}.part"
            h = hashlib.sha256()
            n = 0
            try:
                with open(tmp, "wb") as fh:
                    async for chunk in iter_body(request, self.stall):
                        n += len(chunk)
                        if n > MAX_MODEL_BYTES:
                            self.rejected += 1
                            return _error(f"model upload over {MAX_MODEL_BYTES} bytes", 413)
                        h.update(chunk)
                        fh.write(chunk)
                if request.content_length is not None and n != request.content_length:
                    self.rejected += 1
                    return _error(f"model upload ended after {n} of {request.content_length} bytes", 400)
                if h.hexdigest() != sha:
                    self.rejected += 1
                    log.warning("refused a model upload: its bytes hash to %s, not %s", h.hexdigest()[:12], sha[:12])
                    return _error(f"model upload does not match its SHA-256 ({h.hexdigest()[:12]}... is not "
                                  f"{sha[:12]}...): refused, not stored", 400)
                os.replace(tmp, self.path(sha))
            except BodyStalled as exc:
                self.rejected += 1
                end_connection(request)
                return _error(f"model upload after {n} bytes: {exc}", 408)
            finally:
                tmp.unlink(missing_ok=True)
            self.received += 1
            log.info("model %s received (%d bytes)", sha[:12], n)
            return web.json_response({"sha256": sha, "stored": True, "size": n}, status=201)

    # -- the leader's side -------------------------------------------------------------------
    async def push(self, client, url: str, sha256: str) -> bool:
        """Make sure the node at `url` holds model `sha256`: upload it when it does not. True
        when it was uploaded. Raises NodeError."""
        lock = self._push_locks.setdefault((url, sha256), asyncio.Lock())
        async with lock:  # two jobs starting on one node upload it once
            if await client.has(f"{url}/models/{sha256}"):
                return False
            if not self.has(sha256):
                raise NodeError(url, f"this node lost model {sha256[:12]} (not in {self.data_dir / MODELS_DIR})")
            await client.upload(f"{url}/models/{sha256}", self.path(sha256))
            log.info("model %s sent to %s", sha256[:12], url)
            return True
