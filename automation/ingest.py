"""The one door events_app uses: automation's ingest hook (events_app.ingest_hooks).

Registered by AutomationConfig.ready(). For every stored batch -- and every single
POST /events -- automation answers, with the protocol of events_app.ingest_hooks:

1. facts: which webhook subscriptions are active and whether this process's
   active-workflow cache is current (the workflow stamp). Plain SQL rows that
   ingestion appends to the read it makes anyway (no round trip of their own), or
   read alone in one statement (`ingest_facts_read`); on PostgreSQL both are
   prepared after a few uses (project.sql.fetch_all). Nothing is cached: a webhook
   or workflow created, changed or deactivated in another process takes effect for
   the very next ingest.
2. plan: an event whose type triggers an active workflow is written with
   `automation_pending`; an event that active subscriptions match is written with
   `is_delivered = false` and one delivery per subscription (`DELIVERIES`, inserted
   by the event's own statement), its payload the event as GET /events/{id} shows it.
3. handover: after the insert, on commit, a send task per delivery planned as queued
   and the evaluation of the flagged events (one wake-up each).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.segments.selectors import SegmentStamp, loaded_segments
from automation.segments.selectors import stamp_sql_parts as segment_stamp_sql_parts
from automation.webhooks.deliveries import (
    QUEUE_LEASE,
    deliveries_enqueue_on_commit,
    event_deliveries_cancel,
    message_id_new,
)
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.runner import enqueue_evaluation
from automation.workflows.selectors import active_workflows
from automation.workflows.stamp import WorkflowStamp, stamp_sql_parts
from events_app.ingest_hooks import Companion, EventPlan, PreparedEvent
from events_app.models import Event
from events_app.payloads import event_payload
from project.ids import new_public_id
from project.sql import fetch_all

logger = logging.getLogger(__name__)

STAMP = "workflows"
SEGMENTS = "segments"
SUBSCRIPTION = "subscription"


# ---------------------------------------------------------------- 1. facts


@dataclass(frozen=True, slots=True)
class IngestFacts:
    # Active subscription endpoint id -> its event type ids (empty = every type).
    subscriptions: dict[str, set[str]]
    workflow_stamp: WorkflowStamp
    segment_stamp: SegmentStamp = ("0", None)

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[Any, ...]]) -> IngestFacts:
        """From the rows of `facts_sql` (only their first three columns are read)."""
        subscriptions: dict[str, set[str]] = {}
        stamp: WorkflowStamp = ("0", None)
        segment_stamp: SegmentStamp = ("0", None)
        for kind, first, second, *_ in rows:
            if kind == STAMP:
                stamp = (first, second)
                continue
            if kind == SEGMENTS:
                segment_stamp = (first, second)
                continue
            types = subscriptions.setdefault(first, set())
            if second is not None:
                types.add(second)
        return cls(subscriptions, stamp, segment_stamp)


@functools.cache
def _parts() -> tuple[tuple[str, str], ...]:
    """The stamp and the subscriptions as (select list of 3 columns, the rest), built
    from the models."""
    through = Endpoint.event_types.through._meta
    endpoint_column = through.get_field("endpoint").column
    type_column = through.get_field("eventtype").column
    stamp_columns, stamp_rest = stamp_sql_parts()
    stamp = (f"SELECT '{STAMP}', {stamp_columns}", stamp_rest)
    # Served by the partial index endpoint_active_kind_idx.
    subscriptions = (
        f"SELECT '{SUBSCRIPTION}', e.id, t.{type_column}",
        f"FROM {Endpoint._meta.db_table} e "
        f"LEFT JOIN {through.db_table} t ON t.{endpoint_column} = e.id "
        f"WHERE e.kind = '{Endpoint.Kind.SUBSCRIPTION.value}' AND e.active",
    )
    segment_columns, segment_rest = segment_stamp_sql_parts()
    return stamp, subscriptions, (f"SELECT '{SEGMENTS}', {segment_columns}", segment_rest)


@functools.cache
def facts_sql(width: int = 3) -> str:
    """Both reads as one UNION ALL of `width` columns (the rest NULL), to append to
    another read with that many columns."""
    padding = ", NULL" * (width - 3)
    return " UNION ALL ".join(f"{select}{padding} {rest}" for select, rest in _parts())


def ingest_facts_read() -> IngestFacts:
    """The active webhook subscriptions and the workflow stamp, in one statement."""
    return IngestFacts.of_rows(fetch_all(facts_sql(), []))


# ---------------------------------------------------------------- 2. plan


def subscriptions_matching(
    *, events: Sequence[PreparedEvent], subscriptions: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Event id -> the active subscription endpoints the event goes to, newest first
    (Endpoint.Meta.ordering: ids are time-ordered); events that match none are left out.

    `subscriptions`: active subscription endpoint id -> its event type ids (empty =
    every type), as `IngestFacts` holds them.
    """
    if not subscriptions:
        return {}
    matches: dict[str, list[str]] = {}
    for event in events:
        endpoint_ids = [
            endpoint_id
            for endpoint_id, types in subscriptions.items()
            if not types or event.event_type_id in types
        ]
        if endpoint_ids:
            matches[event.id] = sorted(endpoint_ids, reverse=True)
    return matches


@dataclass(slots=True)
class PlannedDelivery:
    """A webhook delivery of a new event, planned before the insert that writes it
    (`DELIVERIES`). Due now; `queued_until` is set when a send task is enqueued for
    it after the insert (`deliveries_enqueue_on_commit`)."""

    endpoint_id: str
    created_at: datetime
    queued_until: datetime | None
    id: str = field(default_factory=new_public_id)
    message_id: str = field(default_factory=message_id_new)


