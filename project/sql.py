"""Raw reads on the request's connection, prepared by PostgreSQL after a few uses."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def fetch_all(sql: str, params: list[Any] | tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Run a read on Django's connection (same session and transaction) and return its rows.

    On PostgreSQL through a server-binding psycopg cursor, as the INSERT in
    events_app/ingest_pg does: psycopg then prepares the statement after
    `prepare_threshold` uses on a connection (project/settings.py), so PostgreSQL
    stops planning it on every request, and no ORM query is compiled in Python.
    Django's own cursors bind on the client, which rules prepared statements out.
    Keep the text of a statement the same from call to call (values as parameters).
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
