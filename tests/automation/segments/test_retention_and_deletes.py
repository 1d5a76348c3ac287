"""What changes memberships besides events and customer edits: retention dropping a
month of events (the segments reading that far are rebuilt), and deleting a customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from automation.segments.models import Segment, SegmentBroadcast, SegmentCheck
from automation.segments.retention import segments_events_dropped
from automation.workflows.models import WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from customers.services import customer_delete
from events_app.models import Event, EventType
from events_app.partitions.maintenance import partitions_ensure, retention_apply, retention_parse
from events_app.partitions.months import Month
from tests.automation.segments.conftest import members
from tests.conftest import API

pytestmark = pytest.mark.django_db

NOW = timezone.now()
LONG_AGO = NOW - timedelta(days=800)


def bought(count: int, within: str | None = None) -> dict[str, Any]:
    spec = {"event_type": "purchase", **({"within": within} if within else {})}
    return {"count": spec, "op": "gte" if count else "eq", "value": count}


def test_retention_rebuilds_the_segments_reading_that_far_back_and_no_other(
    purchase: EventType,
    login: EventType,
    make_segment: Callable[..., Segment],
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice, bob = (
        Customer.objects.create(external_id="alice"),
        Customer.objects.create(external_id="bob"),
    )
    Event.objects.create(
        event_type=purchase, customer=alice, occurred_at=LONG_AGO, created_at=LONG_AGO
    )
    Event.objects.create(event_type=login, customer=bob, occurred_at=NOW)
    ever = make_segment("ever", bought(1))
    never = make_segment("never", bought(0))
    recent = make_segment("recent", bought(1, "P30D"))
    quiet = make_segment("quiet", {"last": "login", "op": "more_than", "value": "P7D"})
    assert (members(ever), members(never), members(quiet)) == (["alice"], ["bob"], ["alice"])
    exits = workflow_create(
        data=WorkflowInput(name="lapsed", trigger_segments=[{"segment": "ever", "on": "exited"}])
    )
    partitions_ensure(now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        dropped = retention_apply(now=NOW, retention=retention_parse("P13M"))

    assert [d.month for d in dropped] == [Month.of(LONG_AGO)]
    assert (members(ever), members(never)) == ([], ["alice", "bob"])
    assert members(quiet) == ["alice"]  # read all time, rebuilt, still no login
    statuses = dict(Segment.objects.values_list("key", "status"))
    assert statuses == {"ever": "ready", "never": "ready", "recent": "ready", "quiet": "ready"}
    recent_before = recent.built_at
    recent.refresh_from_db()
    assert recent.built_at == recent_before  # a 30-day window reads nothing that old
    # The rebuild is a real exit: the workflow triggered by it ran.
    assert [r.trigger for r in WorkflowRun.objects.filter(workflow=exits)] == [
        {"segment": "ever", "on": "exited"}
    ]


def test_the_hook_picks_windows_longer_than_the_age_of_the_dropped_month(
    purchase: EventType, make_segment: Callable[..., Segment]
) -> None:
    make_segment("p30", bought(1, "P30D"))
    make_segment("p400", bought(1, "P400D"))
    make_segment("all_time", bought(1))
    month_end = NOW - timedelta(days=365)
    affected = segments_events_dropped(
        created_from=month_end - timedelta(days=31), created_to=month_end, now=NOW
    )
    keys = set(Segment.objects.filter(pk__in=affected).values_list("key", flat=True))
    assert keys == {"p400", "all_time"}
    assert set(Segment.objects.filter(status="building").values_list("key", flat=True)) == keys


def test_deleting_a_customer_takes_them_out_of_every_segment_and_the_counts(
    api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
    django_capture_on_commit_callbacks: Any,
) -> None:
    buyers = make_segment("buyers", bought(1, "P30D"))
    exits = workflow_create(
        data=WorkflowInput(name="hi", trigger_segments=[{"segment": "buyers", "on": "exited"}])
    )
    for name in ("alice", "bob"):
        ingest(customer=name)
    alice = Customer.objects.get(external_id="alice")
    assert SegmentCheck.objects.filter(customer=alice).exists()

    customer_delete(customer=alice)

    assert members(buyers) == ["bob"]
    listed = api.get(f"{API}/segments/buyers/members").json()["data"]
    assert [m["external_id"] for m in listed["members"]] == ["bob"]
    assert api.get(f"{API}/segments/buyers").json()["data"]["member_count"] == 1
    assert not SegmentCheck.objects.filter(customer_id=alice.pk).exists()
    # Nobody is left to run a workflow for: no exit trigger fires.
    assert not WorkflowRun.objects.filter(workflow=exits).exists()
    # A broadcast started afterwards reaches the members that are left.
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"{API}/segments/buyers/broadcast",
            {"workflow_id": exits.pk, "broadcast_key": "after-delete"},
            format="json",
        )
    assert response.status_code == 202
    assert SegmentBroadcast.objects.get().members_done == 1
