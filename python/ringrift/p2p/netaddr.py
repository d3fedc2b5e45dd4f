"""Interface addresses, the Tailscale ranges, and the address a node advertises.

`--tailscale-only` binds only to addresses in Tailscale's ranges (IPv4 100.64.0.0/10, the CGNAT
block Tailscale hands out, and IPv6 fd7a:115c:a1e0::/48). `tailscale_addresses` makes that
choice from a given interface list, so it is testable without such an interface.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

TAILSCALE_NETS = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48"))


class AddressError(Exception):
    """No usable address (e.g. --tailscale-only on a machine without a Tailscale address)."""


def is_tailscale(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in TAILSCALE_NETS)


def tailscale_addresses(interfaces) -> list[str]:
    """The Tailscale addresses among `interfaces`, [(interface name, address)], in order,
    without duplicates."""
    out: list[str] = []
    for _name, addr in interfaces:
        if is_tailscale(addr) and addr not in out:
            out.append(addr)
    return out


def choose_bind_addresses(host: str, *, tailscale_only: bool, interfaces=None) -> list[str]:
    """The addresses to listen on. Without --tailscale-only: [host]. With it: the Tailscale
    addresses of this machine (all of them when host is a wildcard, else host itself, which
    must be one), or AddressError naming what was found."""
    if not tailscale_only:
        return [host]
    ifaces = list_interfaces() if interfaces is None else list(interfaces)
    found = tailscale_addresses(ifaces)
    if not found:
        seen = ", ".join(f"{n} {a}" for n, a in ifaces) or "none"
        raise AddressError("--tailscale-only: this machine has no Tailscale address (looked for 100.64.0.0/10 and "
                           f"fd7a:115c:a1e0::/48; interface addresses: {seen}); start tailscale, or drop "
                           "--tailscale-only")
    if host in ("0.0.0.0", "::", ""):
        return found
    if host not in found:
        raise AddressError(f"--tailscale-only: --host {host} is not a Tailscale address of this machine "
                           f"(those are: {', '.join(found)})")
    return [host]


def list_interfaces() -> list[tuple[str, str]]:
    """(interface, address) for every IPv4 and IPv6 address of this machine (Linux: ioctl and
    /proc/net/if_inet6; elsewhere the addresses the host name resolves to)."""
    out: list[tuple[str, str]] = []
    if sys.platform.startswith("linux"):
        import fcntl

        SIOCGIFADDR = 0x8915
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _idx, name in socket.if_nameindex():
                try:
                    res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue
                out.append((name, socket.inet_ntoa(res[20:24])))
        try:
            with open("/proc/net/if_inet6") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 6:
                        raw = bytes.fromhex(parts[0])
                        out.append((parts[5], str(ipaddress.IPv6Address(raw))))
        except OSError:
            pass
        return out
    try:
        for fam, _, _, _, sa in socket.getaddrinfo(socket.gethostname(), None):
            if fam in (socket.AF_INET, socket.AF_INET6):
                out.append(("?", sa[0]))
    except OSError:
        pass
    return out


def url_host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def default_advertise_host(bind: list[str]) -> str:
    """The address other nodes should use: the bound address, or for a wildcard the one the
    kernel would use for outgoing traffic (found with an unconnected UDP socket's connect,
    which sends nothing), falling back to 127.0.0.1."""
    first = bind[0]
    if first not in ("0.0.0.0", "::", ""):
        return first
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1; connect() on UDP sends no packet
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
