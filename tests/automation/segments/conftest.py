from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import msgspec
import pytest

from automation.due import due_events_process_and_run
from automation.segments.models import Segment
from automation.segments.selectors import loaded_segments_forget
from automation.segments.services import SegmentInput, segment_create
from automation.workflows.selectors import active_workflows_forget
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType, PropertyDefinition
from events_app.schemas import EventCreateIn


@pytest.fixture(autouse=True)
def _fresh_segment_cache() -> Iterator[None]:
    # Each test starts as a new process would: nothing cached.
    loaded_segments_forget()
    active_workflows_forget()
    yield
    loaded_segments_forget()
    active_workflows_forget()


@pytest.fixture
def purchase(db: None) -> EventType:
    event_type = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=event_type, property_id="amount", value_type="number"
    )
    return event_type


@pytest.fixture
def login(db: None) -> EventType:
    return EventType.objects.create(key="login", name="Login")


@pytest.fixture
def make_segment(db: None, django_capture_on_commit_callbacks: Any) -> Callable[..., Segment]:
    """Create a segment and run its build (the after-commit work) right away."""

    def make(key: str = "seg", condition: dict[str, Any] | None = None, **fields: Any) -> Segment:
        fields.setdefault("name", key.title())
        with django_capture_on_commit_callbacks(execute=True):
            segment = segment_create(
                data=SegmentInput(key=key, condition=condition or {}, **fields)
            )
        segment.refresh_from_db()
        return segment

    return make


@pytest.fixture
def ingest(db: None, django_capture_on_commit_callbacks: Any) -> Callable[..., Event]:
    """Store one event through ingestion, then run its background work as a worker would
    (the claimer of due events: segments, then workflows)."""

    def ingest_one(
        event_type: str = "purchase",
        customer: str = "alice",
        records: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
        background: bool = True,
    ) -> Event:
        body: dict[str, Any] = {
            "event": {"event_type": event_type, "customer_external_id": customer, "data": {}},
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
        event = Event.objects.get(pk=stored[0].id)
        if background:
            due_events_process_and_run(event_ids=[event.pk])
        return event

    return ingest_one


def members(segment: Segment) -> list[str]:
    """The current members' external ids, sorted."""
    return sorted(
        segment.memberships.filter(exited_at__isnull=True).values_list(
            "customer__external_id", flat=True
        )
    )
