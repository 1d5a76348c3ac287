"""Fixtures of the both-databases tests: nothing here needs PostgreSQL, Redis or Celery.

Background work runs inline (no broker: project.background runs each enqueued call
right away), and work handed on after commit runs when the test's `after_commit`
block ends, as it would when a request's transaction commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.workflows.selectors import active_workflows_forget
from tests.conftest import API
from tests.receiver import Receiver, local_receiver

AfterCommit = Callable[[], AbstractContextManager[Any]]


@pytest.fixture(autouse=True)
def _fresh_workflow_cache() -> Iterator[None]:
    # Each test starts as a new process would: no compiled workflows cached (the cache
    # is dropped on commit, which a `db` test never reaches).
    active_workflows_forget()
    yield
    active_workflows_forget()


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks: Any) -> AfterCommit:
    """`with after_commit(): ...` runs what the block hands on after commit (deliveries,
    evaluations, actions, and what those hand on in turn) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def receiver(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The shared local receiver on this package's ports (8501-8598); the outbound
    guard lets loopback through for this test only."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    monkeypatch.setenv("HERALD_TEST_PORTS", "8501-8598")
    with local_receiver() as r:
        yield r


def ok(response: Any, status: int = 200) -> Any:
    """The `data` of a response that must have `status`."""
    assert response.status_code == status, response.content
    return response.json()["data"]


def post(api: APIClient, path: str, body: Any) -> Any:
    return api.post(f"{API}{path}", json.dumps(body), content_type="application/json")


def patch(api: APIClient, path: str, body: Any) -> Any:
    return api.patch(f"{API}{path}", json.dumps(body), content_type="application/json")


def get(api: APIClient, path: str, params: dict[str, Any] | None = None) -> Any:
    return api.get(f"{API}{path}", params or {})


@pytest.fixture
def purchase(api: APIClient) -> str:
    """A `purchase` event type (amount: number, required; sku: string), made over the API."""
    return ok(
        post(
            api,
            "/event-types",
            {
                "event_type": {"key": "purchase", "name": "Purchase"},
                "properties": [
                    {"property_id": "amount", "type": "number", "required": True},
                    {"property_id": "sku", "type": "string"},
                ],
            },
        ),
        201,
    )["event_type_id"]


def purchase_item(
    customer: str = "alice", ref: str | None = None, amount: Any = 10, **event: Any
) -> dict[str, Any]:
    """One item in the body shape of POST /events (and of a batch's `events`)."""
    fields: dict[str, Any] = {"event_type": "purchase", "customer_external_id": customer, **event}
    if ref is not None:
        fields["external_id"] = ref
    return {
        "event": fields,
        "property_records": [{"property_id": "amount", "property_value": amount}],
    }
