"""Helpers of the identity tests: full row dumps of every table a merge touches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Model
from django.utils import timezone

from automation.identity import MERGED_EVENT_TYPE
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from customers.identity.moves import customer_tables
from customers.models import Customer, CustomerAlias
from events_app.models import Event, EventType, PropertyRecord
from tests.factories import EventFactory, PropertyRecordFactory

# Tables whose rows are compared before a merge and after its undo. SegmentCheck is
# compared without next_check_at: the re-check marks a merge and its undo leave are the
# segment engine's work queue (mark "re-evaluate now"), not history.
TIME_FREE = {SegmentCheck: ("next_check_at",)}


def dump() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table with a customer foreign key, plus customers and the
    property records (owned through their events), keyed by table, in key order.

    Without the `customer.merged` events (and their records): a merge's own event is
    history an undo keeps (workflows may have acted on it)."""
    models: list[type[Model]] = [Customer, PropertyRecord, *(t.model for t in customer_tables())]
    out: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        skip = TIME_FREE.get(model, ())
        rows = model._base_manager.order_by("pk")
        if model is Event:
            rows = rows.exclude(event_type__key=MERGED_EVENT_TYPE)
        elif model is PropertyRecord:
            rows = rows.exclude(event__event_type__key=MERGED_EVENT_TYPE)
        rows = rows.values()
        out[model._meta.label] = [{k: v for k, v in row.items() if k not in skip} for row in rows]
    return out


def own_events() -> Any:
    """Events other than the merges' own `customer.merged` events."""
    return Event.objects.exclude(event_type__key=MERGED_EVENT_TYPE)


def event_for(customer: Customer, event_type: EventType, *, records: int = 1, **kw: Any) -> Event:
    event = EventFactory(customer=customer, event_type=event_type, **kw)
    for n in range(records):
        PropertyRecordFactory(event=event, property_id=f"p{n}", property_value=str(n))
    return event


def run_for(customer: Customer, workflow: Workflow, event: Event | None = None) -> WorkflowRun:
    return WorkflowRun.objects.create(
        workflow=workflow, customer=customer, event=event, created_at=timezone.now()
    )


def delivery_for(customer: Customer, event: Event | None = None) -> Delivery:
    """A webhook delivery about the customer, of one of their events or (with none) as
    a segment-started run's webhook action makes it."""
    endpoint = Endpoint.objects.filter(url="https://93.184.215.14/hook").first()
    if endpoint is None:  # never sent: the tests run no sender
        endpoint = Endpoint.objects.create(url="https://93.184.215.14/hook", secret="whsec_x")
    return delivery_create(
        endpoint=endpoint, payload={"n": 1}, event=event, customer_id=customer.pk
    )


def stay(customer: Customer, segment: Segment, *, current: bool) -> SegmentMembership:
    now = timezone.now()
    return SegmentMembership.objects.create(
        segment=segment,
        customer=customer,
        entered_at=now - timedelta(days=2),
        exited_at=None if current else now - timedelta(days=1),
    )


def alias(customer: Customer, value: str) -> CustomerAlias:
    return CustomerAlias.objects.create(
        customer=customer, kind=CustomerAlias.Kind.EXTERNAL, value=value
    )


def diff(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Readable differences between two dumps (for assertion messages)."""
    out = []
    for table in before:
        b = {r.get("id"): r for r in before[table]}
        a = {r.get("id"): r for r in after[table]}
        for key in b.keys() | a.keys():
            if b.get(key) != a.get(key):
                out.append(f"{table} {key}: {b.get(key)} != {a.get(key)}")
    return out
