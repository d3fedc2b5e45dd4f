"""Execution backends: how the orchestrator reaches a host.

`ssh` (asyncssh; this machine itself without SSH when a host is `localhost`) drives the hosts
of the hosts file: a backend hands out one `HostHandle` per configured host (see `base.py`),
which is all the orchestrator and the cluster commands use. `p2p` drives a `ringrift-p2p`
cluster through its leader instead (see `p2p.py` and docs/p2p.md). `ray` (`ray_backend.py`) and
`local` (`pool.py`) are executors of the scheduler (../scheduler.py): they only run a seed range
and hand back its DB (docs/scaling.md).
"""

from __future__ import annotations

from .base import Backend, BackendUnavailable, HostError, HostHandle, RemoteProcess

BACKENDS = ("ssh", "p2p", "ray", "local")


def get_backend(name: str, *, p2p_leader: str | None = None, p2p_auth_token: str | None = None) -> Backend:
    if name == "ssh":
        from .ssh import SSHBackend

        return SSHBackend()
    if name == "p2p":
        from .p2p import P2PBackend

        return P2PBackend(leader=p2p_leader, auth_token=p2p_auth_token)
    if name in ("ray", "local"):
        raise BackendUnavailable(f"the {name} backend is an executor of the scheduler (see docs/scaling.md); it has "
                                 f"no per-host handles")
    raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "HostError", "HostHandle", "RemoteProcess", "get_backend"]
