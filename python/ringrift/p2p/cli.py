"""`ringrift-p2p`: run one node of the P2P cluster.

    ringrift-p2p --host 0.0.0.0 --port 8770 --data-dir ~/.ringrift/p2p [--require-auth]
                 [--tailscale-only] [--peer http://other:8770 ...] [--capabilities cpu,gpu]
                 [--max-jobs 2] [--advertise http://this-host:8770]

The cluster token comes from $RINGRIFT_CLUSTER_AUTH_TOKEN (preferred: a command line is
visible to other users of the machine) or --p2p-auth-token. Reference: docs/p2p.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..exitcodes import OneLineParser
from ..logfiles import LogFileHandler
from . import DEFAULT_DISCOVERY_PORT, DEFAULT_PORT, TOKEN_ENV
from .auth import resolve_token
from .discovery import parse_target
from .netaddr import AddressError, choose_bind_addresses, default_advertise_host, url_host
from .node import CAPABILITIES, NODE_ID, Node, NodeConfig

log = logging.getLogger("ringrift.p2p")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="ringrift-p2p", description="Run a node of the ringrift P2P self-play cluster.")
    ap.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    ap.add_argument("--data-dir", default="~/.ringrift/p2p", metavar="DIR",
                    help="jobs, their game DBs and the coordinator's range DBs (default ~/.ringrift/p2p)")
    ap.add_argument("--node-id", metavar="NAME", help="this node's name (default: the host name, remembered in "
                                                      "the data dir)")
    ap.add_argument("--advertise", metavar="URL", help="base URL other nodes reach this one at "
                                                       "(default http://<address>:<port>)")
    ap.add_argument("--peer", action="append", default=[], metavar="URL",
                    help="a node to contact directly where broadcast does not reach (repeatable, or comma-separated)")
    ap.add_argument("--capabilities", default="cpu", metavar="LIST",
                    help=f"comma-separated, of {', '.join(CAPABILITIES)} (default cpu)")
    ap.add_argument("--max-jobs", type=int, default=1, metavar="N",
                    help="self-play jobs this node runs at once (default 1; 0: coordinate only)")
    ap.add_argument("--priority", type=int, default=0, help="leader election priority: the highest live one leads "
                                                            "(default 0; ties: the earliest started)")
    ap.add_argument("--require-auth", action="store_true",
                    help="every endpoint but /health needs the cluster token as a bearer header")
    ap.add_argument("--p2p-auth-token", metavar="TOKEN", help=f"cluster token (default: ${TOKEN_ENV})")
    ap.add_argument("--tailscale-only", action="store_true",
                    help="listen only on this machine's Tailscale addresses (100.64.0.0/10, fd7a:115c:a1e0::/48)")
    ap.add_argument("--discovery-port", type=int, default=DEFAULT_DISCOVERY_PORT,
                    help=f"UDP port of discovery (default {DEFAULT_DISCOVERY_PORT})")
    ap.add_argument("--discovery-target", action="append", default=[], metavar="ADDR[:PORT]",
                    help="where announcements go (repeatable; default 255.255.255.255, the LAN broadcast)")
    ap.add_argument("--no-discovery", action="store_true", help="no UDP discovery: static peers only")
    ap.add_argument("--heartbeat", type=float, default=1.0, metavar="S", help="seconds between rounds (default 1)")
    ap.add_argument("--down-after", type=float, default=10.0, metavar="S",
                    help="a peer silent this long is marked down and its ranges re-dispatched (default 10)")
    ap.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return ap


def _node_id(arg: str | None, data_dir: Path) -> str:
    """--node-id, else the one remembered in the data dir, else the host name."""
    path = data_dir / "node_id"
    if arg:
        name = arg
    else:
        try:
            name = path.read_text().strip()
        except OSError:
            name = ""
        name = name or socket.gethostname().split(".")[0] or "node"
    if not NODE_ID.match(name):
        raise ValueError(f"node id {name!r}: use letters, digits, '_', '.', '-' (at most 63)")
    try:
        path.write_text(name + "\n")
    except OSError:
        pass
    return name


def _check_url(url: str, flag: str, given: str) -> str:
    """`url` if it is a usable http(s) base URL (a host, an optional port, no path, query or
    spaces); ValueError naming the flag otherwise."""
    try:
        u = urlsplit(url)
        port = u.port  # ValueError for a port that is not a number or out of range
    except ValueError:
        u, port = None, None
    if (u is None or not u.hostname or any(c.isspace() for c in url) or u.path not in ("", "/") or u.query
            or u.fragment or u.username or u.password or (port is not None and not 0 < port < 65536)):
        raise ValueError(f"{flag} {given!r} is not a node URL like http://host:8770 (or host:8770)")
    return url


def config_from_args(args, environ=None) -> NodeConfig:
    """The node's configuration; ValueError with a message for anything wrong."""
    environ = os.environ if environ is None else environ
    token = resolve_token(args.p2p_auth_token, environ)
    if args.require_auth and not token:
        raise ValueError(f"--require-auth needs the cluster token: set {TOKEN_ENV} (or --p2p-auth-token); "
                         "refusing to start an open node")
    if not 0 <= args.port <= 65535 or not 1 <= args.discovery_port <= 65535:
        raise ValueError("ports must be 1..65535")
    if args.max_jobs < 0 or args.max_jobs > 64:
        raise ValueError("--max-jobs must be 0..64")
    if not (0 < args.heartbeat <= 3600 and args.heartbeat < args.down_after <= 86400):  # NaN fails both
        raise ValueError("--heartbeat must be 0..3600 s and --down-after longer than it (at most 86400 s)")
    caps = [c.strip() for c in args.capabilities.split(",") if c.strip()]
    bad = [c for c in caps if c not in CAPABILITIES]
    if bad or not caps:
        raise ValueError(f"--capabilities: {', '.join(bad) or 'empty'}: use {', '.join(CAPABILITIES)}")
    try:
        bind = choose_bind_addresses(args.host, tailscale_only=args.tailscale_only)
    except AddressError as exc:
        raise ValueError(str(exc)) from None
    peers = []
    for item in args.peer:
        for u in item.split(","):
            u = u.strip().rstrip("/")
            if not u:
                continue
            if not u.startswith(("http://", "https://")):
                u = f"http://{u}"
            peers.append(_check_url(u, "--peer", item))
    advertise = (args.advertise or f"http://{url_host(default_advertise_host(bind))}:{args.port}").rstrip("/")
    if not advertise.startswith(("http://", "https://")):
        raise ValueError("--advertise must be an http:// or https:// URL")
    _check_url(advertise, "--advertise", advertise)
    data_dir = Path(os.path.expanduser(args.data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    discovery = not args.no_discovery
    if args.discovery_target:
        targets = [parse_target(t, args.discovery_port) for t in args.discovery_target]
    elif args.tailscale_only:
        targets = []  # no broadcast over Tailscale, and none onto the LAN: static peers only
    else:
        targets = [("255.255.255.255", args.discovery_port)]
    wildcard = bind[0] in ("0.0.0.0", "::", "")
    return NodeConfig(node_id=_node_id(args.node_id, data_dir), data_dir=data_dir, bind=bind, port=args.port,
                      advertise=advertise, peers=peers, capabilities=caps, max_jobs=args.max_jobs, token=token,
                      require_auth=args.require_auth, priority=args.priority, heartbeat=args.heartbeat,
                      down_after=args.down_after, discovery=discovery and bool(targets),
                      discovery_bind="0.0.0.0" if wildcard else bind[0], discovery_port=args.discovery_port,
                      discovery_targets=targets)


def _setup_logging(level: str, data_dir: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    log.setLevel(level)
    log.propagate = False
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    log.addHandler(h)
    try:
        fh = LogFileHandler(data_dir / "node.log", "ringrift-p2p")  # a full disk: one warning, the node goes on
        fh.setFormatter(fmt)
        log.addHandler(fh)
    except OSError:
        pass
    logging.getLogger("aiohttp.access").disabled = True


async def _serve(cfg: NodeConfig) -> int:
    node = Node(cfg)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await node.start()
    except RuntimeError as exc:
        print(f"ringrift-p2p: error: {exc}", file=sys.stderr)
        await node.stop()
        return 2
    except OSError as exc:
        print(f"ringrift-p2p: error: cannot listen on {', '.join(cfg.bind)} port {cfg.port} "
              f"(or discovery port {cfg.discovery_port}): {exc.strerror or exc}", file=sys.stderr)
        await node.stop()
        return 1
    print(f"ringrift-p2p: node {cfg.node_id} ready at {cfg.advertise}", file=sys.stderr, flush=True)
    await stop.wait()
    log.info("stopping")
    await node.stop()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"ringrift-p2p: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ringrift-p2p: error: {exc.filename or args.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    _setup_logging(args.log_level, cfg.data_dir)
    return asyncio.run(_serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
