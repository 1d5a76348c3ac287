"""An event's processing status: pending until the integration marks it completed
or failed; and its delivery status (PATCH /events/{event_id}, events_app.api.event_patch)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from events_app.ingest_hooks import ingest_hook
from events_app.models import Event
from events_app.selectors import event_get
from project.errors import ConflictError, NotFoundError, ValidationFailed


def event_mark_processed(*, event_id: str, status: str) -> None:
    """Mark a pending event completed or failed, once.

    One conditional UPDATE decides: of any number of concurrent calls exactly one
    matches `state = pending` (PostgreSQL re-checks the WHERE after waiting for
    the row lock), the others change nothing and get a 409. No read-modify-write.
    """
    now = timezone.now()
    if status == Event.State.COMPLETED.label:
        changes = {"state": Event.State.COMPLETED, "completed_at": now, "failed_at": None}
    elif status == Event.State.FAILED.label:
        changes = {"state": Event.State.FAILED, "failed_at": now, "completed_at": None}
    else:
        raise ValidationFailed(
            f"status must be 'completed' or 'failed', got '{status}'.",
            details={"status": ["Must be 'completed' or 'failed'."]},
        )
    updated = Event.objects.filter(pk=event_id, state=Event.State.PENDING).update(**changes)
    if updated:
        return
    # Only to choose the error: the UPDATE above already decided nothing changes.
    if Event.objects.filter(pk=event_id).exists():
        raise ConflictError("Event already processed")
    raise NotFoundError(f"Event '{event_id}' not found.")


def event_mark_delivered(*, event_id: str) -> Event:
    """Seed 001: mark an event delivered. In the same transaction the ingest hook
    (automation) cancels the event's pending and failed webhook deliveries."""
    with transaction.atomic():
        event = event_get(event_id=event_id)
        # created_at: PostgreSQL updates in the event's month partition only.
        Event.objects.filter(pk=event.pk, created_at=event.created_at).update(is_delivered=True)
        event.is_delivered = True
        hook = ingest_hook()
        if hook is not None:
            hook.event_marked_delivered(event)
    return event
