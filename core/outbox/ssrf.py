"""Where webhooks may go: public addresses only, unless the deployment allows more.

An admin registers a URL; coachpay's workers then send requests to it from
inside the deployment's network. Without a guard that is a way to reach the
database, a cloud metadata service (169.254.169.254) or an internal admin
page. So the host is resolved and every address it resolves to must be
globally routable: loopback, private, link-local, shared (CGNAT),
multicast, reserved and unspecified ranges are refused, for IPv4 and IPv6
alike, and an IPv6 address that embeds an IPv4 one (IPv4-mapped ``::ffff:…``,
6to4, Teredo, NAT64) is judged by the IPv4 address inside.

The check runs at registration and again before every attempt, and the
attempt connects to the very address that was checked (see
``core.outbox.sender``): a DNS name that resolves to a public address when
registered and to 10.0.0.5 later (DNS rebinding) is refused at send time.

``COACHPAY_WEBHOOK_ALLOWED_NETWORKS`` (comma-separated CIDRs, e.g.
``127.0.0.1/32,10.20.0.0/16``) lets a deployment allow ranges it trusts: the
demo and the tests allow 127.0.0.1. Plain ``http`` is accepted only for
addresses in that list; everything else needs ``https``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from core.errors import ConfigurationError, InvalidInput

ALLOWED_NETWORKS_ENV = "COACHPAY_WEBHOOK_ALLOWED_NETWORKS"
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (text form).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(InvalidInput):
    """The URL is malformed, does not resolve, or points where webhooks may not go."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: send to ``addresses[0]``, never to a fresh resolution."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[str, ...]


def allowed_networks(value: str) -> tuple[IPNetwork, ...]:
    """The allow list in ``value`` (``settings.webhook_allowed_networks``), empty by default."""
    raw = value
    nets = []
    for part in raw.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"{ALLOWED_NETWORKS_ENV}: {part.strip()!r} is not an IP network"
                ) from None
    return tuple(nets)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(address: str, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why webhooks may not go to ``address``, or None if they may."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            ip = inner
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"{ip}: {name} address"
    return None


def parse(url: object) -> httpx.URL:
    """Shape checks only (no resolution): http(s), a host, no credentials, no fragment."""
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_LENGTH:
        raise UrlRefused(f"url: a string of 1 to {MAX_URL_LENGTH} characters", field="url")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UrlRefused("url: no spaces or control characters", field="url")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        raise UrlRefused("url: not a valid URL", field="url") from None
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused("url: the scheme must be https (or http)", field="url")
    if not parsed.host:
        raise UrlRefused("url: needs a host", field="url")
    if parsed.userinfo:
        raise UrlRefused("url: credentials in the URL are not allowed", field="url")
    if parsed.fragment:
        raise UrlRefused("url: no fragment", field="url")
    if port == 0:
        raise UrlRefused("url: port 0", field="url")
    return parsed


async def resolve(host: str, port: int) -> Sequence[str]:
    """The system resolver, bounded in time."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
        RESOLVE_TIMEOUT_SECONDS,
    )
    return [str(info[4][0]) for info in infos]


def literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def check(
    url: object, *, allowed: Sequence[IPNetwork], resolver: Resolver | None = None
) -> Target:
    """Parse, resolve and judge ``url``; UrlRefused (422) naming the reason otherwise.

    Every address the name resolves to must pass: a name with one public and
    one private address is refused (which one a client picks is not ours to know).
    """
    parsed = parse(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = literal_ip(host)
    if literal is not None:
        addresses: Sequence[str] = [literal]
    else:
        try:
            addresses = await (resolver or resolve)(host, port)
        except (OSError, TimeoutError, UnicodeError):
            raise UrlRefused(f"url: {host} does not resolve", field="url") from None
        if not addresses:
            raise UrlRefused(f"url: {host} does not resolve", field="url")
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise UrlRefused(f"url: {host} is not allowed ({why})", field="url")
    if parsed.scheme == "http" and not all(_in(a, allowed) for a in addresses):
        raise UrlRefused("url: must be https (http only for allowed networks)", field="url")
    unique = tuple(dict.fromkeys(addresses))
    return Target(url=parsed, host=host, port=port, addresses=unique)


def _in(address: str, allowed: Iterable[IPNetwork]) -> bool:
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    return any(ip.version == net.version and ip in net for net in allowed)
