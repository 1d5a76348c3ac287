"""The workflows API: envelope, error shape, validation by path, runs and the dry-run test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.due import due_events_process_and_run
from automation.workflows.models import Workflow, WorkflowRun
from customers.models import Customer, CustomerAlias
from events_app.models import Event
from tests.conftest import API

pytestmark = pytest.mark.django_db

URL = f"{API}/workflows"
BODY = {
    "workflow": {
        "name": "Big spenders",
        "trigger_event_types": ["purchase"],
        "conditions": {"all": [{"property": "amount", "op": "gte", "value": 100}]},
        "actions": [{"type": "add_tags", "tags": ["big"]}],
        "reentry": "once_per_customer_per:P7D",
    }
}


def create(api: APIClient, body: dict[str, Any] = BODY) -> str:
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    return str(response.json()["data"]["workflow_id"])


def test_create_returns_201_with_the_id_and_get_shows_the_workflow(
    api: APIClient, purchase: Any
) -> None:
    workflow_id = create(api)
    response = api.get(f"{URL}/{workflow_id}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {
        k: data[k]
        for k in (
            "workflow_id",
            "name",
            "trigger_event_types",
            "conditions",
            "actions",
            "active",
            "reentry",
            "version",
        )
    } == {
        "workflow_id": workflow_id,
        "name": "Big spenders",
        "trigger_event_types": ["purchase"],
        "conditions": BODY["workflow"]["conditions"],
        "actions": BODY["workflow"]["actions"],
        "active": True,
        "reentry": "once_per_customer_per:P7D",
        "version": 1,
    }
    assert data["trigger_event_type_ids"] == [purchase.pk]


def test_invalid_tree_is_a_400_pointing_at_the_faulty_node_and_stores_nothing(
    api: APIClient, purchase: Any
) -> None:
    body = {
        "workflow": {
            **BODY["workflow"],
            "conditions": {
                "all": [
                    {"property": "amount", "op": "gte", "value": 1},
                    {"property": "x", "op": "bigger", "value": 2},
                ]
            },
            "actions": [{"type": "wait", "duration": "tomorrow"}],
            "trigger_event_types": ["nope"],
        }
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "Bad Request"
    assert payload["statusCode"] == 400
    assert sorted(payload["details"]) == [
        "actions[0].duration",
        "conditions.all[1].op",
        "trigger_event_types[0]",
    ]
    assert payload["message"].startswith("Invalid workflow: trigger_event_types[0]: Unknown")
    assert Workflow.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "non_field_errors"),  # not wrapped in {"workflow": …}
        ({"workflow": {"name": "x", "colour": 1}}, "workflow"),
        ({"workflow": {"name": 5}}, "workflow.name"),
        ({"workflow": {**BODY["workflow"], "reentry": "sometimes"}}, "reentry"),
        ({"workflow": {**BODY["workflow"], "actions": [{"type": "teleport"}]}}, "actions[0].type"),
        ({"workflow": {**BODY["workflow"], "name": ""}}, "workflow.name"),
    ],
)
def test_malformed_bodies_are_400_in_the_one_error_shape(
    api: APIClient, purchase: Any, body: dict[str, Any], field: str
) -> None:
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    details = response.json()["details"]
    assert any(key.startswith(field) for key in details), details
    assert Workflow.objects.count() == 0


def test_list_pages_and_sorts_and_filters_active(api: APIClient, purchase: Any) -> None:
    ids = [create(api, {"workflow": {**BODY["workflow"], "name": f"w{i}"}}) for i in range(3)]
    api.post(f"{URL}/{ids[0]}/deactivate")
    response = api.get(URL, {"sort_field": "name", "sort_direction": "ASC", "count": 2})
    data = response.json()["data"]
    assert [w["name"] for w in data["workflows"]] == ["w0", "w1"]
    assert data["total_items"] == 3
    active = api.get(URL, {"active": "true"}).json()["data"]
    assert sorted(w["name"] for w in active["workflows"]) == ["w1", "w2"]
    assert api.get(URL, {"colour": "red"}).status_code == 400
    assert api.get(URL, {"active": "maybe"}).status_code == 400


def test_patch_changes_given_fields_and_bumps_the_version(api: APIClient, purchase: Any) -> None:
    workflow_id = create(api)
    response = api.patch(f"{URL}/{workflow_id}", {"workflow": {"name": "Renamed"}}, format="json")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["name"], data["version"], data["conditions"]) == (
        "Renamed",
        2,
        BODY["workflow"]["conditions"],
    )
    bad = api.patch(
        f"{URL}/{workflow_id}", {"workflow": {"conditions": {"any": []}}}, format="json"
    )
    assert bad.status_code == 400
    assert list(bad.json()["details"]) == ["conditions.any"]
    assert Workflow.objects.get().name == "Renamed"


def test_activate_deactivate_and_delete(api: APIClient, purchase: Any) -> None:
    workflow_id = create(api)
    assert api.post(f"{URL}/{workflow_id}/deactivate").json()["data"]["active"] is False
    assert api.post(f"{URL}/{workflow_id}/activate").json()["data"]["active"] is True
    deleted = api.delete(f"{URL}/{workflow_id}")
    assert deleted.status_code == 200
    assert deleted.json()["data"]["workflow_id"] == workflow_id
    missing = api.get(f"{URL}/{workflow_id}")
    assert missing.status_code == 404
    assert missing.json()["message"] == f"Workflow '{workflow_id}' not found."


def test_runs_lists_the_workflows_runs_with_status_filter(
    api: APIClient, purchase: Any, ingest: Callable[..., Event]
) -> None:
    workflow_id = create(api)
    event = ingest(records={"amount": 150})
    due_events_process_and_run(event_ids=[event.pk])
    response = api.get(f"{URL}/{workflow_id}/runs")
    data = response.json()["data"]
    assert data["total_items"] == 1
    run = data["workflow_runs"][0]
    assert (run["event_id"], run["status"], run["position"], run["error"]) == (
        event.pk,
        "succeeded",
        1,
        "",
    )
    assert run["outcomes"][0]["detail"] == {"tags": ["big"]}
    assert (
        api.get(f"{URL}/{workflow_id}/runs", {"status": "failed"}).json()["data"]["total_items"]
        == 0
    )
    assert api.get(f"{URL}/{workflow_id}/runs", {"status": "odd"}).status_code == 400


def test_test_endpoint_explains_a_stored_event_without_firing(
    api: APIClient, purchase: Any, ingest: Callable[..., Event]
) -> None:
    workflow_id = create(api)
    event = ingest(records={"amount": 150})
    response = api.post(f"{URL}/{workflow_id}/test", {"event_id": event.pk}, format="json")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["matched"], data["triggered"], data["event_id"]) == (True, True, event.pk)
    assert data["leaves"] == [
        {
            "path": "conditions.all[0]",
            "property": "amount",
            "op": "gte",
            "expected": 100,
            "actual": 150,
            "missing": False,
            "matched": True,
        }
    ]
    assert WorkflowRun.objects.count() == 0
    assert Customer.objects.get(pk=event.customer_id).tags == []


def test_test_endpoint_explains_an_inline_event_and_stores_nothing(
    api: APIClient, purchase: Any
) -> None:
    workflow_id = create(api)
    Customer.objects.create(external_id="alice")
    body = {
        "event": {"event_type": "purchase", "customer_external_id": "alice"},
        "property_records": [{"property_id": "amount", "property_value": "99.5"}],
    }
    response = api.post(f"{URL}/{workflow_id}/test", body, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["matched"], data["event_id"]) == (False, None)
    assert data["leaves"][0]["actual"] == 99.5
    assert Event.objects.count() == 0


def test_test_endpoint_finds_the_customer_by_an_anonymous_id_or_an_alias(
    api: APIClient, purchase: Any
) -> None:
    workflow_id = create(api)
    visitor = Customer.objects.create(external_id=None, anonymous_id="visitor-1")
    CustomerAlias.objects.create(customer=visitor, kind="external", value="crm-1")

    answers = [
        api.post(
            f"{URL}/{workflow_id}/test",
            {"event": {"event_type": "purchase", **customer}},
            format="json",
        )
        for customer in ({"anonymous_id": "visitor-1"}, {"customer_external_id": "crm-1"})
    ]

    assert [a.status_code for a in answers] == [200, 200], [a.json() for a in answers]
    assert (Customer.objects.count(), Event.objects.count()) == (1, 0)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "event_id"),
        ({"event_id": "0" * 26}, 404, None),
        (
            {"event": {"event_type": "purchase", "customer_external_id": "nobody"}},
            400,
            "event.customer_external_id",
        ),
        (
            {"event": {"event_type": "purchase", "anonymous_id": "visitor-nobody"}},
            400,
            "event.anonymous_id",
        ),
        (
            {
                "event": {"event_type": "purchase", "customer_external_id": "alice"},
                "property_records": [{"property_id": "amount", "property_value": "lots"}],
            },
            400,
            "property_records[0].property_value",
        ),
    ],
)
def test_test_endpoint_rejects_bad_input(
    api: APIClient, purchase: Any, body: dict[str, Any], status: int, field: str | None
) -> None:
    workflow_id = create(api)
    Customer.objects.create(external_id="alice")
    customers = Customer.objects.count()
    response = api.post(f"{URL}/{workflow_id}/test", body, format="json")
    assert response.status_code == status, response.json()
    if field:
        assert field in response.json()["details"]
    assert Customer.objects.count() == customers
    assert Event.objects.count() == 0


def test_read_only_key_cannot_create(make_api: Callable[..., APIClient], purchase: Any) -> None:
    response = make_api("read").post(URL, BODY, format="json")
    assert response.status_code == 403
    assert Workflow.objects.count() == 0
