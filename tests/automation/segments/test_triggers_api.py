"""trigger_segments on the wire: accepted beside trigger_event_types, refused at the
faulty item, shown on the workflow; the run's `trigger`; a named segment stays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.segments.models import Segment
from automation.workflows.models import Workflow, WorkflowRun
from events_app.models import Event, EventType
from tests.conftest import API

pytestmark = pytest.mark.django_db

REPEAT = {"count": {"event_type": "purchase"}, "op": "gte", "value": 2}


def workflow(**fields: Any) -> dict[str, Any]:
    return {"workflow": {"name": "On segments", "actions": [], **fields}}


def test_a_workflow_takes_segment_triggers_beside_event_types_and_shows_them(
    contract_api: APIClient, purchase: EventType, make_segment: Callable[..., Segment]
) -> None:
    vip = make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    make_segment("at_risk", REPEAT)
    triggers = [{"segment": "at_risk", "on": "entered"}, {"segment": vip.pk, "on": "exited"}]
    created = contract_api.post(
        f"{API}/workflows",
        workflow(trigger_segments=triggers, trigger_event_types=["purchase"]),
        format="json",
    )
    assert created.status_code == 201, created.json()
    workflow_id = created.json()["data"]["workflow_id"]
    shown = contract_api.get(f"{API}/workflows/{workflow_id}").json()["data"]
    assert shown["trigger_segments"] == triggers
    assert shown["trigger_event_types"] == ["purchase"]

    only_segments = contract_api.post(
        f"{API}/workflows", workflow(trigger_segments=triggers[:1]), format="json"
    )
    assert only_segments.status_code == 201
    patched = contract_api.patch(
        f"{API}/workflows/{workflow_id}", {"workflow": {"trigger_segments": []}}, format="json"
    )
    assert patched.json()["data"]["trigger_segments"] == []


@pytest.mark.parametrize(
    ("fields", "path", "fragment"),
    [
        (
            {
                "trigger_segments": [
                    {"segment": "vip", "on": "entered"},
                    {"segment": "nope", "on": "entered"},
                ]
            },
            "trigger_segments[1].segment",
            "Unknown segment 'nope'",
        ),
        ({}, "trigger_event_types", "Give at least one event type"),
    ],
)
def test_a_bad_trigger_is_a_400_at_the_item_and_writes_nothing(
    api: APIClient,
    make_segment: Callable[..., Segment],
    fields: dict[str, Any],
    path: str,
    fragment: str,
) -> None:
    make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    response = api.post(f"{API}/workflows", workflow(**fields), format="json")
    assert response.status_code == 400
    assert fragment in response.json()["details"][path][0]
    assert Workflow.objects.count() == 0


@pytest.mark.parametrize(
    "trigger",
    [
        {"segment": "vip", "on": "joined"},
        {"segment": "vip"},
        {"segment": "vip", "on": "entered", "extra": 1},
        {"segment": "", "on": "entered"},
        "vip",
    ],
)
def test_a_malformed_trigger_is_a_400(
    api: APIClient, make_segment: Callable[..., Segment], trigger: Any
) -> None:
    make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    response = api.post(f"{API}/workflows", workflow(trigger_segments=[trigger]), format="json")
    assert response.status_code == 400
    assert Workflow.objects.count() == 0


def test_the_run_shows_its_trigger_and_no_event(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
) -> None:
    make_segment("at_risk", REPEAT)
    created = contract_api.post(
        f"{API}/workflows",
        workflow(trigger_segments=[{"segment": "at_risk", "on": "entered"}]),
        format="json",
    )
    workflow_id = created.json()["data"]["workflow_id"]
    ingest(customer="alice")
    ingest(customer="alice")
    (run,) = contract_api.get(f"{API}/workflows/{workflow_id}/runs").json()["data"]["workflow_runs"]
    assert run["trigger"] == {"segment": "at_risk", "on": "entered"}
    assert run["event_id"] is None
    assert run["customer_id"] == WorkflowRun.objects.get().customer_id


def test_a_segment_a_workflow_triggers_on_cannot_be_deleted_or_rekeyed(
    api: APIClient, make_segment: Callable[..., Segment]
) -> None:
    make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    created = api.post(
        f"{API}/workflows",
        workflow(trigger_segments=[{"segment": "vip", "on": "exited"}]),
        format="json",
    )
    workflow_id = created.json()["data"]["workflow_id"]
    deleted = api.delete(f"{API}/segments/vip")
    assert deleted.status_code == 409
    assert workflow_id in deleted.json()["message"]
    rekeyed = api.patch(f"{API}/segments/vip", {"segment": {"key": "vips"}}, format="json")
    assert rekeyed.status_code == 409
    assert Segment.objects.filter(key="vip").exists()
