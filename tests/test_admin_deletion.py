"""The admin's delete flow of models deleted set-based (project.admin.deletion).

For each: the confirmation page counts each kind of row that goes (never a line
per row, the same queries for 1 or 200 of them), and confirming deletes through
the service, exactly that object's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import Model
from django.test import Client

from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.services import endpoint_create
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.models import EventType, PropertyDefinition
from tests.admin_support import get_with_queries
from tests.deletes import (
    PUBLIC_URL,
    a_schedule,
    delivery_log,
    evaluated,
    row_counts,
    schedule_history,
)
from tests.factories import EventTypeFactory

pytestmark = pytest.mark.django_db

TABLES = (
    Endpoint,
    Delivery,
    DeliveryAttempt,
    Schedule,
    ScheduleRun,
    Workflow,
    WorkflowRun,
    EventType,
    PropertyDefinition,
)


def an_endpoint(n: int, capture: Any) -> Model:
    endpoint = endpoint_create(url=PUBLIC_URL)[0]
    delivery_log(endpoint, n)
    return endpoint


def a_workflow(n: int, capture: Any) -> Model:
    trigger = EventTypeFactory(key=f"purchase-{n}")
    workflow = workflow_create(
        data=WorkflowInput(name="w", trigger_event_types=[trigger.key], conditions={}, actions=[])
    )
    evaluated(trigger, n, capture)
    return workflow


def a_schedule_with_runs(n: int, capture: Any) -> Model:
    schedule = a_schedule()
    schedule_history(schedule, n)
    return schedule


def an_event_type(n: int, capture: Any) -> Model:
    event_type = EventTypeFactory(key=f"signup-{n}")
    PropertyDefinition.objects.bulk_create(
        PropertyDefinition(event_type=event_type, property_id=f"p{i}") for i in range(n)
    )
    return event_type


# Per kind: how to build one with n dependents, its admin, the confirmation's
# lines for n, and what the build makes that the delete rightly keeps.
CASES: dict[
    str, tuple[Callable[[int, Any], Model], str, Callable[[int], list[str]], dict[str, int]]
] = {
    "endpoint": (
        an_endpoint,
        "/admin/automation/endpoint/",
        # The link a workflow's endpoint has to its workflow (none for this one).
        lambda n: [f"{n} deliveries", f"{n} delivery attempts", "0 workflow endpoints"],
        {},
    ),
    "workflow": (
        a_workflow,
        "/admin/automation/workflow/",
        # The endpoints of its webhook actions and their log go with it (workflow_delete).
        lambda n: [
            f"{n} workflow runs",
            "0 simulations",
            "0 workflow backfills",
            "0 segment broadcasts",
            "0 endpoints",
            "0 deliveries",
            "0 delivery attempts",
        ],
        {"events_app.EventType": 1},  # the trigger: a workflow's delete keeps its types
    ),
    "schedule": (
        a_schedule_with_runs,
        "/admin/automation/schedule/",
        # The schedule's endpoint and its delivery log go with it (schedule_delete).
        lambda n: [
            f"{n} schedule runs",
            "1 endpoints",
            f"{n} deliveries",
            f"{n} delivery attempts",
            "0 workflow endpoints",
        ],
        {},
    ),
    "event type": (
        an_event_type,
        "/admin/events_app/eventtype/",
        # Refs kept after retention dropped their events go with their type.
        lambda n: [f"{n} property definitions", "0 event refs"],
        {},
    ),
}


@pytest.mark.parametrize("kind", CASES)
def test_confirmation_counts_what_goes_in_the_same_queries_for_1_or_200_rows(
    admin_client: Client, django_capture_on_commit_callbacks: Any, kind: str
):
    build, admin_url, lines, _ = CASES[kind]
    small = build(1, django_capture_on_commit_callbacks)
    big = build(200, django_capture_on_commit_callbacks)

    _, small_queries = get_with_queries(admin_client, f"{admin_url}{small.pk}/delete/")
    page, big_queries = get_with_queries(admin_client, f"{admin_url}{big.pk}/delete/")

    assert page.status_code == 200
    assert page.context["deleted_objects"][1:] == lines(200)
    assert page.context["protected"] == []
    assert len(big_queries) == len(small_queries)


@pytest.mark.parametrize("kind", CASES)
def test_confirming_deletes_exactly_that_object_through_its_service(
    admin_client: Client, django_capture_on_commit_callbacks: Any, kind: str
):
    build, admin_url, _, kept_rows = CASES[kind]
    kept = build(2, django_capture_on_commit_callbacks)
    before = row_counts(*TABLES)
    gone = build(3, django_capture_on_commit_callbacks)

    response = admin_client.post(f"{admin_url}{gone.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert row_counts(*TABLES) == {t: n + kept_rows.get(t, 0) for t, n in before.items()}
    assert type(kept).objects.filter(pk=kept.pk).exists()
