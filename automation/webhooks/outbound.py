"""Outbound HTTP with an SSRF guard: the only way Herald calls a URL it was given.

Webhook and callback URLs are untrusted input. `check_url` refuses, at save time,
URLs whose host is (or resolves to) an address that is not plainly public;
`post` checks again at connection time and connects to the exact address it
checked (so DNS rebinding cannot swap in 127.0.0.1 between check and connect),
keeping the hostname for TLS SNI, certificate checks and the Host header.

Other rules: http/https only, no credentials in URLs, no redirects followed,
proxy environment variables ignored (urllib3 connections never read them), one
wall-clock deadline per call (a watchdog shuts the socket when it passes, so a
server dripping one byte a second cannot hold a worker) and a response size cap.

`HERALD_OUTBOUND_ALLOWED_NETWORKS` (settings) lists CIDRs the guard lets
through anyway, for development and tests (e.g. 127.0.0.0/8).

TLS: certificates must chain to a CA of the system's trust store or of the PEM
bundle `HERALD_OUTBOUND_CA_BUNDLE` names, and must be valid for the URL's host
(checked by urllib3 against `assert_hostname`, never against the pinned IP).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import ipaddress
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_ import create_urllib3_context
from urllib3.util.ssl_match_hostname import CertificateError

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


@dataclass
class OutboundResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes  # at most max_response_bytes
    truncated: bool
    duration_ms: int
    ip: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- the address check


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return list(_parsed_networks(tuple(getattr(settings, "HERALD_OUTBOUND_ALLOWED_NETWORKS", []))))


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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"Malformed URL: {exc}") from None
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
        reason = address_refusal(ipaddress.ip_address(address.split("%")[0]), allowed)
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


# ---------------------------------------------------------------- the deadline watchdog


class _Watchdog:
    """One daemon thread that shuts sockets whose call passed its wall-clock deadline.

    Socket timeouts bound each recv, not the whole call: a server sending a byte
    every second never trips them. Shutting the socket down makes the blocked recv
    return at once, whatever http.client was in the middle of.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, HTTPConnection]] = []
        self._cancelled: set[int] = set()
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, conn: HTTPConnection, deadline: float) -> int:
        token = next(self._counter)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="outbound-watchdog", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (deadline, token, conn))
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._cancelled.add(token)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, token, conn = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0 and token not in self._cancelled:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                if token in self._cancelled:
                    self._cancelled.discard(token)
                    continue
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()


# ---------------------------------------------------------------- the call


# ---------------------------------------------------------------- kept-alive connections

# Per thread, a few open connections keyed by the exact address that was checked (and
# the TLS name): reuse skips a TCP/TLS handshake per delivery, and a connection can only
# ever be reused for a target that passed the guard again and resolved to its address.
_KEEP_PER_THREAD = 8
_local = threading.local()
_Key = tuple[str, str, int, str]


def _pool() -> dict[_Key, HTTPConnection]:
    pool: dict[_Key, HTTPConnection] | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def _take(key: _Key) -> HTTPConnection | None:
    conn = _pool().pop(key, None)
    if conn is not None and not conn.is_connected:  # closed by the server meanwhile
        conn.close()
        return None
    return conn


def _keep(key: _Key, conn: HTTPConnection) -> None:
    pool = _pool()
    if len(pool) >= _KEEP_PER_THREAD:
        pool.pop(next(iter(pool))).close()
    pool[key] = conn


