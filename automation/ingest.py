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
2. plan: an event whose type triggers an active workflow, or that active
   subscriptions match, is written with `automation_pending` (and, when subscriptions
   match, `is_delivered = false`): the due work is a flag of the event's own row,
   written by its insert -- no delivery rows, no payloads, no statement of its own.
3. handover: after commit, one wake-up of the claimer of due events (automation.due:
   it evaluates the workflows and fans out the deliveries, set-based), coalesced in
   project.background so most requests under load publish nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from automation.due import CLAIM_TASK
from automation.segments.selectors import SegmentStamp, loaded_segments
from automation.segments.selectors import stamp_sql_parts as segment_stamp_sql_parts
from automation.webhooks.deliveries import event_deliveries_cancel
from automation.webhooks.models import Endpoint
from automation.workflows.selectors import active_workflows
from automation.workflows.stamp import WorkflowStamp, stamp_sql_parts
from events_app.ingest_hooks import EventPlan, PreparedEvent
from events_app.models import Event
from project import background
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
    # Served by the partial index endpoint_active_kind_idx. An endpoint with no event
    # type but reserved keys (only `customer.deleted`) takes no events: left out.
    subscriptions = (
        f"SELECT '{SUBSCRIPTION}', e.id, t.{type_column}",
        f"FROM {Endpoint._meta.db_table} e "
        f"LEFT JOIN {through.db_table} t ON t.{endpoint_column} = e.id "
        f"WHERE e.kind = '{Endpoint.Kind.SUBSCRIPTION.value}' AND e.active "
        f"AND NOT (t.{type_column} IS NULL AND e.reserved_event_types <> '[]')",
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


def events_subscribed(
    *, events: Sequence[PreparedEvent], subscriptions: dict[str, set[str]]
) -> list[str]:
    """Ids of the events that active subscriptions take (the claimer makes their
    deliveries). `subscriptions`: endpoint id -> its event type ids (empty = every
    type), as `IngestFacts` holds them."""
    if not subscriptions:
        return []
    if any(not types for types in subscriptions.values()):
        return [event.id for event in events]
    taken = set().union(*subscriptions.values())
    return [event.id for event in events if event.event_type_id in taken]


def events_plan(*, events: Sequence[PreparedEvent], facts: IngestFacts) -> dict[str, EventPlan]:
    """What automation writes with `events` (see the module's docstring)."""
    plans: dict[str, EventPlan] = {}
    # Goal event types too: their events may end unfinished runs (workflows.goals).
    trigger_types = active_workflows(stamp=facts.workflow_stamp).due_type_ids
    if trigger_types:
        for event in events:
            if event.event_type_id in trigger_types:
                plans[event.id] = EventPlan(automation_pending=True)
    for event_id in events_subscribed(events=events, subscriptions=facts.subscriptions):
        plans[event_id] = EventPlan(automation_pending=True, is_delivered=False)
    # Segments: events whose type a segment reads, or whose customer is new, are
    # evaluated too (automation.segments.services.segments_refresh_for_events).
    segments = loaded_segments(stamp=facts.segment_stamp)
    for event in events:
        if segments.ordered and (
            event.new_customer is not None or event.event_type_id in segments.event_type_ids
        ):
            plans.setdefault(event.id, EventPlan()).automation_pending = True
    return plans


# ---------------------------------------------------------------- 3. handover


def events_handover(*, events: Sequence[PreparedEvent]) -> None:
    """After the insert of `events` (those stored), on commit: one wake-up of the
    claimer if any of them is due (never raises: the claimer's periodic job covers a
    wake-up that could not be sent)."""
    if any(e.automation_pending for e in events):
        background.wake_on_commit(CLAIM_TASK)


class AutomationIngest:
    """automation's implementation of events_app.ingest_hooks.IngestHook."""

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
