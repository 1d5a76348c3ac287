"""The delivery policy admin: typed quiet hours, errors at their field, saves through the
services; the workflow form's policy dropdown."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from automation.workflows.models import Workflow
from automation.workflows.policies.models import DeliveryPolicy
from automation.workflows.policies.services import delivery_policy_create
from events_app.models import EventType

pytestmark = pytest.mark.django_db

ADD = "/admin/automation/deliverypolicy/add/"


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def form(**overrides: Any) -> dict[str, Any]:
    return {
        "key": "default",
        "on_blocked": "defer",
        "caps": json.dumps([{"count": 3, "window": "P7D", "actions": ["webhook"]}]),
        "quiet_start": "21:00",
        "quiet_end": "08:00",
        "timezone_attribute": "timezone",
        "default_timezone": "Europe/Prague",
        **overrides,
    }


def test_a_policy_made_in_the_admin_is_stored_with_typed_quiet_hours(staff: Client) -> None:
    assert staff.get(ADD).status_code == 200
    response = staff.post(ADD, form())
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = DeliveryPolicy.objects.get()
    assert policy.quiet_hours == {
        "start": "21:00",
        "end": "08:00",
        "timezone_attribute": "timezone",
        "default_timezone": "Europe/Prague",
    }
    assert policy.on_blocked == "defer"
    page = staff.get(f"/admin/automation/deliverypolicy/{policy.pk}/change/")
    assert 'value="21:00"' in page.content.decode()
    listing = staff.get("/admin/automation/deliverypolicy/").content.decode()
    assert "3 webhook per P7D" in listing


def test_an_invalid_policy_shows_the_error_at_its_field_and_stores_nothing(
    staff: Client,
) -> None:
    response = staff.post(ADD, form(quiet_end="21:00", default_timezone="Mars/Base"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"quiet_end", "default_timezone"}
    assert DeliveryPolicy.objects.count() == 0


def test_the_workflow_form_offers_the_policies(staff: Client) -> None:
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    policy = delivery_policy_create(data={"key": "weekly"})
    page = staff.get("/admin/automation/workflow/add/").content.decode()
    assert 'name="delivery_policy"' in page
    assert ">weekly<" in page
    response = staff.post(
        "/admin/automation/workflow/add/",
        {
            "name": "Admin made",
            "trigger_event_types": [purchase.pk],
            "conditions": json.dumps({}),
            "actions": json.dumps([{"type": "add_tags", "tags": ["big"]}]),
            "active": "on",
            "reentry": "every_event",
            "delivery_policy": policy.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Workflow.objects.get().delivery_policy_id == policy.pk