@functools.cache
def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    """The TLS context of every https call (one per process and bundle; read-only once built).

    urllib3's defaults (TLS 1.2+, certificate required), the system's trusted CAs and
    those of `ca_bundle`. OpenSSL's own hostname check is off because the connection
    goes to the pinned IP: urllib3 checks the certificate against `assert_hostname`
    (the URL's host) after the handshake instead, and it would switch it off on this
    shared context at every call otherwise.
    """
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = False
    context.load_default_certs()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _new_connection(target: Target, timeout: float) -> HTTPConnection:
    if target.scheme == "https":
        bundle = str(settings.HERALD_OUTBOUND_CA_BUNDLE)
        try:
            context = _tls_context(bundle)
        except (OSError, ssl.SSLError) as exc:
            message = f"HERALD_OUTBOUND_CA_BUNDLE {bundle!r} cannot be loaded: {exc}"
            raise OutboundFailed(message) from None
        return HTTPSConnection(
            target.ip,
            target.port,
            timeout=timeout,
            # SNI and the certificate check are for the URL's host, not the IP connected to.
            server_hostname=None if _is_ip_literal(target.hostname) else target.hostname,
            assert_hostname=target.hostname,
            ssl_context=context,
        )
    return HTTPConnection(target.ip, target.port, timeout=timeout)


# Errors on a kept-alive connection before any response: the server closed it while idle.
_STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def post(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float | None = None,
    max_response_bytes: int | None = None,
    resolver: Resolver | None = None,
) -> OutboundResponse:
    """POST `body` to `url` through the guard; any HTTP status is a response.

    Raises OutboundRefused (guard) or OutboundFailed (no HTTP response within the
    deadline). Redirects are returned as responses, never followed.
    """
    timeout = float(timeout if timeout is not None else settings.HERALD_OUTBOUND_TIMEOUT)
    cap = int(
        max_response_bytes
        if max_response_bytes is not None
        else settings.HERALD_OUTBOUND_MAX_RESPONSE_BYTES
    )
    started = time.monotonic()
    deadline = started + timeout
    target = check_url(url, resolver=resolver)
    key: _Key = (target.scheme, target.ip, target.port, target.hostname)
    all_headers = {"Host": target.host_header, **headers}
    reused = _take(key)
    try:
        response, data, conn = _exchange(reused or _new_connection(target, timeout), target,
                                         body, all_headers, deadline, cap)  # fmt: skip
    except _STALE:
        if reused is None:
            raise OutboundFailed("The server closed the connection without answering.") from None
        # A kept-alive connection the server had dropped: once more on a fresh one.
        response, data, conn = _exchange(
            _new_connection(target, timeout), target, body, all_headers, deadline, cap
        )
    # Reusable once the whole body was read (http.client then closes the response, and
    # drops the socket itself if the server asked to close); _take checks liveness.
    if len(data) <= cap and response.closed and conn.sock is not None:
        _keep(key, conn)
    else:
        conn.close()
    return OutboundResponse(
        status_code=response.status,
        headers={k.lower(): v for k, v in response.headers.items()},
        body=data[:cap],
        truncated=len(data) > cap,
        duration_ms=int((time.monotonic() - started) * 1000),
        ip=target.ip,
    )


def _exchange(
    conn: HTTPConnection,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    cap: int,
) -> tuple[Any, bytes, HTTPConnection]:
    """One request/response on `conn` under the watchdog; closes `conn` on any failure."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        conn.close()
        raise OutboundFailed("No time left before the deadline.")
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    else:
        conn.timeout = timeout
    token = _watchdog.arm(conn, deadline)
    ok = False
    try:
        conn.request("POST", target.path, body=body, headers=headers, preload_content=False)
        response = conn.getresponse()
        data = response.read(cap + 1, decode_content=False) if cap >= 0 else b""
        if time.monotonic() > deadline:
            raise OutboundFailed("No complete response within the deadline.")
        ok = True
        return response, data, conn
    except OutboundFailed:
        raise
    except (ssl.SSLCertVerificationError, CertificateError) as exc:
        # Untrusted issuer, self-signed, expired, or not valid for the URL's host.
        reason = getattr(exc, "verify_message", None) or str(exc)
        raise OutboundFailed(f"TLS certificate rejected: {reason}") from None
    except (OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
        if time.monotonic() >= deadline:  # the watchdog shut the socket
            raise OutboundFailed("No complete response within the deadline.") from None
        if isinstance(exc, _STALE):
            raise
        raise OutboundFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        _watchdog.disarm(token)
        if not ok:
            conn.close()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
