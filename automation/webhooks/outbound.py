"""Outbound HTTP: the only way Herald calls a URL it was given (POST, connection pool, TLS).

Every call goes through the SSRF guard (automation.webhooks.guard) at connection
time and connects to the exact address the guard checked (so DNS rebinding cannot
swap in 127.0.0.1 between check and connect), keeping the hostname for TLS SNI,
certificate checks and the Host header.

Other rules: no redirects followed, proxy environment variables ignored (urllib3
connections never read them), one wall-clock deadline per call (a watchdog shuts
the socket when it passes, so a server dripping one byte a second cannot hold a
worker) and a response size cap.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_ import create_urllib3_context
from urllib3.util.ssl_match_hostname import CertificateError

from automation.webhooks.guard import (
    OutboundFailed,
    OutboundRefused,
    Resolver,
    Target,
    check_url,
)

__all__ = ["OutboundFailed", "OutboundRefused", "OutboundResponse", "Resolver", "post"]


@dataclass
class OutboundResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes  # at most max_response_bytes
    truncated: bool
    duration_ms: int
    ip: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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
