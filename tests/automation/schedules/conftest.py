"""Fixtures of the scheduled-callback tests: schedules made by the real service, a receiver."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from automation.models import Schedule
from automation.schedules import schedule_create

# A public address literal: passes the outbound URL guard without DNS; nothing is sent to it
# unless a test runs the delivery sender (those tests use the local receiver instead).
PUBLIC_URL = "https://93.184.215.14/hook"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def make_schedule(db: None) -> Callable[..., Schedule]:
    """Create a schedule through schedule_create (defaults: every minute, UTC, 30 days)."""

    def make(**overrides: Any) -> Schedule:
        fields: dict[str, Any] = {
            "owner": "owner@example.com",
            "end_date": NOW + timedelta(days=30),
            "interval": "* * * * *",
            "callback_url": PUBLIC_URL,
            "context": {"user": 12345},
            "tags": ["prod"],
            "now": NOW,
        }
        fields.update(overrides)
        return schedule_create(**fields)

    return make


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers `status`."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[Received] = []
        self.status = 200
        self.lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


def _ports() -> range:
    # This helper's assigned range, 8401-8499; xdist workers start at different offsets.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(worker[2:]) * 30 if worker[2:].isdigit() else 0
    return range(8401 + offset, 8500)


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """A local receiver; the outbound guard is opened for loopback in this test only."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
            target = holder["receiver"]
            with target.lock:
                target.requests.append(received)
            self.send_response(target.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = None
    for port in _ports():
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            break
        except OSError:
            continue
    assert server is not None, "no free port in 8401-8499"
    holder["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
