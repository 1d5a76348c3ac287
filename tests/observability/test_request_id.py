"""The request id: assigned per request, answered in X-Request-ID, carried into logs and
into the work the embedded runner does for the request."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator

import pytest
from django.test import Client

from project.background import EmbeddedRunner
from project.logs import RequestIdFilter, json_formatter
from project.requestid import REQUEST_ID, request_id_current
from tests.conftest import API

pytestmark = pytest.mark.django_db

FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, as settings.LOGGING's JSON handler would write it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def test_each_request_gets_a_fresh_id_in_the_response_header(client: Client):
    first = client.get("/healthz")
    second = client.get(f"{API}/events")

    assert FRESH.fullmatch(first["X-Request-ID"])
    assert FRESH.fullmatch(second["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    "incoming", ["req-42", "3f2a9c1e-7b1d-4e8a-9f00-0123456789ab", "lb:1.2@edge/7+x=y", "a" * 128]
)
def test_a_sane_incoming_id_is_kept(client: Client, incoming: str):
    assert client.get("/healthz", HTTP_X_REQUEST_ID=incoming)["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "a" * 129,
        "has space",
        'quote"d',
        "new\nline",
        "-leading-dash",
        "<script>alert(1)</script>",
        "ïd",
        "tab\there",
    ],
)
def test_a_hostile_incoming_id_is_replaced_by_a_fresh_one(client: Client, hostile: str):
    answered = client.get("/healthz", HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]

    assert FRESH.fullmatch(answered)


def test_the_request_logs_carry_its_id(client: Client, json_lines: io.StringIO):
    response = client.get(f"{API}/no-such-endpoint", HTTP_X_REQUEST_ID="trace-me-1")

    assert response.status_code == 404
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    (not_found,) = [line for line in lines if line["logger"] == "django.request"]
    assert not_found["request_id"] == "trace-me-1"
    assert not_found["level"] == "WARNING"
    assert not_found["message"] == f"Not Found: {API}/no-such-endpoint"
    assert request_id_current() == ""  # reset once the request is answered


def test_log_lines_outside_a_request_have_no_id(json_lines: io.StringIO):
    logging.getLogger("herald.test").warning("between requests")

    (line,) = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert line["request_id"] is None


def test_the_embedded_runner_runs_a_task_under_the_submitting_request_id(
    json_lines: io.StringIO,
):
    seen: list[str] = []
    done = threading.Event()

    def task(label: str) -> None:
        seen.append(request_id_current())
        logging.getLogger("herald.task").warning("working on %s", label)
        done.set()

    runner = EmbeddedRunner(tick_seconds=60, threads=1)
    token = REQUEST_ID.set("req-from-api")
    try:
        runner.submit(task, ("order-7",))
    finally:
        REQUEST_ID.reset(token)
    assert done.wait(10)
    runner.pool.shutdown(wait=True)

    assert seen == ["req-from-api"]
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    (work,) = [line for line in lines if line["logger"] == "herald.task"]
    assert (work["message"], work["request_id"]) == ("working on order-7", "req-from-api")
