"""POST /events/batch limits: 1-1000 events, 256 KB counted on the wire, UTF-8 JSON only."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.client import ClientHandler

from events_app.api_clients import api_client_create
from events_app.models import Event
from events_app.schemas import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from tests.conftest import API
from tests.factories import EventTypeFactory

BATCH = f"{API}/events/batch"
ROOT = Path(__file__).resolve().parents[2]
# The ports this project's tests may bind (one per concurrent test process).
TEST_PORTS = range(8201, 8210)


@pytest.fixture
def click(db):
    return EventTypeFactory(key="click")


def events(count: int) -> list[dict[str, Any]]:
    return [
        {"event": {"event_type": "click", "customer_external_id": "c", "external_id": f"{n}"}}
        for n in range(count)
    ]


def body_of_size(size: int, count: int = 3) -> bytes:
    """A valid batch padded with JSON whitespace to exactly `size` bytes."""
    compact = json.dumps({"events": events(count)}, separators=(",", ":")).encode()
    assert len(compact) <= size
    return compact + b" " * (size - len(compact))


def post_raw(api, body: bytes, content_type: str = "application/json"):
    return api.post(BATCH, body, content_type=content_type)


def test_1000_events_are_accepted(api, click):
    body = json.dumps({"events": events(MAX_BATCH_EVENTS)}, separators=(",", ":")).encode()
    assert len(body) <= MAX_BATCH_BYTES

    response = post_raw(api, body)

    assert response.status_code == 200
    assert len(response.json()["data"]["valid_events"]) == 1000
    assert Event.objects.count() == 1000


def test_1001_events_are_refused_with_400_and_store_nothing(api, click):
    body = json.dumps({"events": events(MAX_BATCH_EVENTS + 1)}, separators=(",", ":")).encode()
    assert len(body) <= MAX_BATCH_BYTES

    response = post_raw(api, body)

    assert response.status_code == 400
    assert response.json()["message"] == (
        "Invalid input: events: Expected `array` of length <= 1000"
    )
    assert Event.objects.count() == 0


def test_body_of_exactly_256_kib_is_accepted(api, click):
    response = post_raw(api, body_of_size(262_144))

    assert response.status_code == 200
    assert Event.objects.count() == 3


def test_body_one_byte_over_256_kib_is_413_and_stores_nothing(api, click):
    response = post_raw(api, body_of_size(262_145))

    assert response.status_code == 413
    assert response.json() == {
        "error": "Request Entity Too Large",
        "message": "The request body is larger than 262144 bytes.",
        "statusCode": 413,
    }
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"events": [', "application/json", 400, "Malformed JSON body: Input data was truncated"),
        (b'{"events": ["\xff"]}', "application/json", 400, "The body is not valid UTF-8 JSON."),
        (b'{"events": []}', "text/plain", 415, "Content-Type must be application/json."),
        (
            b'{"events": []}',
            "application/json; charset=latin-1",
            415,
            "Only UTF-8 JSON is accepted.",
        ),
    ],
)
def test_body_that_is_not_utf8_json_is_refused(api, click, body, content_type, status, message):
    response = post_raw(api, body, content_type)

    assert response.status_code == status
    assert response.json()["message"] == message
    assert Event.objects.count() == 0


class CountingStream(io.RawIOBase):
    """A WSGI input that yields `total` bytes in small pieces and counts what was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) if size is None or size < 0 else min(size, 1000)
        piece = self.data[self.position : self.position + size]
        self.position += len(piece)
        return piece


def wsgi_post_without_length(body: bytes) -> tuple[Any, CountingStream]:
    """Call Django's WSGI handler as a server would for a chunked body: no CONTENT_LENGTH."""
    client, secret = api_client_create(name="wsgi")
    token = base64.b64encode(f"{client.name}:{secret}".encode()).decode()
    stream = CountingStream(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": BATCH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Basic {token}",
        "wsgi.input": stream,
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    return ClientHandler(enforce_csrf_checks=False)(environ), stream


def test_streamed_body_without_content_length_is_read_and_stored(click):
    response, _ = wsgi_post_without_length(body_of_size(262_144))

    assert response.status_code == 200, response.content
    assert Event.objects.count() == 3


def test_streamed_body_over_the_limit_is_413_after_reading_one_byte_too_many(click):
    response, stream = wsgi_post_without_length(body_of_size(5 * MAX_BATCH_BYTES))

    assert response.status_code == 413
    assert stream.position == MAX_BATCH_BYTES + 1
    assert Event.objects.count() == 0


def free_test_port() -> int:
    for port in TEST_PORTS:
        with socket.socket() as probe:
            # As gunicorn does: connections in TIME_WAIT do not block the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"No free port in {TEST_PORTS}")


@pytest.fixture
def gunicorn_server(transactional_db) -> Iterator[tuple[int, str]]:
    """Herald under a real gunicorn, on this test's database; yields (port, Basic header)."""
    EventTypeFactory(key="click")
    client, secret = api_client_create(name="gunicorn")
    port = free_test_port()
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}"
            f":{settings['PORT'] or 5432}/{settings['NAME']}"
        ),
    }
    server = subprocess.Popen(  # noqa: S603 (fixed argv)
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "project.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.1)  # waiting for a subprocess, not for test time
        token = base64.b64encode(f"{client.name}:{secret}".encode()).decode()
        yield port, f"Basic {token}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def post_chunked(port: int, auth: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pieces = (body[i : i + 10_000] for i in range(0, len(body), 10_000))
    conn.request(
        "POST",
        BATCH,
        body=pieces,
        headers={"Content-Type": "application/json", "Authorization": auth},
        encode_chunked=True,
    )
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


@pytest.mark.e2e
def test_chunked_upload_under_gunicorn_counts_the_bytes_on_the_wire(gunicorn_server):
    port, auth = gunicorn_server

    accepted = post_chunked(port, auth, body_of_size(262_144))
    refused = post_chunked(port, auth, body_of_size(262_145, count=5))

    assert accepted[0] == 200
    assert len(accepted[1]["data"]["valid_events"]) == 3
    assert refused == (
        413,
        {
            "error": "Request Entity Too Large",
            "message": "The request body is larger than 262144 bytes.",
            "statusCode": 413,
        },
    )
    assert Event.objects.count() == 3
