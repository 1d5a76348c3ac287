"""A segment's admin page: members over time, the preview while editing, the members list's
search and its CSV export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client

from automation.segments.member_lists import EXPORT_CHUNK
from automation.segments.models import Segment, SegmentMembership
from automation.segments.trends import segment_member_trend
from customers.models import Customer
from events_app.models import Event, EventType
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

ADMIN = "/admin/automation/"
NOW = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
BUYERS = {"count": {"event_type": "purchase"}, "op": "gte", "value": 1}


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def stay(segment: Segment, customer: Customer, entered: datetime, exited: datetime | None) -> None:
    SegmentMembership.objects.create(
        segment=segment, customer=customer, entered_at=entered, exited_at=exited
    )


def test_trend_counts_members_at_each_days_end_in_one_query(
    make_segment: Callable[..., Segment], purchase: EventType, django_assert_num_queries: Any
) -> None:
    segment = make_segment("buyers", BUYERS)
    a, b, c, d = CustomerFactory.create_batch(4)
    day = timedelta(days=1)
    stay(segment, a, NOW - 90 * day, None)  # before the window, still in
    stay(segment, b, NOW - 5 * day, NOW - 2 * day)  # in and out inside the window
    stay(segment, c, NOW - 2 * day, None)
    stay(segment, d, NOW - 40 * day, NOW - 3 * day)  # entered before, left inside
    stay(segment, d, NOW - 1 * day, None)
    with django_assert_num_queries(1):
        trend = segment_member_trend(segment_id=segment.pk, days=7, now=NOW)
    assert [(t.day.isoformat(), t.members, t.entered, t.exited) for t in trend] == [
        ("2026-03-25", 2, 0, 0),
        ("2026-03-26", 3, 1, 0),
        ("2026-03-27", 3, 0, 0),
        ("2026-03-28", 2, 0, 1),
        ("2026-03-29", 2, 1, 1),
        ("2026-03-30", 3, 1, 0),
        ("2026-03-31", 3, 0, 0),
    ]


def test_segment_page_shows_the_trend_numbers_and_the_member_links(
    staff: Client, make_segment: Callable[..., Segment], purchase: EventType
) -> None:
    segment = make_segment("buyers", BUYERS)
    stay(segment, CustomerFactory(), NOW - timedelta(days=1), None)
    with time_machine.travel(NOW, tick=False):
        page = staff.get(f"{ADMIN}segment/{segment.pk}/change/").content.decode()
    assert '<tr data-day="2026-03-30" data-members="1" data-entered="1" data-exited="0">' in page
    assert '<tr data-day="2026-03-02" data-members="0" data-entered="0" data-exited="0">' in page
    assert f'href="{ADMIN}segment/{segment.pk}/members.csv"' in page
    assert f'href="{ADMIN}segmentmembership/?segment={segment.pk}&amp;stay=current"' in page
    assert "herald/vendor/chart.js/chart.umd.min.js" in page
    assert "<script>" not in page  # the Content-Security-Policy allows no inline script


def test_preview_counts_a_changed_condition_without_storing_it(
    staff: Client,
    make_segment: Callable[..., Segment],
    ingest: Callable[..., Event],
    purchase: EventType,
    login: EventType,
) -> None:
    segment = make_segment("buyers", BUYERS)
    ingest(customer="alice")
    ingest(customer="bob")
    ingest(event_type="login", customer="carol")
    before = (Segment.objects.count(), SegmentMembership.objects.count())
    response = staff.post(
        f"{ADMIN}segment/preview/",
        json.dumps({"condition": {"count": {"event_type": "login"}, "op": "gte", "value": 1}}),
        content_type="application/json",
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["member_count"] == 1
    assert [c["external_id"] for c in data["sample"]] == ["carol"]
    assert (Segment.objects.count(), SegmentMembership.objects.count()) == before
    segment.refresh_from_db()
    assert segment.condition == BUYERS


def test_preview_names_the_faulty_node_with_400(staff: Client, purchase: EventType) -> None:
    response = staff.post(
        f"{ADMIN}segment/preview/",
        json.dumps({"condition": {"all": [{"last": "purchase", "op": "soon", "value": "P1D"}]}}),
        content_type="application/json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == {"condition.all[0].op": ["Must be one of: more_than, within."]}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"condition": [1]}'])
def test_preview_refuses_a_body_that_is_not_a_condition(staff: Client, body: bytes) -> None:
    response = staff.post(f"{ADMIN}segment/preview/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_preview_and_export_are_refused_without_permission(
    client: Client, make_segment: Callable[..., Segment], purchase: EventType
) -> None:
    segment = make_segment("buyers", BUYERS)
    user = User.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_segmentmembership"))
    client.force_login(user)
    condition = json.dumps({"condition": BUYERS})
    preview = client.post(f"{ADMIN}segment/preview/", condition, content_type="application/json")
    export = client.get(f"{ADMIN}segment/{segment.pk}/members.csv")
    assert (preview.status_code, export.status_code) == (403, 403)


def test_export_streams_the_current_members_as_csv(
    staff: Client, make_segment: Callable[..., Segment], purchase: EventType
) -> None:
    segment = make_segment("buyers", BUYERS)
    first = CustomerFactory(external_id="=HYPERLINK(1)", email="first@example.com")
    second = CustomerFactory(external_id="second", email="second@example.com")
    gone = CustomerFactory(external_id="gone")
    stay(segment, first, NOW - timedelta(days=2), None)
    stay(segment, second, NOW - timedelta(days=1), None)
    stay(segment, gone, NOW - timedelta(days=3), NOW - timedelta(days=1))
    response = staff.get(f"{ADMIN}segment/{segment.pk}/members.csv")
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    assert 'filename="segment-buyers-members-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [
        ["customer_id", "external_id", "email", "entered_at"],
        [first.pk, "'=HYPERLINK(1)", "first@example.com", (NOW - timedelta(days=2)).isoformat()],
        [second.pk, "second", "second@example.com", (NOW - timedelta(days=1)).isoformat()],
    ]


def test_export_reads_more_members_than_one_chunk(
    staff: Client, make_segment: Callable[..., Segment], purchase: EventType
) -> None:
    segment = make_segment("buyers", BUYERS)
    customers = CustomerFactory.create_batch(EXPORT_CHUNK + 3)
    SegmentMembership.objects.bulk_create(
        SegmentMembership(segment=segment, customer=c, entered_at=NOW) for c in customers
    )
    response = staff.get(f"{ADMIN}segment/{segment.pk}/members.csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1 + EXPORT_CHUNK + 3
    assert {line.split(",")[0] for line in lines[1:]} == {c.pk for c in customers}


def test_members_search_by_external_id_or_email_prefix_and_export_follows(
    staff: Client, make_segment: Callable[..., Segment], purchase: EventType
) -> None:
    segment = make_segment("buyers", BUYERS)
    anna = CustomerFactory(external_id="crm-anna", email="anna@shop.example")
    anton = CustomerFactory(external_id="crm-anton", email="toni@shop.example")
    bert = CustomerFactory(external_id="bert", email="bert@other.example")
    for customer in (anna, anton, bert):
        stay(segment, customer, NOW, None)
    stay(make_segment("other", BUYERS), bert, NOW, None)

    def found(term: str) -> list[str]:
        response = staff.get(
            f"{ADMIN}segmentmembership/", {"segment": segment.pk, "stay": "current", "q": term}
        )
        return sorted(m.customer.external_id for m in response.context["cl"].result_list)

    assert found("crm-an") == ["crm-anna", "crm-anton"]
    assert found("toni@") == ["crm-anton"]
    assert found("bert") == ["bert"]
    assert found(anna.pk) == ["crm-anna"]
    assert found("nobody") == []
    page = staff.get(
        f"{ADMIN}segmentmembership/", {"segment": segment.pk, "stay": "current", "q": "crm-an"}
    ).content.decode()
    assert f'href="{ADMIN}segment/{segment.pk}/members.csv?q=crm-an"' in page
    export = staff.get(f"{ADMIN}segment/{segment.pk}/members.csv", {"q": "crm-an"})
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert sorted(line.split(",")[1] for line in lines[1:]) == ["crm-anna", "crm-anton"]
