"""Signing secrets of webhook actions: shown on create and on an explicit reveal or rotation
(write scope), never in a list or a read; the list costs the same queries for any number
of workflows with webhook actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.webhooks.models import Endpoint
from automation.workflows.models import Workflow
from tests.conftest import API

pytestmark = pytest.mark.django_db

URL = f"{API}/workflows"
HOOK = "http://127.0.0.1:8599/hook"


def body(name: str = "hooks", urls: tuple[str, ...] = (HOOK,)) -> dict[str, Any]:
    return {
        "workflow": {
            "name": name,
            "trigger_event_types": ["purchase"],
            "actions": [{"type": "webhook", "url": url} for url in urls],
        }
    }


def secrets_of(workflow_id: str) -> dict[str, str]:
    return dict(
        Endpoint.objects.filter(workflow_link__workflow_id=workflow_id).values_list("pk", "secret")
    )


def test_create_answers_with_the_secret_of_each_webhook_endpoint(
    api: APIClient, purchase: Any, allow_loopback: None
) -> None:
    response = api.post(URL, body(urls=(HOOK, HOOK + "2")), format="json")

    assert response.status_code == 201
    data = response.json()["data"]
    assert set(data) == {"workflow_id", "webhook_secrets"}
    assert data["webhook_secrets"] == secrets_of(data["workflow_id"])
    assert len(data["webhook_secrets"]) == 2
    assert all(s.startswith("whsec_") for s in data["webhook_secrets"].values())


@pytest.mark.parametrize("scopes", ["read", "read,write"])
def test_no_key_sees_secrets_in_the_list_or_a_read(
    make_api: Callable[..., APIClient], purchase: Any, allow_loopback: None, scopes: str
) -> None:
    workflow_id = make_api().post(URL, body(), format="json").json()["data"]["workflow_id"]
    (secret,) = secrets_of(workflow_id).values()
    api = make_api(scopes)

    listed = api.get(URL)
    detail = api.get(f"{URL}/{workflow_id}")
    runs = api.get(f"{URL}/{workflow_id}/runs")

    for response in (listed, detail, runs):
        assert response.status_code == 200
        text = response.content.decode()
        assert "webhook_secrets" not in text
        assert secret not in text
    assert listed.json()["data"]["total_items"] == 1


def test_patch_and_delete_answers_carry_no_secret(
    api: APIClient, purchase: Any, allow_loopback: None
) -> None:
    workflow_id = api.post(URL, body(), format="json").json()["data"]["workflow_id"]
    (secret,) = secrets_of(workflow_id).values()

    patched = api.patch(f"{URL}/{workflow_id}", {"workflow": {"name": "x"}}, format="json")
    deactivated = api.post(f"{URL}/{workflow_id}/deactivate")
    deleted = api.delete(f"{URL}/{workflow_id}")

    for response in (patched, deactivated, deleted):
        assert response.status_code == 200
        assert "webhook_secrets" not in response.content.decode()
        assert secret not in response.content.decode()


def test_reveal_and_rotate_need_the_write_scope(
    make_api: Callable[..., APIClient], purchase: Any, allow_loopback: None
) -> None:
    workflow_id = make_api().post(URL, body(), format="json").json()["data"]["workflow_id"]
    before = secrets_of(workflow_id)
    reader = make_api("read")

    for action in ("reveal-secrets", "rotate-secrets"):
        response = reader.post(f"{URL}/{workflow_id}/{action}")
        assert response.status_code == 403
        assert "webhook_secrets" not in response.content.decode()
    assert secrets_of(workflow_id) == before


def test_reveal_shows_the_current_secrets(
    api: APIClient, purchase: Any, allow_loopback: None
) -> None:
    workflow_id = api.post(URL, body(), format="json").json()["data"]["workflow_id"]

    response = api.post(f"{URL}/{workflow_id}/reveal-secrets")

    assert response.status_code == 200
    assert response.json()["data"] == {
        "workflow_id": workflow_id,
        "webhook_secrets": secrets_of(workflow_id),
    }


def test_rotate_issues_new_secrets_and_the_old_ones_still_sign_for_the_overlap(
    api: APIClient, purchase: Any, allow_loopback: None
) -> None:
    workflow_id = api.post(URL, body(), format="json").json()["data"]["workflow_id"]
    ((endpoint_id, old),) = secrets_of(workflow_id).items()

    response = api.post(f"{URL}/{workflow_id}/rotate-secrets")

    assert response.status_code == 200
    new = response.json()["data"]["webhook_secrets"]
    assert new == secrets_of(workflow_id)
    assert list(new) == [endpoint_id]
    assert new[endpoint_id] != old
    assert Endpoint.objects.get(pk=endpoint_id).previous_secret == old


def test_unknown_workflow_reveal_is_404(api: APIClient, db: None) -> None:
    response = api.post(f"{URL}/nope/reveal-secrets")
    assert response.status_code == 404
    assert response.json()["message"] == "Workflow 'nope' not found."


@pytest.mark.parametrize("workflows", [1, 5])
def test_the_list_takes_the_same_queries_whatever_the_workflows_with_webhooks(
    api: APIClient,
    purchase: Any,
    allow_loopback: None,
    make_workflow: Callable[..., Workflow],
    django_assert_num_queries: Any,
    workflows: int,
) -> None:
    for i in range(workflows):
        make_workflow(name=f"w{i}", actions=[{"type": "webhook", "url": f"{HOOK}/{i}"}])
    api.get(URL)  # the first request authenticates the key (cached afterwards)

    # The count, the page, the page's trigger types: no query per workflow.
    with django_assert_num_queries(3) as queries:
        response = api.get(URL)

    tables = [q["sql"].split(" FROM ")[1].split(" ")[0] for q in queries.captured_queries]
    assert sorted(tables) == [
        '"automation_workflow"',
        '"automation_workflow"',
        '"events_app_eventtype"',
    ]
    assert response.json()["data"]["total_items"] == workflows
