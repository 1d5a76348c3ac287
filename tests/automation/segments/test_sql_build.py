"""The build in the database (automation.segments.sql_build) decides exactly what the
Python engine decides: on random events and conditions, for every leaf kind the module
compiles and every operator, the memberships, their history and the next checks of a
segment built in SQL equal those of a twin segment refreshed by the general path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from automation.segments import sql_build, sql_compile
from automation.segments.conditions import validate
from automation.segments.membership import memberships_refresh
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.segments.selectors import loaded_segments, loaded_segments_forget
from automation.segments.services import segment_build, segments_refresh_for_event_ids
from automation.workflows.conditions.operators import NUMERIC_OPS
from automation.workflows.conditions.trees import ConditionError
from customers.models import Customer
from customers.services import customer_create
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord
from events_app.schemas import EventCreateIn

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CUSTOMERS = ["ann", "ben", "cy"]
WINDOWS = [None, "PT1H", "P1D", "P7D"]
# Property texts: plain numbers, padded, signed, exponents, and what never aggregates.
# Past 60 characters the full pattern decides; an exponent has at most three digits.
AMOUNTS = ["10", "0.1", "2.50", " 7 ", "-3", "1e2", "100", "abc", "", "1.2.3", "NaN"]
AMOUNTS += ["1e1234", "2E-999", "1" * 60 + ".5", " " * 10 + "3" * 60 + " " * 5, "4" * 61]
# Hours before now (negative: dated in the future), on and around the windows' edges.
HOURS = [-30, -1, 0, 1, 2, 23, 24, 25, 167, 168, 169, 400]
NUMBERS = [0, 1, 2, 3, 0.1, 2.5, 10, 100, 112.1, -3]


def _numeric_leaf(draw: Any, subject: dict[str, Any], *, whole: bool) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(NUMERIC_OPS)))
    numbers = st.sampled_from([0, 1, 2, 3, 10] if whole else NUMBERS)
    if op == "between":
        value: Any = [draw(numbers), draw(numbers)]
    elif op in {"in", "not_in"}:
        value = draw(st.lists(numbers, min_size=1, max_size=3))
    else:
        value = draw(numbers)
    return {**subject, "op": op, "value": value}


def _within(draw: Any) -> dict[str, str]:
    within = draw(st.sampled_from(WINDOWS))
    return {} if within is None else {"within": within}


@st.composite
def leaves(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["count", "aggregate", "last", "segment"]))
    event_type = draw(st.sampled_from(["purchase", "login"]))
    if kind == "count":
        spec = {"event_type": event_type, **_within(draw)}
        return _numeric_leaf(draw, {"count": spec}, whole=True)
    if kind == "aggregate":
        fn = draw(st.sampled_from(["sum", "min", "max", "avg", "count"]))
        spec = {"event_type": "purchase", "property": "amount", "fn": fn, **_within(draw)}
        return _numeric_leaf(draw, {"aggregate": spec}, whole=fn == "count")
    if kind == "last":
        return {
            "last": event_type,
            "op": draw(st.sampled_from(["within", "more_than"])),
            "value": draw(st.sampled_from(["PT1H", "P1D", "P7D"])),
        }
    return {"segment": "vip"}


conditions = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=4,
)
events = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.sampled_from(["purchase", "login"]),
        st.sampled_from(AMOUNTS),
        st.sampled_from(HOURS),
    ),
    max_size=10,
)


def _ingest(customer: str, type_key: str, amount: str, occurred_at: datetime) -> None:
    body: dict[str, Any] = {
        "event": {
            "event_type": type_key,
            "customer_external_id": customer,
            "occurred_at": occurred_at.isoformat(),
        },
        "property_records": [{"property_id": "amount", "property_value": "1"}]
        if type_key == "purchase"
        else [],
    }
    prepared, invalid = events_prepare(items=[msgspec.convert(body, EventCreateIn, strict=False)])
    assert not invalid
    event_id = events_store(prepared=prepared).stored[0].id
    # Any text, as stored values may be (the definition's typing is not retroactive).
    PropertyRecord.objects.filter(event_id=event_id).update(property_value=amount)


def _state(segment: Segment) -> tuple[set[tuple[str, bool]], dict[str, datetime]]:
    stays = {
        (customer, exited is None)
        for customer, exited in segment.memberships.values_list("customer_id", "exited_at")
    }
    checks = dict(
        SegmentCheck.objects.filter(segment=segment).values_list("customer_id", "next_check_at")
    )
    return stays, checks


@pytest.fixture
def twins(db: None) -> Callable[[dict[str, Any]], tuple[Segment, Segment]]:
    """Event types, a `vip` segment, and two segments given the same condition: one to
    build in SQL, one by the general path. Returns a reset taking the condition."""
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    EventType.objects.create(key="login", name="Login")
    Segment.objects.create(key="vip", name="VIP", status=Segment.Status.READY)
    in_sql = Segment.objects.create(key="in_sql", name="In SQL")
    in_python = Segment.objects.create(key="in_python", name="In Python")

    def reset(condition: dict[str, Any]) -> tuple[Segment, Segment]:
        Customer.objects.all().delete()  # events, memberships and checks go with them
        Segment.objects.filter(pk__in=[in_sql.pk, in_python.pk]).update(condition=condition)
        loaded_segments_forget()
        return in_sql, in_python

    return reset


def _build_both(in_sql: Segment, in_python: Segment, *, quiet: bool) -> None:
    loaded = loaded_segments().by_id
    made = sql_build.segment_build_sql(
        segment=loaded[in_sql.pk], quiet=quiet, still_current=lambda: True
    )
    assert made is not None, "every leaf kind here compiles"
    memberships_refresh(
        segments=[loaded[in_python.pk]],
        customer_ids=Customer.objects.values_list("pk", flat=True),
        quiet=quiet,
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(condition=conditions, history=events, vips=st.sets(st.sampled_from([*CUSTOMERS, "dee"])))
# Cases named by the semantics they pin: an empty sum is 0, never done is "more than".
@example(
    condition={
        "any": [
            {
                "aggregate": {"event_type": "purchase", "property": "amount", "fn": "sum"},
                "op": "eq",
                "value": 0,
            },
            {"last": "login", "op": "more_than", "value": "P1D"},
        ]
    },
    history=[("ann", "purchase", "abc", 2), ("ben", "login", "", 30)],
    vips=set(),
)
@example(
    condition={
        "not": {
            "aggregate": {
                "event_type": "purchase",
                "property": "amount",
                "fn": "avg",
                "within": "P1D",
            },
            "op": "ne",
            "value": 0.1,
        }
    },
    history=[("ann", "purchase", "0.1", 2), ("ben", "purchase", "abc", 2)],
    vips={"cy"},
)
def test_the_sql_build_decides_as_the_python_engine(
    twins: Callable[[dict[str, Any]], tuple[Segment, Segment]],
    condition: dict[str, Any],
    history: list[tuple[str, str, str, int]],
    vips: set[str],
) -> None:
    try:
        validate(condition)
    except ConditionError:
        assume(False)
    in_sql, in_python = twins(condition)
    with time_machine.travel(T0, tick=False) as clock:
        for external_id in [*CUSTOMERS, "dee"]:  # dee: no event at all
            customer_create(external_id=external_id)
        for customer, type_key, amount, hours in history:
            _ingest(customer, type_key, amount, T0 - timedelta(hours=hours))
        for external_id in vips:
            SegmentMembership.objects.create(
                segment=Segment.objects.get(key="vip"),
                customer=Customer.objects.get(external_id=external_id),
                entered_at=T0,
            )
        _build_both(in_sql, in_python, quiet=True)
        assert _state(in_sql) == _state(in_python)
        # Later, a rebuild: exits and entries as time moved, checks replaced.
        clock.move_to(T0 + timedelta(hours=25))
        SegmentMembership.objects.filter(segment__key="vip", customer__external_id="ann").update(
            exited_at=T0 + timedelta(hours=1)
        )
        _build_both(in_sql, in_python, quiet=False)
        assert _state(in_sql) == _state(in_python)


def test_a_segment_with_a_customer_leaf_is_built_by_the_general_path(
    twins: Callable[[dict[str, Any]], tuple[Segment, Segment]],
) -> None:
    condition = {
        "all": [
            {"count": {"event_type": "purchase"}, "op": "gte", "value": 1},
            {"customer": "attributes.plan", "op": "eq", "value": "pro"},
        ]
    }
    in_sql, _ = twins(condition)
    with time_machine.travel(T0, tick=False):
        _ingest("ann", "purchase", "5", T0)
        _ingest("ben", "purchase", "5", T0)
        Customer.objects.filter(external_id="ann").update(attributes={"plan": "pro"})
        loaded = loaded_segments().by_id[in_sql.pk]
        assert sql_compile.compile_segment(loaded, T0) is None
        segment_build(segment_id=in_sql.pk, version=in_sql.version)
    members = set(in_sql.memberships.values_list("customer__external_id", flat=True))
    assert members == {"ann"}
    in_sql.refresh_from_db()
    assert in_sql.status == Segment.Status.READY


def test_a_build_in_sql_writes_nothing_when_the_segment_changed_meanwhile(
    twins: Callable[[dict[str, Any]], tuple[Segment, Segment]],
) -> None:
    in_sql, _ = twins({"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    with time_machine.travel(T0, tick=False):
        for customer in CUSTOMERS:
            _ingest(customer, "purchase", "5", T0)
        loaded = loaded_segments().by_id[in_sql.pk]
        # Current when it starts reading, changed by the time it would write.
        answers = iter([True, False])
        made = sql_build.segment_build_sql(
            segment=loaded, quiet=True, still_current=lambda: next(answers)
        )
    assert made == 0
    assert not in_sql.memberships.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refresh_during_a_build_waits_for_it_and_decides_last() -> None:
    """A build reads, an event is stored and refreshed meanwhile: the refresh waits for
    the build's commit (the segment's lock), so its answer is the one that stays."""
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    segment = Segment.objects.create(
        key="buyers",
        name="Buyers",
        condition={"count": {"event_type": "purchase"}, "op": "gte", "value": 1},
    )
    customer_create(external_id="ann")
    loaded_segments_forget()
    loaded = loaded_segments().by_id[segment.pk]
    read, write = threading.Event(), threading.Event()
    calls: list[int] = []
    done: dict[str, float] = {}

    def still_current() -> bool:
        calls.append(1)
        if len(calls) == 2:  # the facts are read; hold the write back
            read.set()
            write.wait(timeout=10)
        return True

    def build() -> None:
        try:
            sql_build.segment_build_sql(segment=loaded, quiet=True, still_current=still_current)
            done["build"] = time.monotonic()
        finally:
            connection.close()

    def ingest() -> None:  # stored, then refreshed (in-process here, or by a worker)
        try:
            _ingest("ann", "purchase", "5", timezone.now())
            segments_refresh_for_event_ids(event_ids=[Event.objects.get().pk])
            done["refresh"] = time.monotonic()
        finally:
            connection.close()

    builder = threading.Thread(target=build)
    builder.start()
    assert read.wait(timeout=10)
    refresher = threading.Thread(target=ingest)
    refresher.start()
    refresher.join(timeout=0.5)
    assert "refresh" not in done  # waiting for the build's lock
    write.set()
    builder.join(timeout=10)
    refresher.join(timeout=10)
    assert done["build"] < done["refresh"]
    assert list(segment.memberships.values_list("customer__external_id", "exited_at")) == [
        ("ann", None)
    ]
