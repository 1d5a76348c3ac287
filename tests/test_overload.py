"""Overload answers 503 with Retry-After, not 500: PostgreSQL refusing a connection; and a
POST with the broker down answers at once (no publish retries), its rows stored."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.signing import new_secret
from events_app.api_clients import api_client_create, api_key_cache
from events_app.models import Event
from project.api.overload import ServiceUnavailable, overload_exception
from project.background import BREAKER
from project.celery import app
from tests.celery_worker import _reset_pool
from tests.conftest import API
from tests.factories import EventTypeFactory


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def api(transactional_db: None) -> APIClient:
    api_key_cache._entries.clear()  # the request must reach the database
    _, secret = api_client_create(name="shop")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def database_as(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Connections made from now on use changed settings; the test's own is closed."""
    connection.close()
    yield
    connection.close()
    monkeypatch.undo()  # before the database is flushed for the next test


def _assert_503(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "error": "Service Unavailable",
        "message": "The service is overloaded: the database cannot take this request now. "
        "Retry after 5 s.",
        "statusCode": 503,
    }


def test_postgresql_refusing_a_connection_for_too_many_clients_is_503(
    api, database_as, monkeypatch
):
    # A role at its connection limit: PostgreSQL refuses with SQLSTATE 53300, as at
    # max_connections ("too many clients already").
    role = f"herald_limited_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    connection.close()
    try:
        monkeypatch.setitem(connection.settings_dict, "USER", role)
        response = api.get(f"{API}/events")
    finally:
        monkeypatch.undo()
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP ROLE {role}")

    _assert_503(response)


def test_database_unreachable_is_503(api, database_as, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "PORT", str(_closed_port()))

    response = api.post(f"{API}/events", {"event": {}}, format="json")

    _assert_503(response)


def test_a_deadlock_is_not_taken_for_overload():
    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")

    assert overload_exception(error) is None


@pytest.fixture
def broker_down(settings) -> Iterator[None]:
    """Celery publishes to a closed loopback port, with the settings' transport options."""
    saved = {key: app.conf.get(key) for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=f"redis://127.0.0.1:{_closed_port()}/0", task_always_eager=False)
    _reset_pool(app)
    BREAKER.reset()
    try:
        yield
    finally:
        _reset_pool(app)
        app.conf.update(saved)
        BREAKER.reset()  # the next test's broker is up


def test_a_post_with_the_broker_down_is_stored_without_waiting_for_the_broker(
    api, broker_down, monkeypatch
):
    event_type = EventTypeFactory(key="purchase")
    endpoint = Endpoint.objects.create(url="http://127.0.0.1:9/hook", secret=new_secret())
    endpoint.event_types.set([event_type])
    slept: list[float] = []
    # kombu sleeps between connection retries: with none configured it never sleeps.
    monkeypatch.setattr("kombu.utils.functional.sleep", slept.append)

    response = api.post(
        f"{API}/events",
        {"event": {"event_type_id": event_type.id, "customer_external_id": "c1"}},
        format="json",
    )

    assert response.status_code == 201, response.json()
    event = Event.objects.get(pk=response.json()["data"]["event_id"])
    # Its due work is flagged on the row; the periodic claim makes the delivery.
    assert (event.automation_pending, event.is_delivered) == (True, False)
    assert not Delivery.objects.filter(event=event).exists()
    assert slept == []


def test_a_pool_with_no_free_connection_is_taken_for_overload():
    # psycopg_pool's PoolTimeout (a psycopg OperationalError), as Django wraps it.
    pool_timeout = type("PoolTimeout", (psycopg.OperationalError,), {})
    error = OperationalError("couldn't get a connection after 5.00 sec")
    error.__cause__ = pool_timeout("couldn't get a connection after 5.00 sec")

    assert isinstance(overload_exception(error), ServiceUnavailable)


def test_the_pool_setting_configures_djangos_psycopg_pool():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": "postgres://herald@db.internal:5432/herald",
        "HERALD_DB_POOL_MAX_SIZE": "8",
        "HERALD_DB_POOL_TIMEOUT": "2.5",
    }
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; d = settings.DATABASES['default']; "
            "print(d['CONN_MAX_AGE'], sorted(d['OPTIONS']['pool'].items()))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.strip() == "0 [('max_size', 8), ('min_size', 1), ('timeout', 2.5)]"
