"""Django's PostgreSQL backend, with a connection health check that costs no round trip.

With CONN_HEALTH_CHECKS, Django asks `is_usable()` at the first database use of
every request, and the stock backend answers by sending `SELECT 1`: on a single
POST /events that was one of four round trips. A connection that PostgreSQL
closed (restart, idle-session timeout, pg_terminate_backend, a crashed backend)
makes its socket readable -- the server's FATAL message or the end of the stream
arrives while the client is idle -- so a zero-timeout poll of the socket tells a
healthy idle connection from a dead one without asking the server. Only when
something is waiting on the socket does this fall back to the stock `SELECT 1`
(psycopg then reads what arrived and reports the failure). A peer that vanished
without closing (a cut network) is missed here, as it would stall `SELECT 1` too.
It also reads a timestamptz that Python cannot represent as the nearest one it can
(project/postgresql/timestamps.py) instead of failing the query. Everything else is
the stock backend.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import pq

from project.postgresql.timestamps import clamping_loader_register

_WATCH = select.POLLIN | select.POLLERR | select.POLLHUP


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] = super().get_new_connection(conn_params)
        clamping_loader_register(connection, self.timezone)
        return connection

    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if conn.pgconn.transaction_status == pq.TransactionStatus.UNKNOWN:
            return False
        poller = select.poll()
        try:
            poller.register(conn.pgconn.socket, _WATCH)
            pending = poller.poll(0)
        except (OSError, ValueError, psycopg.OperationalError):
            return False
        if not pending:
            return True  # idle and nothing from the server: it has not hung up
        return super().is_usable()
