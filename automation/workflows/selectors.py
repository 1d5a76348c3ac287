"""Reads for workflows: the active-workflow cache and the facts the evaluator needs.

The evaluator (automation.workflows.engine) is pure; everything it looks at is fetched
here, for a whole batch of events at once:

* property records, declared property types and customers: one query each;
* frequency facts ("customer did T at least N times within W"): one GROUP BY
  query per distinct (T, W) in the batch, not one per event;
* first-time facts: one query per distinct T.

Both fact queries are served by the Event index on (customer, event_type,
occurred_at) — see the report / events_app migrations.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.db.models import Count, OuterRef, QuerySet, Subquery

from automation.segments.models import Segment
from automation.segments.selectors import current_segment_refs
from automation.workflows.engine import CompiledWorkflow, CountKey, EventContext
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.stamp import WorkflowStamp, workflow_stamp_read
from customers.models import Customer
from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord
from project.errors import NotFoundError

WORKFLOW_SORT_FIELDS = {"created_at": "created_at", "name": "name", "workflow_id": "pk"}
RUN_SORT_FIELDS = {"created_at": "created_at", "workflow_run_id": "pk"}


def workflow_list() -> QuerySet[Workflow]:
    return Workflow.objects.prefetch_related("trigger_event_types").select_related(
        "delivery_policy"
    )


def workflow_get(*, workflow_id: str) -> Workflow:
    try:
        return (
            Workflow.objects.prefetch_related("trigger_event_types")
            .select_related("delivery_policy")
            .get(pk=workflow_id)
        )
    except Workflow.DoesNotExist:
        raise NotFoundError(f"Workflow '{workflow_id}' not found.") from None


def workflow_runs(*, workflow: Workflow) -> QuerySet[WorkflowRun]:
    return WorkflowRun.objects.filter(workflow=workflow)


def workflow_webhook_secrets(*, workflow: Workflow) -> dict[str, str]:
    """Endpoint id → signing secret of each endpoint the workflow's webhook actions use.

    Secrets are for callers that may write (the API shows them on create and on an
    explicit reveal or rotation), never in a list or a plain read.
    """
    return dict(
        WorkflowEndpoint.objects.filter(workflow=workflow)
        .order_by("endpoint_id")
        .values_list("endpoint_id", "endpoint__secret")
    )


# ---------------------------------------------------------------- active workflow cache


@dataclass
class LoadedWorkflow:
    """An active workflow as a worker holds it: the row's data plus its compiled tree."""

    id: str
    name: str
    actions: list[dict[str, Any]]
    reentry: str
    version: int
    compiled: CompiledWorkflow
    period_seconds: float | None

    @classmethod
    def of(cls, workflow: Workflow, *, type_ids: dict[str, str]) -> LoadedWorkflow:
        """Compile a workflow row; `type_ids` maps event type keys to ids."""
        period = workflow.reentry_period()
        return cls(
            id=workflow.pk,
            name=workflow.name,
            actions=workflow.actions,
            reentry=workflow.reentry,
            version=workflow.version,
            compiled=CompiledWorkflow(
                workflow_id=workflow.pk, conditions=workflow.conditions, type_ids=type_ids
            ),
            period_seconds=period.total_seconds() if period else None,
        )


@dataclass
class ActiveWorkflows:
    stamp: WorkflowStamp
    by_type: dict[str, list[LoadedWorkflow]] = field(default_factory=dict)
    # (segment id, "entered" | "exited") -> the workflows that transition starts.
    by_segment: dict[tuple[str, str], list[LoadedWorkflow]] = field(default_factory=dict)

    @property
    def trigger_type_ids(self) -> frozenset[str]:
        return frozenset(self.by_type)


_cache_lock = threading.Lock()
_cache: ActiveWorkflows | None = None


