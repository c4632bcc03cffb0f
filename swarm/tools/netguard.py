"""SSRF guard: refuse URLs that would make a tool reach the host's own network.

Agents choose the URLs they fetch, and a model can be talked into fetching anything, so every
outgoing request of a tool (and every redirect hop) is checked here: only http(s), no
credentials in the URL, and every address the host name resolves to must be globally routable
unless the operator allow-listed it (``SWARM_WEB_ALLOW_HOSTS``).

Allow-list entries are host names (``intranet.example``), IP addresses, CIDRs
(``10.1.0.0/16``), or a host name / address with a port (``127.0.0.1:8080``,
``[::1]:8080``) which then allows that port only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from swarm.exceptions import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = {"http": 80, "https": 443}
#: NAT64's well-known prefix embeds an IPv4 address that a NAT64 gateway would connect to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class _Entry:
    name: str | None = None
    network: IPNetwork | None = None
    port: int | None = None


def _parse_entry(raw: str) -> _Entry:
    text = raw.strip().lower().rstrip(".")
    port: int | None = None
    if "/" in text:
        return _Entry(network=ipaddress.ip_network(text, strict=False))
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        text = host
    elif text.count(":") == 1:
        text, _, port_text = text.partition(":")
        port = int(port_text)
    try:
        return _Entry(network=ipaddress.ip_network(text), port=port)
    except ValueError:
        return _Entry(name=text, port=port)


def _parse_allow(allow: Sequence[str]) -> list[_Entry]:
    entries = []
    for raw in allow:
        try:
            entries.append(_parse_entry(raw))
        except ValueError as e:
            # A typo in the operator's allow-list must not silently widen or break the guard.
            raise ToolError(f"invalid SWARM_WEB_ALLOW_HOSTS entry {raw!r}: {e}") from e
    return entries


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address tunnels to (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is globally routable (not loopback, private, link-local, CGNAT, ...)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    # is_global alone misses multicast and some reserved ranges on older Pythons.
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_private
    )


def _allowed(host: str, ip: IPAddress, port: int, entries: list[_Entry]) -> bool:
    for e in entries:
        if e.port is not None and e.port != port:
            continue
        if e.name is not None and e.name == host:
            return True
        if e.network is not None and e.network.version == ip.version and ip in e.network:
            return True
    return False


def resolve_checked(host: str, port: int, allow: Sequence[str] = ()) -> list[str]:
    """Resolve ``host`` and return its addresses, or raise :class:`ToolError` if any is off-limits.

    Callers should connect to one of the returned addresses rather than resolve the name
    again, so a DNS answer that changes between check and connect cannot slip past the guard.
    """
    name = host.strip("[]").lower().rstrip(".")
    if not name:
        raise ToolError("the URL has no host name")
    entries = _parse_allow(allow)
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ToolError(f"could not resolve host {host!r}: {e}") from e
    addrs: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in addrs:
            addrs.append(addr)
    if not addrs:
        raise ToolError(f"host {host!r} resolved to no address")
    for addr in addrs:
        ip = ipaddress.ip_address(addr)
        if not is_public(ip) and not _allowed(name, ip, port, entries):
            what = addr if addr == name else f"{host} (resolves to {addr})"
            raise ToolError(
                f"refused: {what} is a private, loopback, link-local or otherwise non-public "
                "address. Tools may only fetch public internet addresses (the operator can "
                "allow specific hosts with SWARM_WEB_ALLOW_HOSTS)."
            )
    return addrs


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; :class:`ToolError` for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ToolError(f"refused: {url!r} is not a valid URL ({e})") from e
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ToolError(f"refused: only http:// and https:// URLs can be fetched, not {url!r}")
    if "@" in parts.netloc:
        raise ToolError("refused: URLs with credentials (user:password@host) are not allowed")
    if any(ch in parts.netloc for ch in "\\ \t\r\n"):
        # Parsers disagree about such authorities; refusing avoids checking one host and
        # connecting to another.
        raise ToolError(f"refused: {url!r} has an invalid host part")
    host = parts.hostname
    if not host:
        raise ToolError(f"refused: {url!r} has no host name")
    return scheme, host, port if port is not None else _SCHEMES[scheme]


def check_url(url: str, allow: Sequence[str] = ()) -> None:
    """Raise :class:`ToolError` unless ``url`` is an http(s) URL of a public (or allowed) host."""
    _, host, port = split_url(url)
    resolve_checked(host, port, allow)
