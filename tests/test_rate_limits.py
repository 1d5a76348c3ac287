"""Rate limits per API client (ingestion and the rest apart) and per address for failed
authentication, in the database store and in Redis; the draft's headers on every answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from events_app.api.auth import limiter
from events_app.api_clients import api_client_create, api_key_cache
from events_app.models import ApiClient, Event, RateLimitCounter
from project.api import ratelimit
from project.background import run_job
from tests.celery_worker import broker_url, checkout_namespace
from tests.conftest import API, basic_auth
from tests.factories import EventTypeFactory

pytestmark = pytest.mark.django_db

# 1_000_000_000 is 40 s into a 60-second window (windows start at multiples of 60).
NOW = 1_000_000_000.0


@pytest.fixture(params=["db", "redis"])
def store(request: pytest.FixtureRequest, settings, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs against both stores; Redis keys are unique to the test and carry the
    checkout's namespace, so the session's sweep removes any left before they expire."""
    settings.HERALD_RATE_LIMIT_REDIS_URL = broker_url() if request.param == "redis" else ""
    monkeypatch.setattr(
        ratelimit, "REDIS_KEY_PREFIX", f"{checkout_namespace()}ratelimit:{uuid.uuid4().hex}:"
    )
    monkeypatch.setattr(limiter, "clock", lambda: NOW)
    settings.HERALD_RATE_LIMIT_WINDOW_SECONDS = 60
    settings.HERALD_RATE_LIMIT_API = 5
    settings.HERALD_RATE_LIMIT_INGEST = 3
    settings.HERALD_RATE_LIMIT_AUTH_FAILURES = 4
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    api_key_cache._entries.clear()
    yield
    api_key_cache._entries.clear()


def _api(name: str = "shop", **limits: int | None) -> tuple[APIClient, ApiClient]:
    client, secret = api_client_create(name=name)
    if limits:
        ApiClient.objects.filter(pk=client.pk).update(**limits)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=basic_auth(client.name, secret))
    return api, client


def _event(event_type_id: str) -> dict[str, object]:
    return {"event": {"event_type_id": event_type_id, "customer_external_id": "c1"}}


def test_every_answer_carries_the_policy_and_what_remains(store):
    api, _ = _api()

    first = api.get(f"{API}/events")
    second = api.get(f"{API}/events/nope")

    assert (first.status_code, second.status_code) == (200, 404)
    assert first["RateLimit-Policy"] == '"api";q=5;w=60'
    assert first["RateLimit"] == '"api";r=4;t=20'
    assert second["RateLimit"] == '"api";r=3;t=20'


def test_budget_spent_is_429_in_the_error_shape_with_retry_after(store):
    api, _ = _api()
    statuses = [api.get(f"{API}/events").status_code for _ in range(6)]

    refused = api.get(f"{API}/events")

    assert statuses == [200] * 5 + [429]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "20"
    assert refused["RateLimit"] == '"api";r=0;t=20'
    assert refused.json() == {
        "error": "Too Many Requests",
        "message": "Rate limit exceeded: 5 api requests per 60 s for this API client. "
        "Retry after 20 s.",
        "statusCode": 429,
    }


def test_next_window_admits_again(store, monkeypatch):
    api, _ = _api()
    for _ in range(5):
        api.get(f"{API}/events")
    assert api.get(f"{API}/events").status_code == 429

    monkeypatch.setattr(limiter, "clock", lambda: NOW + 20)
    again = api.get(f"{API}/events")

    assert again.status_code == 200
    assert again["RateLimit"] == '"api";r=4;t=60'


def test_ingestion_has_its_own_budget(store):
    event_type = EventTypeFactory(key="purchase")
    api, _ = _api()
    for _ in range(5):
        api.get(f"{API}/events")

    posted = [
        api.post(f"{API}/events", _event(event_type.id), format="json").status_code
        for _ in range(4)
    ]
    batch = api.post(f"{API}/events/batch", {"events": [_event(event_type.id)]}, format="json")

    assert posted == [201, 201, 201, 429]
    assert batch.status_code == 429
    assert batch["RateLimit-Policy"] == '"ingest";q=3;w=60'
    assert Event.objects.count() == 3
    # Reads were spent already; ingestion did not touch that budget.
    assert api.get(f"{API}/events").status_code == 429


def test_clients_are_counted_apart(store):
    first, _ = _api("first")
    second, _ = _api("second")
    for _ in range(5):
        first.get(f"{API}/events")

    assert first.get(f"{API}/events").status_code == 429
    assert second.get(f"{API}/events").status_code == 200


