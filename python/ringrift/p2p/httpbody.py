"""Request bodies read under a deadline. aiohttp waits for body bytes as long as the client keeps
the connection open, so a client that announces a body and then sends it a byte at a time, or
not at all, held a handler and a file descriptor for ever. As Apache's mod_reqtimeout does
(body=N,MinRate=R), a body gets `stall` seconds, and one more second for every MIN_RATE bytes
it has delivered: a real upload on a slow link goes through, a trickle does not. Past the
deadline the node answers 408 and closes the connection."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiohttp import web


MIN_RATE = 1024  # bytes a second, on average, that a body must keep up after its first `stall` s


class BodyStalled(Exception):
    """The body's bytes stopped coming, or came slower than the deadline allows."""


async def iter_body(request: web.Request, stall: float) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive; BodyStalled past the deadline."""
    loop = asyncio.get_running_loop()
    t0, got = loop.time(), 0
    while True:
        wait = min(stall, t0 + stall + got / MIN_RATE - loop.time())
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(request.content.readany(), wait)
        except asyncio.TimeoutError:
            raise BodyStalled(f"request body too slow: {got} bytes in {loop.time() - t0:.1f} s (a body gets "
                              f"{stall:g} s, and 1 s more per {MIN_RATE} bytes it delivers)") from None
        if not chunk:
            return
        got += len(chunk)
        yield chunk


def end_connection(request: web.Request) -> None:
    """Close the connection after this answer: the rest of a stalled body is not waited for."""
    protocol = request.protocol
    if protocol is not None:
        protocol.force_close()
