"""Memberships: built from scratch, kept by events, customer changes and time, with
every transition a row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.segments.services import segments_sweep_due
from customers.models import Customer
from customers.services import customer_create, customer_update
from events_app.models import Event, EventType
from tests.automation.segments.conftest import members

pytestmark = pytest.mark.django_db


def test_build_puts_exactly_the_matching_customers_in_and_marks_ready(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    for _ in range(3):
        ingest(customer="alice", background=False)
    ingest(customer="bob", background=False)
    segment = make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 2})
    assert segment.status == Segment.Status.READY
    assert members(segment) == ["alice"]


def test_an_ingested_event_enters_the_customer_once(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 2})
    ingest(customer="alice")
    assert members(segment) == []
    ingest(customer="alice")
    ingest(customer="alice")
    assert members(segment) == ["alice"]
    assert SegmentMembership.objects.filter(segment=segment).count() == 1


def test_a_new_customer_enters_a_negated_segment_with_their_first_event_of_another_type(
    purchase: EventType,
    login: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
) -> None:
    segment = make_segment(
        "never_bought", {"not": {"count": {"event_type": "purchase"}, "op": "gte", "value": 1}}
    )
    ingest("login", customer="carol")
    assert members(segment) == ["carol"]
    ingest("purchase", customer="carol")
    assert members(segment) == []
    stays = SegmentMembership.objects.get(segment=segment)
    assert stays.exited_at is not None


def test_aggregate_of_a_numeric_property(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment(
        "big",
        {
            "aggregate": {"event_type": "purchase", "property": "amount", "fn": "sum"},
            "op": "gte",
            "value": 500,
        },
    )
    ingest(customer="alice", records={"amount": "300"})
    assert members(segment) == []
    ingest(customer="alice", records={"amount": "200.5"})
    assert members(segment) == ["alice"]


def test_window_running_out_exits_the_customer_at_the_sweep_after_the_edge(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment(
        "recent",
        {"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 1},
    )
    start = timezone.now()
    ingest(customer="alice", occurred_at=start - timedelta(days=29))
    assert members(segment) == ["alice"]
    check = SegmentCheck.objects.get(segment=segment)
    edge = start - timedelta(days=29) + timedelta(days=30)
    assert check.next_check_at == edge
    with time_machine.travel(edge - timedelta(seconds=1), tick=False):
        assert segments_sweep_due() == 0
    assert members(segment) == ["alice"]
    with time_machine.travel(edge + timedelta(seconds=1), tick=False):
        assert segments_sweep_due() == 1
    assert members(segment) == []
    assert not SegmentCheck.objects.filter(segment=segment).exists()


def test_recency_more_than_enters_a_customer_when_time_passes(
    login: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment("lapsed", {"last": "login", "op": "more_than", "value": "P14D"})
    ingest("login", customer="alice")
    assert members(segment) == []
    with time_machine.travel(timezone.now() + timedelta(days=14, seconds=5), tick=False):
        segments_sweep_due()
    assert members(segment) == ["alice"]


def test_customer_change_through_the_service_refreshes_segments_reading_that_field(
    db: None, make_segment: Callable[..., Segment], django_capture_on_commit_callbacks: Any
) -> None:
    segment = make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    with django_capture_on_commit_callbacks(execute=True):
        customer = customer_create(external_id="dave")
    assert members(segment) == []
    with django_capture_on_commit_callbacks(execute=True):
        customer_update(customer=customer, fields={"tags": ["vip"]})
    assert members(segment) == ["dave"]
    with django_capture_on_commit_callbacks(execute=True):
        customer_update(customer=customer, fields={"tags": []})
    assert members(segment) == []
    assert SegmentMembership.objects.filter(segment=segment).count() == 1


def test_membership_of_another_segment_follows_it(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    buyers = make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    vip = make_segment(
        "vip_buyers",
        {"all": [{"segment": "buyers"}, {"customer": "tags", "op": "contains", "value": "vip"}]},
    )
    not_buyers = make_segment("not_buyers", {"not": {"segment": "buyers"}})
    Customer.objects.create(external_id="erin", tags=["vip"])
    ingest(customer="erin")
    assert members(buyers) == ["erin"]
    assert members(vip) == ["erin"]
    assert members(not_buyers) == []


def test_deleting_a_customer_removes_their_memberships(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    from customers.services import customer_delete

    segment = make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    ingest(customer="alice")
    customer_delete(customer=Customer.objects.get(external_id="alice"))
    assert SegmentMembership.objects.filter(segment=segment).count() == 0


def test_ingestion_flags_events_a_segment_reads_and_events_of_new_customers(
    purchase: EventType,
    login: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
) -> None:
    unflagged = ingest("login", customer="alice", background=False)
    assert unflagged.automation_pending is False  # no segment yet, no workflow
    make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    assert ingest("purchase", customer="alice", background=False).automation_pending is True
    assert ingest("login", customer="alice", background=False).automation_pending is False
    # A new customer may match a segment that reads nothing of the event.
    assert ingest("login", customer="newbie", background=False).automation_pending is True


def test_the_sweep_restarts_a_build_that_was_lost(
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from automation.segments.services import SegmentInput, segment_create

    ingest(customer="alice", background=False)
    with django_capture_on_commit_callbacks(execute=False):  # the build message is lost
        segment = segment_create(
            data=SegmentInput(
                key="buyers",
                name="Buyers",
                condition={"count": {"event_type": "purchase"}, "op": "gte", "value": 1},
            )
        )
    assert segments_sweep_due() == 0
    segment.refresh_from_db()
    assert segment.status == Segment.Status.BUILDING
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        segments_sweep_due()
    segment.refresh_from_db()
    assert segment.status == Segment.Status.READY
    assert members(segment) == ["alice"]


def test_a_lost_refresh_of_a_customer_change_is_made_by_the_sweep(
    db: None, make_segment: Callable[..., Segment], django_capture_on_commit_callbacks: Any
) -> None:
    segment = make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    other = make_segment("gmail", {"customer": "email", "op": "ends_with", "value": "@gmail.com"})
    with django_capture_on_commit_callbacks(execute=True):
        customer = customer_create(external_id="dave")
    assert not SegmentCheck.objects.exists()
    with django_capture_on_commit_callbacks(execute=False):  # the message is lost
        customer_update(customer=customer, fields={"tags": ["vip"]})
    assert members(segment) == []
    # Only the segment reading tags is marked.
    assert list(SegmentCheck.objects.values_list("segment_id", flat=True)) == [segment.pk]
    assert segments_sweep_due() == 1
    assert members(segment) == ["dave"]
    assert members(other) == []
    assert not SegmentCheck.objects.exists()
