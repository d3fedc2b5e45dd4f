"""The peer-to-peer backend (a leader node that hands work to peers over HTTP) is planned; it
plugs in as another `Backend`. Until it exists, selecting it is an error, never a stand-in."""

from __future__ import annotations

from .base import Backend, BackendUnavailable


class P2PBackend(Backend):
    name = "p2p"

    def __init__(self, *, leader: str | None = None, auth_token: str | None = None):
        raise BackendUnavailable("the p2p backend is not available yet; use --backend ssh (the default)")

    def handle(self, cfg):  # pragma: no cover (never constructed)
        raise BackendUnavailable("the p2p backend is not available yet")
