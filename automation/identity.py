"""Automation's part in customer merges (customers.identity.hooks), registered by
AutomationConfig.ready():

- preview: for a dry run, inside its rolled-back transaction, the segment engine's own
  refresh (quiet: no transition hook) of the merged customer, compared with the
  primary's and the secondary's stays before the merge;
- merged: the internal `customer.merged` event, ingested for the primary through
  events_app.ingestion like any other (workflows trigger on it), and, after commit,
  the events the merge moved evaluated for the workflows whose
  `trigger_on_merged_events` is on -- through the claimer's evaluation
  (automation.workflows.evaluation), so once per (workflow, event) as the runs'
  unique constraint ensures. Other workflows never see moved events again;
- undone: a run and a delivery belong to their event's customer, so the runs and
  deliveries the primary made after the merge for events the undo gives back to the
  secondary go with them (the undo itself moves back only the rows the merge moved).
  Otherwise such a run would stay on the primary naming the secondary's event, and a
  later delete of the secondary would leave it pointing at an event that is gone and
  would not redact such a delivery's payload, which holds the secondary's event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from django.db import transaction
from django.utils import timezone

from automation.segments.membership import memberships_refresh
from automation.segments.models import SegmentMembership
from automation.segments.selectors import loaded_segments
from automation.webhooks.models import Delivery
from automation.workflows.evaluation import events_evaluate_claimed
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import runs_hand_on
from customers.identity.models import CustomerMerge, MergedRow
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType, PropertyDefinition
from events_app.schemas import EventCreateIn

# The internal event type of merges; not a slug, so no client-made type can take it.
MERGED_EVENT_TYPE = "customer.merged"
MERGED_PROPERTIES = (
    "merge_id",
    "primary_customer_id",
    "secondary_customer_id",
    "primary_external_id",
    "secondary_external_id",
)
# Moved events are read and evaluated this many at a time.
EVALUATION_BATCH = 500


def _current_keys(customer_id: str) -> set[str]:
    return set(
        SegmentMembership.objects.filter(
            customer_id=customer_id, exited_at__isnull=True
        ).values_list("segment__key", flat=True)
    )


def merge_segments_preview(primary_id: str, secondary_id: str) -> Callable[[], dict[str, Any]]:
    """Read the stays before the merge; the returned function, called after it (in the
    same rolled-back transaction), refreshes the merged customer and compares."""
    primary_before, secondary_before = _current_keys(primary_id), _current_keys(secondary_id)

    def after() -> dict[str, Any]:
        cache = loaded_segments()
        if cache.ordered:
            memberships_refresh(segments=cache.ordered, customer_ids=[primary_id], quiet=True)
        merged = _current_keys(primary_id)
        return {
            "entered": sorted(merged - primary_before),
            "exited": sorted(primary_before - merged),
            "secondary_exited": sorted(secondary_before - merged),
        }

    return after


def _merged_type() -> EventType:
    event_type, created = EventType.objects.get_or_create(
        key=MERGED_EVENT_TYPE,
        defaults={
            "name": "Customer merged",
            "description": "Emitted by Herald when two customers are merged.",
        },
    )
    if created:
        PropertyDefinition.objects.bulk_create(
            [
                PropertyDefinition(event_type=event_type, property_id=p, name=p)
                for p in MERGED_PROPERTIES
            ]
        )
    return event_type


def merged_event_emit(merge: CustomerMerge) -> str:
    """Ingest the `customer.merged` event for the primary; returns its id."""
    _merged_type()
    values = {
        "merge_id": merge.pk,
        "primary_customer_id": merge.primary_id,
        "secondary_customer_id": merge.secondary_id,
        "primary_external_id": merge.primary_external_id,
        "secondary_external_id": merge.secondary_external_id,
    }
    body = {
        "event": {"event_type": MERGED_EVENT_TYPE, "customer_id": merge.primary_id},
        "property_records": [
            {"property_id": key, "property_value": value}
            for key, value in values.items()
            if value is not None
        ],
    }
    prepared, invalid = events_prepare(items=[msgspec.convert(body, EventCreateIn)])
    if invalid:
        raise ValueError(f"customer.merged event refused: {invalid[0].error}")
    return events_store(prepared=prepared).stored[0].id


def merged_events_evaluate(*, merge_id: str) -> int:
    """Evaluate the events the merge moved for the active workflows that take merged
    events (`trigger_on_merged_events`); returns the runs made with actions to run."""
    flagged = {
        w.pk: {t.pk for t in w.trigger_event_types.all()}
        for w in Workflow.objects.filter(active=True, trigger_on_merged_events=True)
    }
    type_ids = set().union(*flagged.values()) if flagged else set()
    if not type_ids:
        return 0
    recorded = (
        MergedRow.objects.filter(merge_id=merge_id, table=Event._meta.label)
        .order_by("pk")
        .values_list("row_ids", flat=True)
    )
    made = 0
    # A MergedRow's keys at a time (a bounded list), their events in batches.
    for keys in recorded.iterator(chunk_size=1):
        events = Event.objects.filter(pk__in=keys, event_type_id__in=type_ids).order_by("pk")
        after = ""
        while batch := list(events.filter(pk__gt=after)[:EVALUATION_BATCH]):
            with transaction.atomic():
                run_ids = events_evaluate_claimed(
                    events=batch, problems={}, now=timezone.now(), workflow_ids=set(flagged)
                )
            runs_hand_on(run_ids)
            made += len(run_ids)
            after = batch[-1].pk
    return made


def merge_undone_follow(merge: CustomerMerge) -> None:
    """The undone hook, in the undo's transaction: the primary's runs and deliveries of
    events that are the secondary's again move to the secondary. One UPDATE each."""
    given_back = Event.objects.filter(customer_id=merge.secondary_id).values("id")
    for model in (WorkflowRun, Delivery):
        model.objects.filter(customer_id=merge.primary_id, event_id__in=given_back).update(
            customer_id=merge.secondary_id
        )


def merge_automate(merge: CustomerMerge) -> None:
    """The merged hook: the event now, in the merge's transaction; the flagged
    evaluation after its commit (the moved events are the primary's by then)."""
    merged_event_emit(merge)
    merge_id = merge.pk
    transaction.on_commit(lambda: merged_events_evaluate(merge_id=merge_id))
