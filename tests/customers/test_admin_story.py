"""A customer's story on their admin page: events with key property values, the workflow
runs and webhook deliveries under them, segment entries and exits; newest first, paged
by keyset, at a fixed number of queries per page."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.utils import timezone

from automation.segments.models import Segment, SegmentMembership
from automation.webhooks.models import Delivery
from automation.workflows.models import Workflow, WorkflowRun
from customers.admin import CustomerAdmin
from customers.models import Customer
from customers.timeline import TimelineCursor, customer_timeline
from tests.admin_support import get_with_queries, marketer_client
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = "/admin/customers/customer/"


@pytest.fixture
def marketer() -> Client:
    return marketer_client(["customers.view_customer", "events_app.view_event"])


def story_page(client: Client, customer: Customer, query: str = ""):
    response = client.get(f"{CUSTOMERS}{customer.pk}/change/{query}")
    assert response.status_code == 200
    return response


def test_story_shows_events_with_their_runs_deliveries_and_property_values(
    marketer, customer_history
):
    customer = customer_history("157613", events=2)
    run = WorkflowRun.objects.get(customer=customer, event__property_records__property_value="1")
    delivery = Delivery.objects.get(event_id=run.event_id)

    response = story_page(marketer, customer)

    entries = response.context["story"]
    assert [entry.kind for entry in entries] == ["event", "event"]
    (entry,) = [entry for entry in entries if entry.key == run.event_id]
    assert entry.facts == [("amount", "1"), ("currency", "EUR")]
    assert [(d.kind, d.status) for d in entry.details] == [
        ("workflow run", run.status),
        ("webhook delivery", delivery.status),
    ]
    text = unescape(response.text)
    assert "workflow “every purchase”" in text
    assert f'href="/admin/automation/workflowrun/{run.pk}/change/"' in text
    assert f'href="/admin/automation/delivery/{delivery.pk}/change/"' in text


def test_story_places_segment_entries_and_exits_in_time_order(marketer):
    customer = CustomerFactory()
    now = timezone.now()
    vip = Segment.objects.create(key="vip", name="VIPs", status=Segment.Status.READY)
    first = EventFactory(customer=customer, created_at=now - timedelta(hours=3))
    SegmentMembership.objects.create(
        segment=vip,
        customer=customer,
        entered_at=now - timedelta(hours=2),
        exited_at=now - timedelta(minutes=30),
    )
    second = EventFactory(customer=customer, created_at=now - timedelta(hours=1))

    response = story_page(marketer, customer)

    assert [(e.kind, e.title) for e in response.context["story"]] == [
        ("left segment", "VIPs"),
        ("event", second.event_type.key + f" · ref {second.external_id}"),
        ("entered segment", "VIPs"),
        ("event", first.event_type.key + f" · ref {first.external_id}"),
    ]


def test_older_links_walk_the_whole_story_once_newest_first(marketer, monkeypatch):
    customer = CustomerFactory()
    now = timezone.now()
    segment = Segment.objects.create(key="s", name="S", status=Segment.Status.READY)
    # Events sharing instants with each other and with a segment entry.
    events = [
        EventFactory(customer=customer, created_at=now - timedelta(minutes=n // 2))
        for n in range(7)
    ]
    stay = SegmentMembership.objects.create(
        segment=segment, customer=customer, entered_at=now - timedelta(minutes=1),
        exited_at=now,
    )  # fmt: skip
    EventFactory()  # another customer's
    monkeypatch.setattr(CustomerAdmin, "story_page_size", 3)

    response = story_page(marketer, customer)
    seen = [(e.source, e.key) for e in response.context["story"]]
    pages = 1
    while response.context["story_older_url"]:
        older = response.context["story_older_url"].split("?", 1)[1].split("#")[0]
        response = story_page(marketer, customer, "?" + older)
        seen += [(e.source, e.key) for e in response.context["story"]]
        pages += 1

    expected = sorted(
        [(e.created_at, "event", e.pk) for e in events]
        + [(stay.entered_at, "segment_entered", f"{stay.pk:020d}")]
        + [(stay.exited_at, "segment_exited", f"{stay.pk:020d}")],
        reverse=True,
    )
    assert seen == [(source, key) for _, source, key in expected]
    assert pages == 3
    assert response.context["story_newest_url"] == f"{CUSTOMERS}{customer.pk}/change/#story"


def test_a_story_page_costs_the_same_queries_for_a_busy_customer(marketer, customer_history):
    quiet = customer_history("quiet", events=2)
    busy = customer_history("busy", events=60)

    _, quiet_queries = get_with_queries(marketer, f"{CUSTOMERS}{quiet.pk}/change/")
    busy_response, busy_queries = get_with_queries(marketer, f"{CUSTOMERS}{busy.pk}/change/")

    assert len(busy_response.context["story"]) == CustomerAdmin.story_page_size
    assert len(busy_queries) == len(quiet_queries)


@pytest.mark.parametrize("token", ["garbage", "eyJ4IjogMX0", "WyJub3QgYSB0aW1lIiwgImEiLCAiYiJd"])
def test_a_hand_made_older_link_shows_the_newest_page(marketer, token):
    customer = CustomerFactory()
    event = EventFactory(customer=customer)

    response = story_page(marketer, customer, f"?story_after={token}")

    assert [e.key for e in response.context["story"]] == [event.pk]


def test_story_is_left_out_for_staff_who_cannot_view_events(db):
    viewer = marketer_client(["customers.view_customer"], username="viewer")
    customer = CustomerFactory()
    EventFactory(customer=customer)

    response = story_page(viewer, customer)

    assert "story" not in response.context
    assert 'id="story"' not in response.text


def test_cursor_round_trips_and_refuses_what_it_did_not_make():
    cursor = TimelineCursor(timezone.now(), "event", "01a2")

    assert TimelineCursor.decode(cursor.encode()) == cursor
    assert TimelineCursor.decode("") is None
    assert customer_timeline(customer_id="nobody", after=cursor).entries == []


def test_story_shows_runs_a_segment_entry_started_as_entries_of_their_own(marketer):
    customer = CustomerFactory()
    now = timezone.now()
    vip = Segment.objects.create(key="vip", name="VIPs", status=Segment.Status.READY)
    stay = SegmentMembership.objects.create(
        segment=vip, customer=customer, entered_at=now - timedelta(hours=2)
    )
    workflow = Workflow.objects.create(name="welcome vips", trigger_segments=[])
    run = WorkflowRun.objects.create(
        workflow=workflow,
        customer=customer,
        segment_membership=stay,
        segment_on="entered",
        trigger={"segment": "vip", "on": "entered"},
        status=WorkflowRun.Status.SUCCEEDED,
        created_at=now - timedelta(hours=1),
    )

    response = story_page(marketer, customer)

    assert [(e.kind, e.title, e.status) for e in response.context["story"]] == [
        ("workflow run", "workflow “welcome vips” (entered segment “vip”)", run.status),
        ("entered segment", "VIPs", ""),
    ]
    assert f'href="/admin/automation/workflowrun/{run.pk}/change/"' in response.text
