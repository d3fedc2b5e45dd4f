"""UDP discovery: every node announces itself every heartbeat to the configured targets (by
default the LAN broadcast address on the discovery port) and listens on the discovery port.

A datagram is a small JSON object (well under 1 KiB): {"v", "node", "url", "boot", "t"} plus,
with a cluster token, "mac" = HMAC-SHA256(token, the rest). It never carries the token. A node
with a token ignores unsigned, wrongly signed and stale datagrams. An announcement only tells
where a node might be: membership is confirmed over authenticated HTTP (`GET /node/state`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from . import PROTOCOL_VERSION
from .auth import open_datagram, sign_datagram

log = logging.getLogger("ringrift.p2p")


def parse_target(text: str, default_port: int) -> tuple[str, int]:
    """'ADDR' or 'ADDR:PORT' ([v6]:PORT for IPv6) -> (addr, port)."""
    text = text.strip()
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        addr, port_s = text.split(":")
        port = int(port_s)
    else:
        addr, port = text, default_port
    if not addr or not 1 <= port <= 65535:
        raise ValueError(f"bad discovery target {text!r} (ADDR or ADDR:PORT)")
    return addr, port


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "Discovery"):
        self.owner = owner

    def datagram_received(self, data, addr):
        body = open_datagram(data, self.owner.token)
        if body is None:
            self.owner.rejected += 1
            return
        self.owner.received += 1
        node, url = body.get("node"), body.get("url")
        if body.get("v") != PROTOCOL_VERSION or not isinstance(node, str) or not isinstance(url, str):
            return
        if node == self.owner.node_id or len(node) > 100 or len(url) > 300:
            return
        if not url.startswith(("http://", "https://")):
            return
        self.owner.on_peer(node, url)

    def error_received(self, exc):  # e.g. ICMP port unreachable for a target nobody listens on
        pass


class Discovery:
    def __init__(self, *, node_id: str, url_fn, boot: str, bind: str, port: int, targets: list[tuple[str, int]],
                 token: str | None, on_peer):
        self.node_id = node_id
        self.url_fn = url_fn
        self.boot = boot
        self.bind = bind
        self.port = port
        self.targets = targets
        self.token = token
        self.on_peer = on_peer
        self.transport = None
        self.received = 0
        self.rejected = 0
        self.sent = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((self.bind, self.port))
        sock.setblocking(False)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)

    def announce(self) -> None:
        if self.transport is None:
            return
        data = sign_datagram({"v": PROTOCOL_VERSION, "node": self.node_id, "url": self.url_fn(), "boot": self.boot,
                              "t": round(time.time(), 3)}, self.token)
        for addr, port in self.targets:
            try:
                self.transport.sendto(data, (addr, port))
                self.sent += 1
            except OSError as exc:  # no route, network down: the next heartbeat tries again
                log.debug("discovery: cannot send to %s:%s: %s", addr, port, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
