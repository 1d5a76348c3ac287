"""Exactly the budget is admitted when 50 requests of one client arrive at once at a live
server (a thread per request, each on its own database connection), in either store."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from events_app.api.auth import limiter
from events_app.api_clients import api_client_create
from events_app.models import Event
from project.api import ratelimit
from tests.celery_worker import broker_url, checkout_namespace
from tests.conftest import API
from tests.factories import EventTypeFactory

REQUESTS = 50
BUDGET = 20


class _BurstServer(ThreadedWSGIServer):
    # Django's live server queues 10 connections; a burst of 50 would be reset.
    request_queue_size = REQUESTS


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url(transactional_db: None) -> Iterator[str]:
    """Herald served on a loopback port by a thread per request (as the live server)."""
    server = _BurstServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.xdist_group("races")  # 50 connections each: one such race at a time
@pytest.mark.parametrize("store", ["db", "redis"])
def test_exactly_the_budget_is_admitted_under_50_concurrent_requests(
    store, server_url, settings, monkeypatch
):
    settings.HERALD_RATE_LIMIT_REDIS_URL = broker_url() if store == "redis" else ""
    settings.HERALD_RATE_LIMIT_INGEST = BUDGET
    settings.HERALD_RATE_LIMIT_WINDOW_SECONDS = 60
    monkeypatch.setattr(
        ratelimit, "REDIS_KEY_PREFIX", f"{checkout_namespace()}ratelimit:{uuid.uuid4().hex}:"
    )
    # One window for the whole burst, wherever the wall clock is.
    monkeypatch.setattr(limiter, "clock", lambda: 1_000_000_000.0)
    event_type = EventTypeFactory(key="purchase")
    _, secret = api_client_create(name="burst")
    body = json.dumps(
        {"event": {"event_type_id": event_type.id, "customer_external_id": "c1"}}
    ).encode()
    start = threading.Barrier(REQUESTS)

    def post(_: int) -> int:
        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{server_url}{API}/events",
            data=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            method="POST",
        )
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        statuses = list(pool.map(post, range(REQUESTS)))

    assert sorted(statuses) == [201] * BUDGET + [429] * (REQUESTS - BUDGET)
    assert Event.objects.count() == BUDGET