def test_a_clients_own_budget_overrides_the_default(store):
    generous, _ = _api("generous", api_rate_limit=7)
    unlimited, _ = _api("unlimited", api_rate_limit=0)

    generous_statuses = [generous.get(f"{API}/events").status_code for _ in range(8)]
    unlimited_answers = [unlimited.get(f"{API}/events") for _ in range(8)]

    assert generous_statuses == [200] * 7 + [429]
    assert [r.status_code for r in unlimited_answers] == [200] * 8
    assert "RateLimit" not in unlimited_answers[-1]


def test_limits_off_count_nothing_and_send_no_headers(settings, monkeypatch):
    settings.HERALD_RATE_LIMIT_REDIS_URL = ""
    settings.HERALD_RATE_LIMIT_API = 0
    api, _ = _api()

    answers = [api.get(f"{API}/events") for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 200]
    assert "RateLimit" not in answers[0]
    assert "RateLimit-Policy" not in answers[0]
    assert RateLimitCounter.objects.count() == 0


def test_failed_authentication_is_limited_per_source_address(store):
    _, client = _api()
    api, _ = _api("other")
    wrong = APIClient(REMOTE_ADDR="203.0.113.7")
    wrong.credentials(HTTP_AUTHORIZATION=basic_auth(client.name, "wrong"))

    statuses = [wrong.get(f"{API}/events").status_code for _ in range(5)]
    refused = wrong.get(f"{API}/events")

    assert statuses == [401] * 4 + [429]
    assert refused["RateLimit-Policy"] == '"auth-failures";q=4;w=60'
    assert refused["Retry-After"] == "20"
    assert refused.json()["message"].startswith("Too many failed authentications")
    # Another address is not affected, nor is a valid key from it.
    assert api.get(f"{API}/events").status_code == 200


def test_an_address_out_of_failures_cannot_look_up_a_valid_key(store):
    _, secret = api_client_create(name="shop")
    guesser = APIClient(REMOTE_ADDR="203.0.113.7")
    guesser.credentials(HTTP_AUTHORIZATION="Bearer hrld_guess")
    for _ in range(4):
        guesser.get(f"{API}/events")

    guesser.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    refused = guesser.get(f"{API}/events")

    assert refused.status_code == 429


def test_missing_and_malformed_credentials_count_as_failures(store):
    anonymous = APIClient(REMOTE_ADDR="203.0.113.8")
    statuses = [anonymous.get(f"{API}/events").status_code for _ in range(2)]
    anonymous.credentials(HTTP_AUTHORIZATION="Basic !!!")
    statuses += [anonymous.get(f"{API}/events").status_code for _ in range(3)]

    assert statuses == [401, 401, 401, 401, 429]


def test_x_forwarded_for_is_ignored_unless_proxies_are_declared(store, settings):
    def fail_from(forwarded: str) -> int:
        client = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
        client.credentials(HTTP_AUTHORIZATION="Bearer hrld_wrong")
        return client.get(f"{API}/events").status_code

    # Untrusted: every invented address still counts against the proxy's peer address.
    untrusted = [fail_from(f"198.51.100.{i}") for i in range(5)]
    settings.HERALD_TRUSTED_PROXY_COUNT = 1
    trusted = [fail_from(f"192.0.2.1, 198.51.100.{i}") for i in range(5)]

    assert untrusted == [401, 401, 401, 401, 429]
    assert trusted == [401] * 5


def test_redis_down_admits_uncounted_at_once(settings, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.HERALD_RATE_LIMIT_REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.HERALD_RATE_LIMIT_API = 1
    api, _ = _api()

    answers = [api.get(f"{API}/events") for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 200]
    assert "RateLimit" not in answers[0]
    assert RateLimitCounter.objects.count() == 0


def test_counters_of_ended_windows_are_pruned(settings, monkeypatch):
    settings.HERALD_RATE_LIMIT_REDIS_URL = ""
    settings.HERALD_RATE_LIMIT_WINDOW_SECONDS = 60
    RateLimitCounter.objects.create(key="api:client:1", window_start=999_999_900, count=3)
    RateLimitCounter.objects.create(key="api:client:2", window_start=999_999_960, count=1)

    pruned = run_job("ratelimit.prune", datetime.fromtimestamp(NOW, UTC))

    assert pruned == 1
    assert list(RateLimitCounter.objects.values_list("key", flat=True)) == ["api:client:2"]


def test_a_key_cache_longer_than_a_second_refuses_to_start():
    env = {**os.environ, "HERALD_API_KEY_CACHE_SECONDS": "5"}

    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert started.returncode == 1
    assert "HERALD_API_KEY_CACHE_SECONDS must be between 0 and 1" in started.stderr
