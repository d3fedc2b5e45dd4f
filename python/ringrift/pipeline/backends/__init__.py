"""Execution backends. Every backend is an executor of the one scheduler (../scheduler.py),
which owns the plan, dispatch, re-dispatch, the merge and the state file; an executor only
runs a seed range somewhere and hands back its DB (docs/scaling.md):

`ssh` (`hosts.py`, over the per-host handles of `ssh.py`: asyncssh, or this machine itself
without SSH when a host is `localhost`, `local.py`), `p2p` (`p2p.py`: the leader of a
`ringrift-p2p` cluster, docs/p2p.md), `ray` (`ray_backend.py`) and `local` (`pool.py`: a thread
pool). `get_backend` hands out the host handles the ssh executor and the cluster commands use.
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
