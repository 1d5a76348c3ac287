"""project.postgresql: the per-request health check polls the socket, not the server."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL backend"),
]


@pytest.fixture
def other() -> Iterator[BaseDatabaseWrapper]:
    """A second connection, outside the test's transaction, in autocommit."""
    wrapper = connection.copy()
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def _wait_readable(wrapper: BaseDatabaseWrapper) -> None:
    """Until the server's message reaches the socket (bounded)."""
    ready, _, _ = select.select([wrapper.connection.pgconn.socket], [], [], 10)
    assert ready, "nothing arrived from the server within 10 s"


def _last_query(pid: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0]


def test_idle_connection_is_usable_without_a_query_to_the_server(other):
    with other.cursor() as cursor:
        cursor.execute("SELECT 'health-check-marker'")
    pid = other.connection.info.backend_pid

    usable = other.is_usable()

    assert usable is True
    assert _last_query(pid) == "SELECT 'health-check-marker'"


def test_connection_the_server_terminated_is_not_usable(other):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [other.connection.info.backend_pid])
    _wait_readable(other)

    assert other.is_usable() is False


def test_pending_notification_falls_back_to_a_real_check_and_stays_usable(other):
    notifier = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("LISTEN herald_health_check_test")
        with notifier.cursor() as cursor:
            cursor.execute("NOTIFY herald_health_check_test")
        _wait_readable(other)
        pid = other.connection.info.backend_pid

        usable = other.is_usable()

        assert usable is True
        assert _last_query(pid) == "SELECT 1"
    finally:
        notifier.close()
