"""The SSRF guard: which URLs and addresses Herald may call (automation.webhooks.outbound calls).

Webhook and callback URLs are untrusted input. `check_url` refuses, at save time,
URLs whose host is (or resolves to) an address that is not plainly public, and
returns the checked address; automation.webhooks.outbound.post checks again at
connection time and connects to that exact address (so DNS rebinding cannot swap
in 127.0.0.1 between check and connect).

Other rules: http/https only, no credentials in URLs, no ambiguous IPv4 spellings,
no spaces or control characters (urlsplit silently drops CR, LF and tab, and an
HTTP client would send the rest into the request line), no port 0.
`HERALD_OUTBOUND_ALLOWED_NETWORKS` (settings) lists CIDRs the guard lets through
anyway, for development and tests (e.g. 127.0.0.0/8). `HERALD_OUTBOUND_ONLY_NETWORKS`
narrows the other way: when set, an address outside every listed network is refused
whatever the other rules say, so a staging or fuzzed instance cannot call off the
machine. The two combine: with both set to 127.0.0.0/8,::1/128 loopback passes and
everything else is refused; a listed network the guard refuses (10.0.0.0/8, say) stays
refused unless the allowed list lifts it too.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Do not rely on ipaddress.is_global alone: Python 3.11.7 classifies some of these wrongly
# (e.g. 192.0.0.0/24 sub-ranges, 100.64/10 handling, embedded IPv6 forms).
_BLOCKED_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT (also Alibaba metadata 100.100.100.200)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. cloud metadata 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (Oracle metadata 192.0.0.192)
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast 255.255.255.255
    )
]
_BLOCKED_V6 = [
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated) — embedded form also checked
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32, benchmarking
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local, incl. AWS metadata fd00:ec2::254
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
]
# C0 controls, space, DEL, C1 controls and any other Unicode white space.
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x20\x7f-\x9f\s]")

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")


class OutboundRefused(Exception):
    """The URL or the address it resolves to is not allowed (SSRF guard)."""


class OutboundFailed(Exception):
    """The call did not produce an HTTP response: DNS, connect, TLS, timeout, reset."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (ip) and what to call it (hostname)."""

    scheme: str
    hostname: str
    port: int
    path: str
    ip: str
    host_header: str


# ---------------------------------------------------------------- the address check


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return list(_parsed_networks(tuple(getattr(settings, "HERALD_OUTBOUND_ALLOWED_NETWORKS", []))))


def only_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _parsed_networks(tuple(getattr(settings, "HERALD_OUTBOUND_ONLY_NETWORKS", [])))


def outside_only_networks(ip: IPAddress) -> str | None:
    """Why this address is outside HERALD_OUTBOUND_ONLY_NETWORKS, or None (inside, or unset).

    The address itself must lie in a listed network: an IPv6 form that embeds a listed
    IPv4 address (::ffff:127.0.0.1) is not the same connection and is refused.
    """
    only = only_networks()
    if not only or any(ip.version == net.version and ip in net for net in only):
        return None
    return (
        f"{ip} is outside the networks outbound calls are restricted to "
        "(HERALD_OUTBOUND_ONLY_NETWORKS)"
    )


@functools.lru_cache(maxsize=8)
def _parsed_networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Keyed by the setting's value (tests change it): parsing it on every call was a
    # measurable share of a delivery's CPU.
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    packed = int(ip)
    found: list[ipaddress.IPv4Address] = []
    if ip in _MAPPED or ip in _COMPATIBLE or ip in _NAT64:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    if ip in _SIX_TO_FOUR:
        found.append(ipaddress.IPv4Address((packed >> 80) & 0xFFFFFFFF))
    if ip in _TEREDO:
        found.append(ipaddress.IPv4Address((packed >> 64) & 0xFFFFFFFF))  # server
        found.append(ipaddress.IPv4Address(~packed & 0xFFFFFFFF))  # obfuscated client
    return found


def address_refusal(ip: IPAddress, allowed: list[Any] | None = None) -> str | None:
    """Why this address may not be called, or None if it may."""
    allowed = allowed_networks() if allowed is None else allowed
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_v4(ip):
            reason = address_refusal(inner, allowed)
            if reason is not None:
                return f"{ip} embeds {inner}: {reason}"
        if ip in _MAPPED:
            return None  # the mapped IPv4 address was public
        if any(ip in net for net in _BLOCKED_V6):
            return f"{ip} is in a non-public IPv6 range"
    elif any(ip in net for net in _BLOCKED_V4):
        return f"{ip} is in a non-public IPv4 range"
    if not ip.is_global:
        return f"{ip} is not a global address"
    return None


def _parse_ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """Any spelling inet_aton accepts: 2130706433, 0177.0.0.1, 0x7f.1, 127.1 …"""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundFailed(f"DNS lookup of {host} failed: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, *, resolver: Resolver | None = None) -> Target:
    """Parse, resolve and check a URL; raise OutboundRefused with a reason if not allowed."""
    if _UNSAFE_CHARACTER.search(url):
        raise OutboundRefused("URLs may not contain spaces or control characters (CR, LF, …).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"Malformed URL: {exc}") from None
    if port == 0:
        raise OutboundRefused("Port 0 cannot be called; give a port from 1 to 65535.")
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise OutboundRefused("Only http and https URLs are allowed.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise OutboundRefused("Credentials in URLs are not allowed.")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise OutboundRefused("The URL has no host.")
    port = port or (443 if scheme == "https" else 80)
    try:
        hostname = raw_host.encode("idna").decode("ascii").rstrip(".").lower()
    except UnicodeError:
        raise OutboundRefused("The host name is not a valid domain name.") from None

    addresses: list[str]
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(hostname)
    except ValueError:
        literal = None
    if literal is None:
        spelled = _parse_ipv4_spelling(hostname)
        if spelled is not None:
            # Parsers disagree on 0177.1 or 2130706433; refusing them removes the ambiguity.
            raise OutboundRefused(f"Non-canonical IPv4 address spelling '{hostname}' ({spelled}).")
        if hostname.split(".")[-1].isdigit() or hostname.startswith("0x"):
            raise OutboundRefused(f"'{hostname}' is neither a domain name nor an IP address.")
        addresses = (resolver or system_resolver)(hostname, port)
        if not addresses:
            raise OutboundFailed(f"DNS lookup of {hostname} returned no address.")
    else:
        addresses = [str(literal)]

    allowed = allowed_networks()
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        reason = outside_only_networks(ip) or address_refusal(ip, allowed)
        if reason is not None:
            raise OutboundRefused(f"{hostname} resolves to a forbidden address: {reason}.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = port == (443 if scheme == "https" else 80)
    host_for_header = f"[{hostname}]" if ":" in hostname else hostname
    return Target(
        scheme=scheme,
        hostname=hostname,
        port=port,
        path=path,
        ip=addresses[0],
        host_header=host_for_header if default_port else f"{host_for_header}:{port}",
    )
