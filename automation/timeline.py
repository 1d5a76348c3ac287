"""Automation's part of a customer's story (customers.timeline), registered in
AutomationConfig.ready(): segment entries and exits as entries of their own, and under
each event the workflow runs it started and the webhook deliveries it caused.

Runs and deliveries are read for the events of one page (the unique (event, workflow)
constraint's index and delivery_event_idx), so a busy customer's page costs what a
quiet one's does. Runs that no event started (a segment entry or exit, a broadcast)
are entries of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.urls import reverse

from automation.segments.selectors import customer_segments
from automation.webhooks.models import Delivery
from automation.workflows.models import WorkflowRun
from customers.timeline import (
    TimelineCursor,
    TimelineDetail,
    TimelineEntry,
    timeline_detail_register,
    timeline_source_register,
)
from events_app.timeline import EVENT_SOURCE

SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"
TRIGGERED_RUN = "triggered_run"


def _membership_key(pk: int) -> str:
    return f"{pk:020d}"  # text order is number order (customers.timeline)


def _segment_entries(
    source: str, customer_id: str, after: TimelineCursor | None, limit: int
) -> list[TimelineEntry]:
    """Entries (or exits) of the customer's segment stays after `after`, newest first.

    Read through segmentmembership_customer_idx: a customer's stays are one per
    entry into a segment, few next to their events.
    """
    at_field = "entered_at" if source == SEGMENT_ENTERED else "exited_at"
    queryset = customer_segments(customer_id=customer_id, history=True)
    if source == SEGMENT_EXITED:
        queryset = queryset.filter(exited_at__isnull=False)
    if after is not None:
        queryset = queryset.filter(after.before(source=source, at_field=at_field, key_field="id"))
    stays = queryset.order_by(f"-{at_field}", "-id")[:limit]
    return [
        TimelineEntry(
            at=getattr(stay, at_field),
            source=source,
            key=_membership_key(stay.pk),
            kind="entered segment" if source == SEGMENT_ENTERED else "left segment",
            title=stay.segment.name,
            url=reverse("admin:automation_segment_change", args=[stay.segment_id]),
        )
        for stay in stays
    ]


def segment_entered_entries(
    customer_id: str, after: TimelineCursor | None, limit: int
) -> Sequence[TimelineEntry]:
    return _segment_entries(SEGMENT_ENTERED, customer_id, after, limit)


def segment_exited_entries(
    customer_id: str, after: TimelineCursor | None, limit: int
) -> Sequence[TimelineEntry]:
    return _segment_entries(SEGMENT_EXITED, customer_id, after, limit)


def triggered_run_entries(
    customer_id: str, after: TimelineCursor | None, limit: int
) -> Sequence[TimelineEntry]:
    """Runs a segment transition or a broadcast started (no event), newest first.

    Read through workflowrun_customer_idx (customer first).
    """
    queryset = WorkflowRun.objects.filter(customer_id=customer_id, event__isnull=True)
    if after is not None:
        queryset = queryset.filter(
            after.before(source=TRIGGERED_RUN, at_field="created_at", key_field="id")
        )
    runs = queryset.select_related("workflow").order_by("-created_at", "-id")[:limit]
    return [
        TimelineEntry(
            at=run.created_at,
            source=TRIGGERED_RUN,
            key=run.pk,
            kind="workflow run",
            title=_run_text(run) + _trigger_text(run.trigger),
            url=reverse("admin:automation_workflowrun_change", args=[run.pk]),
            status=run.status,
        )
        for run in runs
    ]


def _trigger_text(trigger: dict[str, str] | None) -> str:
    if not trigger:
        return ""
    if "broadcast" in trigger:
        return f" (broadcast “{trigger['broadcast']}” to segment “{trigger.get('segment')}”)"
    return f" ({trigger.get('on')} segment “{trigger.get('segment')}”)"


def _run_text(run: WorkflowRun) -> str:
    if run.error:
        return f"workflow “{run.workflow.name}”: {run.error}"
    done = [f"{outcome.get('type', '?')} {outcome.get('status', '')}" for outcome in run.outcomes]
    return f"workflow “{run.workflow.name}”" + (f": {', '.join(done)}" if done else "")


def _delivery_text(delivery: Delivery) -> str:
    text = f"webhook to {delivery.endpoint.url}"
    if delivery.last_status_code:
        text += f" (HTTP {delivery.last_status_code})"
    attempts = delivery.attempt_count
    return text + f", {attempts} attempt{'' if attempts == 1 else 's'}"


def event_details(entries: Sequence[TimelineEntry]) -> None:
    """Hang each event's workflow runs and webhook deliveries under it (two queries)."""
    events = {entry.key: entry for entry in entries if entry.source == EVENT_SOURCE}
    if not events:
        return
    runs = (
        WorkflowRun.objects.filter(event_id__in=list(events))
        .select_related("workflow")
        .order_by("created_at", "id")
    )
    for run in runs:
        assert run.event_id is not None  # filtered on it
        events[run.event_id].details.append(
            TimelineDetail(
                kind="workflow run",
                text=_run_text(run),
                status=run.status,
                url=reverse("admin:automation_workflowrun_change", args=[run.pk]),
                at=run.finished_at or run.created_at,
            )
        )
    deliveries = (
        Delivery.objects.filter(event_id__in=list(events)).select_related("endpoint").order_by("id")
    )
    for delivery in deliveries:
        assert delivery.event_id is not None  # filtered on it
        events[delivery.event_id].details.append(
            TimelineDetail(
                kind="webhook delivery",
                text=_delivery_text(delivery),
                status=delivery.status,
                url=reverse("admin:automation_delivery_change", args=[delivery.pk]),
                at=delivery.completed_at or delivery.created_at,
            )
        )


def timeline_register() -> None:
    timeline_source_register(SEGMENT_ENTERED, segment_entered_entries)
    timeline_source_register(SEGMENT_EXITED, segment_exited_entries)
    timeline_source_register(TRIGGERED_RUN, triggered_run_entries)
    timeline_detail_register("automation", event_details)