def _load(stamp: WorkflowStamp) -> ActiveWorkflows:
    type_ids = dict(EventType.objects.values_list("key", "id"))
    loaded = ActiveWorkflows(stamp=stamp)
    workflows = list(Workflow.objects.filter(active=True).prefetch_related("trigger_event_types"))
    # Segment triggers name segments by key or id (validated at save; a named segment
    # cannot be deleted or re-keyed, so the key stays valid while the workflow names it).
    segment_ids = (
        dict(Segment.objects.values_list("key", "id"))
        if any(w.trigger_segments for w in workflows)
        else {}
    )
    for workflow in workflows:
        item = LoadedWorkflow.of(workflow, type_ids=type_ids)
        for event_type in workflow.trigger_event_types.all():
            loaded.by_type.setdefault(event_type.id, []).append(item)
        for trigger in workflow.trigger_segments or []:
            key = (segment_ids.get(trigger["segment"], trigger["segment"]), trigger["on"])
            started = loaded.by_segment.setdefault(key, [])
            if not any(other is item for other in started):
                started.append(item)
    return loaded


def active_workflows(*, stamp: WorkflowStamp | None = None) -> ActiveWorkflows:
    """The active workflows by trigger type, reloaded only when the table changed.

    `stamp` is the table's current stamp when the caller read it already (ingestion
    reads it with the webhook subscriptions: automation.ingest); else it is
    read here.
    """
    global _cache
    if stamp is None:
        stamp = workflow_stamp_read()
    with _cache_lock:
        if _cache is None or _cache.stamp != stamp:
            _cache = _load(stamp)
        return _cache


def active_workflows_forget() -> None:
    """Drop this process's cache (other processes notice the stamp change)."""
    global _cache
    with _cache_lock:
        _cache = None


# ---------------------------------------------------------------- batch facts


class EventRow(NamedTuple):
    """The fields of an event that evaluation reads (a plain row: building a model
    instance per event cost more than evaluating it)."""

    id: str
    event_type_id: str
    customer_id: str
    external_id: str | None
    secondary_external_id: str | None
    data: Any
    occurred_at: datetime
    created_at: datetime
    depth: int
    # Why the event cannot be evaluated ("" when it can): see automation.due.due_events_claim.
    problem: str = ""


def event_dict(event: Event | EventRow, type_key: str) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "event_type": type_key,
        "event_type_id": event.event_type_id,
        "external_id": event.external_id,
        "secondary_external_id": event.secondary_external_id,
        "occurred_at": event.occurred_at,
        "created_at": event.created_at,
        "depth": event.depth,
        "data": event.data if isinstance(event.data, dict) else {},
    }


# customer_dict's keys -> Customer's fields.
_CUSTOMER_FIELDS = {
    "customer_id": "id",
    "external_id": "external_id",
    "email": "email",
    "created_at": "created_at",
    "attributes": "attributes",
    "tags": "tags",
}


def customer_dict(customer: Customer) -> dict[str, Any]:
    return {
        "customer_id": customer.id,
        "external_id": customer.external_id,
        "email": customer.email,
        "created_at": customer.created_at,
        "attributes": customer.attributes if isinstance(customer.attributes, dict) else {},
        "tags": customer.tags if isinstance(customer.tags, list) else [],
    }


def _customer_rows(customer_ids: set[str]) -> dict[str, dict[str, Any]]:
    """customer_dict's dicts as plain rows, one query (no model instance per customer)."""
    customers = {
        row["id"]: row
        for row in Customer.objects.filter(pk__in=customer_ids).values(*_CUSTOMER_FIELDS.values())
    }
    for row in customers.values():
        for name, column in _CUSTOMER_FIELDS.items():
            if name != column:
                row[name] = row.pop(column)
        if not isinstance(row["attributes"], dict):
            row["attributes"] = {}
        if not isinstance(row["tags"], list):
            row["tags"] = []
    return customers


def frequency_counts(*, key: CountKey, customer_ids: set[str], now: datetime) -> dict[str, int]:
    """How many events of key.event_type each customer has in (now - within, now].

    One query for the whole batch; an index-only scan on (customer,
    event_type, occurred_at) per customer.
    """
    rows = (
        Event.objects.filter(
            customer_id__in=customer_ids,
            event_type_id=key.event_type_id,
            occurred_at__gt=now - key.within,
            occurred_at__lte=now,
        )
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
        .values_list("customer_id", "n")
    )
    counts = dict.fromkeys(customer_ids, 0)
    counts.update(dict(rows))
    return counts


