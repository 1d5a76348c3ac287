"""Exactness: the incremental path (events, customer changes, clock moves) always
leaves the memberships a recomputation from scratch gives; transitions are exactly
once even when workers refresh one customer at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.segments.selectors import loaded_segments_forget
from automation.segments.services import (
    SegmentInput,
    segment_build,
    segment_create,
    segments_refresh_for_event_ids,
    segments_sweep_due,
)
from customers.models import Customer
from customers.services import customer_create, customer_update
from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CUSTOMERS = ["ann", "ben"]

SEGMENTS: dict[str, dict[str, Any]] = {
    "frequent": {"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 2},
    "spender": {
        "aggregate": {"event_type": "purchase", "property": "amount", "fn": "sum"},
        "op": "gte",
        "value": 100,
    },
    "quiet": {"last": "login", "op": "more_than", "value": "P3D"},
    "no_recent_purchase": {
        "count": {"event_type": "purchase", "within": "P1D"},
        "op": "eq",
        "value": 0,
    },
    "frequent_vip": {
        "all": [{"segment": "frequent"}, {"customer": "tags", "op": "contains", "value": "vip"}]
    },
    "new_or_max": {
        "any": [
            {"customer": "created_at", "op": "within_last", "value": "P2D"},
            {
                "aggregate": {
                    "event_type": "purchase",
                    "property": "amount",
                    "fn": "max",
                    "within": "P5D",
                },
                "op": "gt",
                "value": 60,
            },
        ]
    },
}


def _oracle(now: datetime) -> dict[str, set[str]]:
    """Every segment's members computed from the raw rows in plain Python (no code of
    automation.segments involved)."""
    purchases: dict[str, list[tuple[datetime, Decimal]]] = {}
    amounts = dict(
        PropertyRecord.objects.filter(property_id="amount").values_list(
            "event_id", "property_value"
        )
    )
    logins: dict[str, list[datetime]] = {}
    for event_id, customer_id, key, occurred_at in Event.objects.values_list(
        "id", "customer_id", "event_type__key", "occurred_at"
    ):
        if occurred_at > now:
            continue  # not yet happened
        if key == "purchase":
            purchases.setdefault(customer_id, []).append((occurred_at, Decimal(amounts[event_id])))
        else:
            logins.setdefault(customer_id, []).append(occurred_at)
    result: dict[str, set[str]] = {key: set() for key in SEGMENTS}
    for customer in Customer.objects.all():
        mine = purchases.get(customer.pk, [])
        last7 = [a for t, a in mine if t > now - timedelta(days=7)]
        last5 = [a for t, a in mine if t > now - timedelta(days=5)]
        last1 = [a for t, a in mine if t > now - timedelta(days=1)]
        last_login = max(logins.get(customer.pk, []), default=None)
        frequent = len(last7) >= 2
        checks = {
            "frequent": frequent,
            "spender": sum(a for _, a in mine) >= 100,
            "quiet": last_login is None or last_login < now - timedelta(days=3),
            "no_recent_purchase": not last1,
            "frequent_vip": frequent and "vip" in customer.tags,
            "new_or_max": now - timedelta(days=2) <= customer.created_at <= now
            or max(last5, default=Decimal(0)) > 60,
        }
        for key, member in checks.items():
            if member:
                result[key].add(customer.pk)
    return result


def _stored() -> dict[str, set[str]]:
    result: dict[str, set[str]] = {key: set() for key in SEGMENTS}
    for key, customer_id in SegmentMembership.objects.filter(exited_at__isnull=True).values_list(
        "segment__key", "customer_id"
    ):
        result[key].add(customer_id)
    return result


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            st.sampled_from(CUSTOMERS),
            st.sampled_from(["purchase", "login"]),
            st.sampled_from([0, 30, 61, 80]),  # amount
            # Hours ago (negative: dated in the future), around the windows' edges.
            st.sampled_from([-30, -5, 0, 3, 23, 25, 70, 73, 110, 121, 160, 170, 240]),
        ),
        st.tuples(st.just("tags"), st.sampled_from(CUSTOMERS), st.booleans()),
        # Minutes the clock moves forward.
        st.tuples(st.just("clock"), st.sampled_from([1, 59, 6 * 60, 20 * 60, 25 * 60, 50 * 60])),
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture
def world(db: None, django_capture_on_commit_callbacks: Any) -> Callable[[], None]:
    """Event types and the segments; returns a reset between hypothesis examples."""
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    EventType.objects.create(key="login", name="Login")
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        for key, condition in SEGMENTS.items():
            segment_create(data=SegmentInput(key=key, name=key, condition=condition))
    # Built (on commit): the sweep never rebuilds them, so only the incremental path acts.
    assert set(Segment.objects.values_list("status", flat=True)) == {Segment.Status.READY}

    def reset() -> None:
        Customer.objects.all().delete()  # events, memberships and checks go with them
        loaded_segments_forget()

    return reset


def _ingest(customer: str, type_key: str, amount: int, occurred_at: datetime) -> str:
    import msgspec

    from events_app.ingestion import events_prepare, events_store
    from events_app.schemas import EventCreateIn

    body: dict[str, Any] = {
        "event": {
            "event_type": type_key,
            "customer_external_id": customer,
            "occurred_at": occurred_at.isoformat(),
        },
        "property_records": [{"property_id": "amount", "property_value": str(amount)}]
        if type_key == "purchase"
        else [],
    }
    prepared, invalid = events_prepare(items=[msgspec.convert(body, EventCreateIn, strict=False)])
    assert not invalid
    return events_store(prepared=prepared).stored[0].id


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_incremental_membership_equals_a_recomputation_after_every_step(
    world: Callable[[], None], django_capture_on_commit_callbacks: Any, steps: list[Any]
) -> None:
    world()
    with time_machine.travel(T0, tick=False) as clock:
        now = T0
        for step in steps:
            with django_capture_on_commit_callbacks(execute=True):
                if step[0] == "event":
                    _, customer, type_key, amount, hours_ago = step
                    event_id = _ingest(customer, type_key, amount, now - timedelta(hours=hours_ago))
                    # What the evaluation task does first (automation.workflows.runner).
                    segments_refresh_for_event_ids(event_ids=[event_id])
                elif step[0] == "tags":
                    _, external_id, vip = step
                    customer = Customer.objects.filter(external_id=external_id).first()
                    if customer is None:
                        customer = customer_create(external_id=external_id)
                    customer_update(customer=customer, fields={"tags": ["vip"] if vip else []})
                else:
                    now += timedelta(minutes=step[1])
                    clock.move_to(now)
                    segments_sweep_due(now)
            assert _stored() == _oracle(now), step
    # Every stay is a row: never two current rows for a pair, exits after entries.
    for row in SegmentMembership.objects.all():
        assert row.exited_at is None or row.exited_at >= row.entered_at


def test_a_full_build_agrees_with_the_incremental_path(
    world: Callable[[], None], django_capture_on_commit_callbacks: Any
) -> None:
    with time_machine.travel(T0, tick=False):
        for i, customer in enumerate(CUSTOMERS * 3):
            event_id = _ingest(customer, "purchase", 20 + 7 * i, T0 - timedelta(days=i))
            segments_refresh_for_event_ids(event_ids=[event_id])
        incremental = _stored()
        for segment in Segment.objects.all():
            segment_build(segment_id=segment.pk, version=segment.version)
        assert _stored() == incremental == _oracle(T0)
        # A rebuild makes no transition: every stay is still one row.
        assert SegmentMembership.objects.filter(exited_at__isnull=False).count() == 0


def _refresh_concurrently(event_id: str, *, workers: int) -> tuple[list[int], list[BaseException]]:
    """`workers` threads refresh for one event at the same moment; their transition
    counts and errors."""
    barrier = threading.Barrier(workers)
    made: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            made.append(segments_refresh_for_event_ids(event_ids=[event_id]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return made, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_customer_enter_exactly_once() -> None:
    EventType.objects.create(key="purchase", name="Purchase")
    segment_create(
        data=SegmentInput(
            key="buyers",
            name="Buyers",
            condition={"count": {"event_type": "purchase"}, "op": "gte", "value": 1},
        )
    )
    for round_ in range(5):
        customer = Customer.objects.create(external_id=f"c{round_}")
        event = Event.objects.create(
            event_type=EventType.objects.get(key="purchase"),
            customer=customer,
            occurred_at=T0,
        )
        made, errors = _refresh_concurrently(event.pk, workers=4)
        assert not errors, errors
        assert sorted(made) == [0, 0, 0, 1]  # one worker saw the entry, the others nothing
        assert SegmentMembership.objects.filter(customer=customer).count() == 1
    assert SegmentCheck.objects.count() == 0
