"""Segment admin: the list with member counts, saves through the services with the
condition's problems shown at their path, memberships per segment and per customer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from automation.segments.models import Segment
from customers.models import Customer
from events_app.models import Event, EventType

pytestmark = pytest.mark.django_db

ADMIN = "/admin/automation/"


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_list_shows_member_counts_linking_to_the_members(
    staff: Client,
    purchase: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
) -> None:
    segment = make_segment("buyers", {"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    ingest(customer="alice")
    ingest(customer="bob")
    page = staff.get(f"{ADMIN}segment/").content.decode()
    assert (
        f'<a href="{ADMIN}segmentmembership/?segment={segment.pk}&amp;stay=current">2</a>' in page
    )
    members = staff.get(f"{ADMIN}segmentmembership/", {"segment": segment.pk, "stay": "current"})
    assert members.context["cl"].result_count == 2
    alice = Customer.objects.get(external_id="alice")
    by_customer = staff.get(f"{ADMIN}segmentmembership/", {"q": alice.pk})
    assert [m.customer_id for m in by_customer.context["cl"].result_list] == [alice.pk]


def test_add_saves_through_the_service_and_builds(
    staff: Client,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ingest(customer="alice", background=False)
    condition = {"count": {"event_type": "purchase"}, "op": "gte", "value": 1}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            f"{ADMIN}segment/add/",
            {
                "key": "buyers",
                "name": "Buyers",
                "description": "",
                "condition": json.dumps(condition),
            },
        )
    assert response.status_code == 302
    segment = Segment.objects.get(key="buyers")
    assert (segment.status, segment.condition) == (Segment.Status.READY, condition)
    assert segment.memberships.count() == 1


def test_an_invalid_condition_is_refused_on_the_field_at_its_path(
    staff: Client, purchase: EventType
) -> None:
    response = staff.post(
        f"{ADMIN}segment/add/",
        {
            "key": "bad",
            "name": "Bad",
            "description": "",
            "condition": json.dumps({"all": [{"last": "purchase", "op": "soon", "value": "P1D"}]}),
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["condition"] == [
        "condition.all[0].op: Must be one of: more_than, within."
    ]
    assert not Segment.objects.exists()
