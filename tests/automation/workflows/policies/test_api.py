"""The delivery policies API: CRUD by id or key, refusals that write nothing, 409 while a
workflow uses a policy, the workflow's delivery_policy field and the test endpoint's
verdicts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.workflows.models import Workflow
from automation.workflows.policies.models import DeliveryPolicy
from events_app.models import Event, EventType
from project.audit.models import AuditEntry
from tests.automation.workflows.policies.conftest import HOOK, QUIET
from tests.conftest import API

pytestmark = pytest.mark.django_db

URL = f"{API}/delivery-policies"
CAPS = [{"count": 3, "window": "P7D", "actions": ["webhook"]}]


def body(key: str = "default", **fields: Any) -> dict[str, Any]:
    return {
        "policy": {"key": key, "caps": CAPS, "quiet_hours": QUIET, "on_blocked": "defer", **fields}
    }


def create(api: APIClient, key: str = "default", **fields: Any) -> dict[str, Any]:
    response = api.post(URL, body(key, **fields), format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json()["data"])


def test_create_answers_201_and_the_policy_reads_back_by_id_and_by_key(
    contract_api: APIClient,
) -> None:
    created = create(contract_api)
    assert {k: created[k] for k in ("key", "caps", "quiet_hours", "on_blocked")} == body()["policy"]
    by_id = contract_api.get(f"{URL}/{created['delivery_policy_id']}").json()["data"]
    by_key = contract_api.get(f"{URL}/default").json()["data"]
    assert by_id == by_key == created
    assert AuditEntry.objects.filter(object_type="delivery_policy", action="created").count() == 1


def test_list_counts_pages_and_sorts(contract_api: APIClient) -> None:
    for key in ("b", "a", "c"):
        create(contract_api, key)
    response = contract_api.get(
        URL, {"count": 2, "offset": 0, "sort_field": "key", "sort_direction": "asc"}
    )
    data = response.json()["data"]
    assert data["total_items"] == 3
    assert [p["key"] for p in data["delivery_policies"]] == ["a", "b"]
    desc = contract_api.get(URL, {"sort_field": "key", "sort_direction": "desc"}).json()["data"]
    assert [p["key"] for p in desc["delivery_policies"]] == ["c", "b", "a"]


def test_patch_changes_given_fields_and_put_replaces_the_policy(
    contract_api: APIClient, api: APIClient
) -> None:
    create(contract_api)
    patched = contract_api.patch(
        f"{URL}/default", {"policy": {"on_blocked": "skip"}}, format="json"
    ).json()["data"]
    assert (patched["on_blocked"], patched["caps"], patched["quiet_hours"]) == (
        "skip",
        CAPS,
        QUIET,
    )
    # `api`: the document's nullable $ref is not understood by the contract checker.
    cleared = api.patch(f"{URL}/default", {"policy": {"quiet_hours": None}}, format="json").json()[
        "data"
    ]
    assert cleared["quiet_hours"] is None
    replaced = contract_api.put(
        f"{URL}/default", {"policy": {"key": "weekly", "caps": CAPS}}, format="json"
    )
    assert replaced.status_code == 200, replaced.json()
    assert {k: replaced.json()["data"][k] for k in ("key", "quiet_hours", "on_blocked")} == {
        "key": "weekly",
        "quiet_hours": None,
        "on_blocked": "skip",
    }
    assert contract_api.put(f"{URL}/weekly", {"policy": {}}, format="json").status_code == 400


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"quiet_hours": {**QUIET, "end": "21:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {**QUIET, "default_timezone": "Europe/Atlantis"}}, "default_timezone"),
        ({"quiet_hours": {**QUIET, "default_timezone": "Europe/\u0000Prague"}}, "default_timezone"),
        ({"quiet_hours": {**QUIET, "start": "25:00"}}, "start"),
        ({"caps": [{"count": 0, "window": "P7D", "actions": ["webhook"]}]}, "count"),
        ({"caps": [{"count": 10**30, "window": "P7D", "actions": ["webhook"]}]}, "count"),
        ({"caps": [{"count": 3, "window": "P1M", "actions": ["webhook"]}]}, "caps[0].window"),
        ({"caps": [{"count": 3, "window": "P7D", "actions": ["fax"]}]}, "caps[0].actions"),
        ({"on_blocked": "later"}, "on_blocked"),
        ({"colour": "red"}, "policy"),
    ],
)
def test_invalid_policies_are_400_in_the_one_error_shape_and_store_nothing(
    contract_api: APIClient, fields: dict[str, Any], path: str
) -> None:
    audited = AuditEntry.objects.count()
    response = contract_api.post(URL, body(**fields), format="json")
    assert response.status_code == 400, response.json()
    details = response.json()["details"]
    assert any(path in key for key in details), details
    assert DeliveryPolicy.objects.count() == 0
    assert AuditEntry.objects.count() == audited


def test_a_second_policy_with_the_same_key_is_409(contract_api: APIClient) -> None:
    create(contract_api)
    response = contract_api.post(URL, body(), format="json")
    assert response.status_code == 409
    assert DeliveryPolicy.objects.count() == 1


def test_deleting_a_policy_a_workflow_uses_is_409_and_deletes_nothing(
    contract_api: APIClient, allow_loopback: None
) -> None:
    EventType.objects.create(key="purchase", name="Purchase")
    create(contract_api)
    workflow = contract_api.post(
        f"{API}/workflows",
        {
            "workflow": {
                "name": "Receipts",
                "trigger_event_types": ["purchase"],
                "actions": [{"type": "webhook", "url": HOOK, "exempt_from_policy": True}],
                "delivery_policy": "default",
            }
        },
        format="json",
    )
    assert workflow.status_code == 201, workflow.json()
    workflow_id = workflow.json()["data"]["workflow_id"]
    assert (
        contract_api.get(f"{API}/workflows/{workflow_id}").json()["data"]["delivery_policy"]
        == "default"
    )
    response = contract_api.delete(f"{URL}/default")
    assert response.status_code == 409
    assert workflow_id in response.json()["message"]
    assert DeliveryPolicy.objects.count() == 1
    # Without the policy, the delete goes through.
    patched = contract_api.patch(
        f"{API}/workflows/{workflow_id}", {"workflow": {"delivery_policy": None}}, format="json"
    )
    assert patched.json()["data"]["delivery_policy"] is None
    assert contract_api.delete(f"{URL}/default").status_code == 200
    assert DeliveryPolicy.objects.count() == 0
    assert contract_api.get(f"{URL}/default").status_code == 404


def test_a_workflow_naming_an_unknown_policy_or_a_bad_exempt_flag_is_400(
    api: APIClient, allow_loopback: None
) -> None:
    EventType.objects.create(key="purchase", name="Purchase")
    base = {"name": "x", "trigger_event_types": ["purchase"]}
    unknown = api.post(
        f"{API}/workflows", {"workflow": {**base, "delivery_policy": "nope"}}, format="json"
    )
    assert unknown.status_code == 400
    assert "delivery_policy" in unknown.json()["details"]
    bad_flag = api.post(
        f"{API}/workflows",
        {
            "workflow": {
                **base,
                "actions": [{"type": "webhook", "url": HOOK, "exempt_from_policy": "yes"}],
            }
        },
        format="json",
    )
    assert bad_flag.status_code == 400
    assert "actions[0].exempt_from_policy" in bad_flag.json()["details"]
    assert Workflow.objects.count() == 0


def test_the_workflow_test_endpoint_shows_the_policys_verdict_for_each_action(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    allow_loopback: None,
) -> None:
    create(contract_api, on_blocked="defer")
    workflow_id = contract_api.post(
        f"{API}/workflows",
        {
            "workflow": {
                "name": "Hooks",
                "trigger_event_types": ["purchase"],
                "actions": [
                    {"type": "webhook", "url": HOOK},
                    {"type": "webhook", "url": HOOK, "exempt_from_policy": True},
                ],
                "delivery_policy": "default",
            }
        },
        format="json",
    ).json()["data"]["workflow_id"]
    event = ingest()
    with time_machine.travel(datetime(2026, 12, 7, 22, 0, tzinfo=UTC), tick=False):
        response = contract_api.post(
            f"{API}/workflows/{workflow_id}/test", {"event_id": event.pk}, format="json"
        )
    assert response.status_code == 200, response.json()
    policy = response.json()["data"]["policy"]
    assert policy["key"] == "default"
    assert policy["actions"] == [
        {
            "index": 0,
            "type": "webhook",
            "status": "deferred",
            "reason": "deferred to 2026-12-08T08:00:00+01:00 (quiet hours, Europe/Prague)",
            "resume_at": "2026-12-08T08:00:00+01:00",
        },
        {"index": 1, "type": "webhook", "status": "allowed", "reason": "exempt from the policy"},
    ]
