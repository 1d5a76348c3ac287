"""The ingest statements keep reading refs, customers and property definitions by index
once prepared.

psycopg prepares a statement after a few executions on a connection and PostgreSQL
then settles on one generic plan for it, made from what the tables looked like at
that moment. On a new database they look empty, so a plan that hashes the whole ref,
customer or definition table is cheapest then -- and stays the plan while the tables grow (only
an ANALYZE replans it). These tests make the generic plans on small tables, as a new
deployment does, and count the sequential scans of the requests that follow.

The ref trigger on the events table (events_app.partitions.ddl) is planned once per
connection too, at its first insert; a web process that first stores a batch keeps
that plan for its single events.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from customers.models import Customer
from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

# Enough executions on one connection for psycopg to prepare each statement
# (DB_PREPARE_THRESHOLD) and for PostgreSQL to switch to its generic plan (after five
# custom plans of the prepared statement).
SETTLE = 15
WATCHED = ("events_app_eventref", "customers_customer", "events_app_propertydefinition")


def seq_scans() -> dict[str, int]:
    """Sequential scans of the watched tables in the current transaction, so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
            [list(WATCHED)],
        )
        counts = dict(cursor.fetchall())
    return {name: counts.get(name, 0) for name in WATCHED}


def batch(api: Any, size: int) -> None:
    events = [
        {"event": {"event_type": "purchase", "customer_external_id": "c0", "external_id": f"b{n}"}}
        for n in range(size)
    ]
    response = api.post(f"{API}/events/batch", {"events": events}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["invalid_events"] == []


def post(api: Any, event: dict[str, Any]) -> int:
    body = {
        "event": {"event_type": "purchase", **event},
        "property_records": [{"property_id": "amount", "property_value": 5}],
    }
    response = api.post(f"{API}/events", body, format="json")
    return int(response.status_code)


@pytest.fixture
def fresh_connection() -> None:
    """A connection with nothing prepared yet, as a newly started web process has."""
    connection.close()


# transaction=True: each request commits on its own, as under gunicorn; the measured
# requests then run in one transaction so that its own scan counters can be read.
@pytest.mark.django_db(transaction=True)
def test_single_posts_after_the_plans_settle_scan_neither_refs_nor_customers(
    fresh_connection: None, api: Any
) -> None:
    purchase = EventTypeFactory(key="purchase")
    purchase.properties.create(property_id="amount", value_type="number")
    known = [CustomerFactory(external_id=f"c{n}") for n in range(20)]
    for n in range(SETTLE):  # new refs, known customers, a new customer, a repeat
        assert post(api, {"customer_external_id": known[n].external_id, "external_id": f"r{n}"})
        assert post(api, {"customer_external_id": f"new{n}", "external_id": f"n{n}"}) == 201
        assert post(api, {"customer_external_id": known[n].external_id, "external_id": "r0"})
    events, customers = Event.objects.count(), Customer.objects.count()

    with transaction.atomic():
        before = seq_scans()
        stored = post(api, {"customer_external_id": known[-1].external_id, "external_id": "x1"})
        created = post(api, {"customer_external_id": "new-x", "external_id": "x2"})
        repeated = post(api, {"customer_external_id": known[-1].external_id, "external_id": "r1"})
        after = seq_scans()

    assert (stored, created, repeated) == (201, 201, 409)
    assert after == before
    assert (Event.objects.count(), Customer.objects.count()) == (events + 2, customers + 1)


@pytest.mark.django_db(transaction=True)
def test_single_posts_after_a_first_batch_on_the_connection_do_not_scan_the_refs(
    fresh_connection: None, api: Any
) -> None:
    EventTypeFactory(key="purchase").properties.create(property_id="amount", value_type="number")
    CustomerFactory(external_id="c0")
    batch(api, 500)  # the connection's first insert: its trigger plan is made for 500
    for n in range(SETTLE):
        assert post(api, {"customer_external_id": "c0", "external_id": f"r{n}"}) == 201

    with transaction.atomic():
        before = seq_scans()
        stored = post(api, {"customer_external_id": "c0", "external_id": "x1"})
        after = seq_scans()

    assert stored == 201
    assert after == before
    assert Event.objects.count() == 500 + SETTLE + 1