# A planned delivery's row: the event's id and payload come from its event, it is due
# when it is created, every other column takes its field default.
DELIVERIES = Companion(
    name="deliveries",
    model=Delivery,
    per_row=("id", "endpoint_id", "message_id", "queued_until", "created_at"),
    from_event={"event_id": "id", "payload": "payload"},
    same_as={"next_attempt_at": "created_at"},
)


def deliveries_plan_for_new_events(
    *, events: Sequence[Event], endpoints: dict[str, list[str]]
) -> dict[str, tuple[dict[str, Any], list[PlannedDelivery]]]:
    """Event id -> (its payload, one planned delivery per endpoint in `endpoints[id]`).

    `events`: the rows about to be inserted (unsaved instances carrying the values the
    insert writes), so the payload is the event as GET /events/{id} will show it
    without reading it back.
    """
    now = timezone.now()
    lease = now + QUEUE_LEASE
    # A send task per delivery costs more than the delivery's insert. An endpoint never
    # sends more than its concurrency limit at once, so plan that many per endpoint as
    # queued; the rest stay due and unqueued: each worker's follow-on loop claims the
    # endpoint's next due delivery after a success, and the dispatcher (every tick)
    # enqueues free slots for whatever is left after a failure.
    limit = max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1)
    per_endpoint: dict[str, int] = {}
    plans: dict[str, tuple[dict[str, Any], list[PlannedDelivery]]] = {}
    for event in events:
        planned = []
        for endpoint_id in endpoints.get(event.pk, ()):
            seen = per_endpoint.get(endpoint_id, 0)
            per_endpoint[endpoint_id] = seen + 1
            planned.append(PlannedDelivery(endpoint_id, now, lease if seen < limit else None))
        if planned:
            plans[event.pk] = (event_payload(event), planned)
    return plans


def events_plan(*, events: Sequence[PreparedEvent], facts: IngestFacts) -> dict[str, EventPlan]:
    """What automation writes with `events` (see the module's docstring)."""
    plans: dict[str, EventPlan] = {}
    # Workflows: the events to evaluate carry automation_pending into the insert itself,
    # so no write follows it; their evaluation is enqueued after commit.
    trigger_types = active_workflows(stamp=facts.workflow_stamp).trigger_type_ids
    if trigger_types:
        for event in events:
            if event.event_type_id in trigger_types:
                plans[event.id] = EventPlan(automation_pending=True)
    # Segments: events whose type a segment reads, or whose customer is new, are
    # evaluated too (automation.segments.services.segments_refresh_for_events).
    segments = loaded_segments(stamp=facts.segment_stamp)
    for event in events:
        if segments.ordered and (
            event.new_customer is not None or event.event_type_id in segments.event_type_ids
        ):
            plans.setdefault(event.id, EventPlan()).automation_pending = True
    # Webhook deliveries are inserted with their events, which are inserted with
    # is_delivered = false: no UPDATE, and nothing read back for the payloads.
    endpoints = subscriptions_matching(events=events, subscriptions=facts.subscriptions)
    if endpoints:
        unsaved = [p.as_event() for p in events if p.id in endpoints]
        for row in unsaved:
            row.is_delivered = False  # the payload shows the row as inserted
        deliveries = deliveries_plan_for_new_events(events=unsaved, endpoints=endpoints)
        for event_id, (payload, planned) in deliveries.items():
            plan = plans.setdefault(event_id, EventPlan())
            plan.is_delivered = False
            plan.rows[DELIVERIES.name] = planned
            plan.values["payload"] = payload
    return plans


# ---------------------------------------------------------------- 3. handover


def evaluation_enqueue_on_commit(*, events: Sequence[PreparedEvent]) -> list[str]:
    """After the inserting transaction commits, enqueue the flagged ones of `events`
    (just stored); returns their ids. A failed enqueue is logged, never raised: the
    rows carry the flag and the sweeper re-enqueues them after the grace period."""
    flagged = [e.id for e in events if e.automation_pending]
    if flagged:

        def enqueue() -> None:
            try:
                enqueue_evaluation(flagged)
            except Exception:
                logger.exception("Could not enqueue %d evaluations; the sweeper will", len(flagged))

        transaction.on_commit(enqueue)
    return flagged


def events_handover(*, events: Sequence[PreparedEvent]) -> None:
    """After the insert of `events` (those stored): send the deliveries planned as
    queued and evaluate the flagged events, both on commit."""
    deliveries_enqueue_on_commit(
        [
            d.id
            for p in events
            if p.companions
            for d in p.companions.get(DELIVERIES.name, ())
            if d.queued_until is not None
        ]
    )
    evaluation_enqueue_on_commit(events=events)


class AutomationIngest:
    """automation's implementation of events_app.ingest_hooks.IngestHook."""

    companions: tuple[Companion, ...] = (DELIVERIES,)

    def facts_sql(self, width: int) -> str:
        return facts_sql(width)

    def facts_of_rows(self, rows: Iterable[tuple[Any, ...]]) -> IngestFacts:
        return IngestFacts.of_rows(rows)

    def facts_read(self) -> IngestFacts:
        return ingest_facts_read()

    def plan(self, events: Sequence[PreparedEvent], facts: IngestFacts) -> dict[str, EventPlan]:
        return events_plan(events=events, facts=facts)

    def handover(self, events: Sequence[PreparedEvent]) -> None:
        events_handover(events=events)

    def event_marked_delivered(self, event: Event) -> None:
        # Seed 001: marking an event delivered cancels its pending and failed deliveries.
        event_deliveries_cancel(event=event)


INGEST_HOOK = AutomationIngest()