def first_event_ids(*, event_type_id: str, customer_ids: set[str]) -> dict[str, str | None]:
    """Each customer's earliest event of a type (by occurred_at, then id).

    One query: a LIMIT 1 probe of the (customer, event_type, occurred_at)
    index per customer.
    """
    earliest = (
        Event.objects.filter(customer_id=OuterRef("pk"), event_type_id=event_type_id)
        .order_by("occurred_at", "id")
        .values("id")[:1]
    )
    return dict(
        Customer.objects.filter(pk__in=customer_ids)
        .annotate(first_id=Subquery(earliest))
        .order_by()
        .values_list("id", "first_id")
    )


def batch_contexts(
    *,
    events: Sequence[Event | EventRow],
    workflows_by_type: dict[str, list[LoadedWorkflow]],
    now: datetime,
) -> dict[str, EventContext]:
    """The evaluator's input for every event of a batch, with a fixed number of queries."""
    if not events:
        return {}
    event_ids = [e.id for e in events]
    type_ids = {e.event_type_id for e in events}
    type_keys = dict(EventType.objects.filter(pk__in=type_ids).values_list("id", "key"))
    declared: dict[str, dict[str, str]] = defaultdict(dict)
    for type_id, prop, value_type in PropertyDefinition.objects.filter(
        event_type_id__in=type_ids
    ).values_list("event_type_id", "property_id", "value_type"):
        declared[type_id][prop] = value_type
    properties: dict[str, dict[str, str]] = defaultdict(dict)
    for event_id, prop, value in PropertyRecord.objects.filter(event_id__in=event_ids).values_list(
        "event_id", "property_id", "property_value"
    ):
        properties[event_id][prop] = value
    customers = _customer_rows({e.customer_id for e in events})

    # Which facts each customer needs: only those of workflows its events trigger.
    count_customers: dict[CountKey, set[str]] = defaultdict(set)
    first_customers: dict[str, set[str]] = defaultdict(set)
    for event in events:
        for workflow in workflows_by_type.get(event.event_type_id, ()):
            for key in workflow.compiled.count_keys:
                count_customers[key].add(event.customer_id)
            for type_id in workflow.compiled.first_types:
                first_customers[type_id].add(event.customer_id)
    counts = {
        key: frequency_counts(key=key, customer_ids=ids, now=now)
        for key, ids in count_customers.items()
    }
    firsts = {
        type_id: first_event_ids(event_type_id=type_id, customer_ids=ids)
        for type_id, ids in first_customers.items()
    }
    segment_customers = {
        event.customer_id
        for event in events
        if any(w.compiled.reads_segments for w in workflows_by_type.get(event.event_type_id, ()))
    }
    segments = current_segment_refs(customer_ids=segment_customers) if segment_customers else {}

    contexts: dict[str, EventContext] = {}
    for event in events:
        customer = customers.get(event.customer_id, {"customer_id": event.customer_id})
        contexts[event.id] = EventContext(
            event=event_dict(event, type_keys.get(event.event_type_id, "")),
            customer=customer,
            properties=properties.get(event.id, {}),
            property_types=declared.get(event.event_type_id, {}),
            counts={
                key: per_customer.get(event.customer_id, 0) for key, per_customer in counts.items()
            },
            first_of_type={
                type_id: first.get(event.customer_id) == event.id
                for type_id, first in firsts.items()
            },
            segments=segments.get(event.customer_id, frozenset()),
            now=now,
        )
    return contexts


def customer_contexts(
    *, customer_ids: set[str], workflows: Sequence[LoadedWorkflow], now: datetime
) -> dict[str, EventContext]:
    """The evaluator's input for runs that no event started (segment triggers): the
    customer, their frequency facts as of `now` and their segments, a fixed number of
    queries. There is no event: `event`, `property` and `first` leaves read nothing
    (missing), so they never match (and `not` of one does)."""
    customers = _customer_rows(customer_ids)
    keys = {key for workflow in workflows for key in workflow.compiled.count_keys}
    counts = {key: frequency_counts(key=key, customer_ids=customer_ids, now=now) for key in keys}
    segments = (
        current_segment_refs(customer_ids=customer_ids)
        if any(w.compiled.reads_segments for w in workflows)
        else {}
    )
    return {
        customer_id: EventContext(
            event={},
            customer=customers.get(customer_id, {"customer_id": customer_id}),
            counts={key: per_customer.get(customer_id, 0) for key, per_customer in counts.items()},
            segments=segments.get(customer_id, frozenset()),
            now=now,
        )
        for customer_id in customer_ids
    }
