"""A local HTTP(S) receiver on 127.0.0.1 for outbound-delivery tests (reusable by any area).

    with local_receiver() as receiver:          # or the `receiver` fixture
        receiver.reply(Reply(status=503, headers={"Retry-After": "60"}))
        ... deliver to receiver.url("/hook") ...
        assert receiver.requests[0].headers["webhook-id"] == ...

    ca = trustme.CA()                            # HTTPS: a certificate from a test CA
    with local_receiver(tls=server_tls_context(ca.issue_cert("localhost"))) as receiver:
        ... deliver to receiver.url("/hook", host="localhost") ...
        assert receiver.server_names == ["localhost"]   # the SNI each handshake sent

Ports come from this helper's range 8301-8399 (HERALD_TEST_PORTS=lo-hi to change), tried
from an offset derived from PYTEST_XDIST_WORKER so parallel workers rarely collide; binding
is the real test of a free port.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()
    wall_received_at: float = 0.0  # time.time(), to compare with times other processes saw
    client_port: int = 0  # the same for requests on one kept-alive connection


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering
    drip_interval: float | None = None  # send the body one byte per interval, forever


def port_range() -> range:
    lo, _, hi = os.environ.get("HERALD_TEST_PORTS", "8301-8399").partition("-")
    return range(int(lo), int(hi) + 1)


def worker_offset() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) * 40 if worker.startswith("gw") and worker[2:].isdigit() else 0


def server_tls_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side TLS context presenting `cert` (and its chain)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer, with TLS when given a context: the handshake runs in the
    connection's own thread, so a client that rejects the certificate (or a slow one)
    never holds up accepting the next connection."""

    tls: ssl.SSLContext | None = None
    # socketserver's default backlog is 5: a burst of concurrent senders (tests hold 20
    # attempts in flight) overflowed it and the kernel's SYN retries outlasted waits.
    request_queue_size = 128

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        with self.tls.wrap_socket(request, server_side=True) as tls_socket:
            super().finish_request(tls_socket, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refused our certificate ends the handshake: expected in tests


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[ReceivedRequest] = []
        self.server_names: list[str | None] = []  # TLS: the SNI of each handshake
        self.responder: Callable[[ReceivedRequest], Reply] = lambda _r: Reply()
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        self.connections: set[socket.socket] = set()  # closed on shutdown, like a real stop

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def scheme(self) -> str:
        return "http" if getattr(self.server, "tls", None) is None else "https"

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1") -> str:
        """The URL to call; `host` may be another name for 127.0.0.1 (e.g. localhost)."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        """Answer with these replies in turn; the last one repeats."""
        queue = list(replies)

        def respond(_request: ReceivedRequest) -> Reply:
            with self.lock:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.responder = respond

    def drop_connections(self) -> None:
        """Close every open client connection (an idle keep-alive timeout, a restart)."""
        with self.lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Block until `count` requests arrived (real network, so real waiting)."""
        deadline = time.monotonic() + timeout
        with self.received:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
                self.received.wait(left)
            return list(self.requests)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle holds the body
            # for the client's delayed ACK (40 ms) on every kept-alive request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with receiver.lock:
                receiver.connections.add(self.connection)

        def finish(self) -> None:
            with receiver.lock:
                receiver.connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = ReceivedRequest(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
                received_at=time.monotonic(),
                wall_received_at=time.time(),
                client_port=int(self.client_address[1]),
            )
            with receiver.received:
                receiver.requests.append(request)
                receiver.received.notify_all()
            reply = receiver.responder(request)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.drip_interval is not None:
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    for _ in range(int(60 / reply.drip_interval)):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(reply.drip_interval)
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST

    return Handler


@contextmanager
def local_receiver(*, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A receiver on a free port of port_range(); HTTPS with `tls` (server_tls_context)."""
    ports = port_range()
    start = worker_offset() % len(ports)
    server: _Server | None = None
    receiver = Receiver.__new__(Receiver)
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        try:
            server = _Server(("127.0.0.1", port), _handler(receiver))
            break
        except OSError:
            continue
    if server is None:
        raise RuntimeError(f"No free port in {ports.start}-{ports.stop - 1}")
    server.daemon_threads = True
    Receiver.__init__(receiver, server)
    if tls is not None:
        server.tls = tls

        def record_server_name(_socket: Any, name: str | None, _context: Any) -> None:
            with receiver.lock:
                receiver.server_names.append(name)

        tls.sni_callback = record_server_name
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        # Kept-alive client connections end with the server, as when a real one stops.
        receiver.drop_connections()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with local_receiver() as r:
        yield r
