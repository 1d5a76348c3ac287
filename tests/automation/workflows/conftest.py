from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import msgspec
import pytest

from automation.due import due_events_process
from automation.webhooks.models import Delivery
from automation.workflows.models import Workflow
from automation.workflows.runner import workflow_run_advance
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType, PropertyDefinition
from events_app.schemas import EventCreateIn
from tests.receiver import Receiver, local_receiver


@pytest.fixture(autouse=True)
def _fresh_workflow_cache() -> Iterator[None]:
    # Each test starts as a new process would: nothing cached.
    active_workflows_forget()
    yield
    active_workflows_forget()


@pytest.fixture
def purchase(db: None) -> EventType:
    event_type = EventType.objects.create(key="purchase", name="Purchase")
    for prop, value_type in [("amount", "number"), ("paid_at", "datetime"), ("sku", "string")]:
        PropertyDefinition.objects.create(
            event_type=event_type, property_id=prop, value_type=value_type
        )
    return event_type


@pytest.fixture
def login(db: None) -> EventType:
    return EventType.objects.create(key="login", name="Login")


@pytest.fixture
def make_workflow(db: None) -> Callable[..., Workflow]:
    def make(**fields: Any) -> Workflow:
        fields.setdefault("name", "Big spenders")
        fields.setdefault("trigger_event_types", ["purchase"])
        fields.setdefault("conditions", {})
        fields.setdefault("actions", [])
        return workflow_create(data=WorkflowInput(**fields))

    return make


@pytest.fixture
def ingest(db: None, django_capture_on_commit_callbacks: Any) -> Callable[..., Event]:
    """Store one event through the real ingestion services (after-commit work not run)."""

    def ingest_one(
        event_type: str = "purchase",
        customer: str = "alice",
        records: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> Event:
        body: dict[str, Any] = {
            "event": {
                "event_type": event_type,
                "customer_external_id": customer,
                "data": data or {},
            },
            "property_records": [
                {"property_id": k, "property_value": v} for k, v in (records or {}).items()
            ],
        }
        if occurred_at is not None:
            body["event"]["occurred_at"] = occurred_at.isoformat()
        item = msgspec.convert(body, EventCreateIn, strict=False)
        with django_capture_on_commit_callbacks(execute=False):
            prepared, invalid = events_prepare(items=[item])
            assert not invalid, invalid
            stored = events_store(prepared=prepared).stored
        return Event.objects.get(pk=stored[0].id)

    return ingest_one


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    """Webhook actions call a receiver on 127.0.0.1, which the guard refuses by default."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def receiver(allow_loopback: None) -> Iterator[Receiver]:
    with local_receiver() as r:
        yield r


@pytest.fixture
def webhook_runs(
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> Callable[..., list[tuple[Workflow, Delivery]]]:
    """One workflow per URL with a webhook action to it, run for one event: each
    workflow with its delivery, created and not sent yet."""

    def run(*urls: str) -> list[tuple[Workflow, Delivery]]:
        workflows = [
            make_workflow(name=f"hook {i}", actions=[{"type": "webhook", "url": url}])
            for i, url in enumerate(urls)
        ]
        event = ingest(records={"amount": "12", "sku": "SKU-1"})
        with django_capture_on_commit_callbacks(execute=False):  # not sent here
            for run_id in due_events_process(event_ids=[event.pk]).run_ids:
                workflow_run_advance(run_id=run_id)
        return [(w, Delivery.objects.get(endpoint__workflow_link__workflow=w)) for w in workflows]

    return run
