"""The single-POST floor: a bare WSGI app that stores one event the cheapest way.

bench/ingest.py serves this under gunicorn next to Herald, with the same workers, the
same clients and the same request bodies, to print what this machine can do at best:
`POST /events` answered by one prepared INSERT of the event and its property records
into Herald's own tables (same indexes, foreign keys, count trigger and durable
commit), the event type and customer looked up inside that statement. No Django, no
authentication, no validation, no automation: everything Herald adds costs more than
this. It is the single-request counterpart of the COPY floor the benchmark prints for
batches. Not part of Herald; nothing imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import dj_database_url
import msgspec
import psycopg

from project.ids import new_public_id


class _Record(msgspec.Struct):
    property_id: str
    property_value: Any


class _Event(msgspec.Struct):
    event_type: str
    customer_external_id: str
    external_id: str


class _Item(msgspec.Struct):
    event: _Event
    property_records: list[_Record]


_decode = msgspec.json.Decoder(_Item).decode
_encode = msgspec.json.Encoder().encode

# The ref is claimed first in events_app_eventref, as Herald's own insert does (a
# partitioned events table holds no unique ref index to conflict on).
_SQL = """
WITH input AS (
    SELECT %s::varchar AS id, %s::varchar AS ref, et.id AS type_id, c.id AS customer_id
    FROM events_app_eventtype et, customers_customer c
    WHERE et.key = %s AND c.external_id = %s
), claimed AS (
    INSERT INTO events_app_eventref (event_type_id, ref, event_id)
    SELECT type_id, ref, id FROM input
    ON CONFLICT (event_type_id, ref) DO NOTHING
    RETURNING event_id
), stored AS (
    INSERT INTO events_app_event (id, event_type_id, customer_id, external_id, data,
        occurred_at, created_at, state, is_delivered, automation_pending, depth)
    SELECT input.id, type_id, customer_id, ref, '{}', now(), now(), 1, true, false, 0
    FROM input JOIN claimed ON claimed.event_id = input.id
    RETURNING id
), records AS (
    INSERT INTO events_app_propertyrecord (event_id, property_id, property_value, created_at)
    SELECT stored.id, r.property_id, r.property_value, now()
    FROM stored, unnest(%s::text[], %s::text[]) AS r(property_id, property_value)
)
SELECT id FROM stored
"""

_connection: psycopg.Connection[Any] | None = None


def _connect() -> psycopg.Connection[Any]:
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    return psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        dbname=config["NAME"],
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        autocommit=True,  # one statement, one transaction, as Herald's single POST
        prepare_threshold=1,
    )


def application(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    global _connection
    if _connection is None:
        _connection = _connect()
    item = _decode(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    event_id = new_public_id()
    records = item.property_records
    rows = _connection.execute(
        _SQL,
        (
            event_id,
            item.event.external_id,
            item.event.event_type,
            item.event.customer_external_id,
            [r.property_id for r in records],
            [str(r.property_value) for r in records],
        ),
    ).fetchall()
    status = "201 Created" if rows else "409 Conflict"
    body = _encode({"data": {"event_id": event_id}})
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
