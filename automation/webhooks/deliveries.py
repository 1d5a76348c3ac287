"""Deliveries: creating them, handing them to the sender, redelivering, is_delivered.

Everything that calls out (webhook subscriptions, scheduled callbacks, workflow
actions, endpoint pings) creates a `Delivery` with `delivery_create` (or builds
rows with `delivery_build`) inside its own transaction; after commit a task runs
`automation.webhooks.sender.deliver_one`. The periodic dispatcher there finds rows
whose message was lost, whose worker died, or whose retry is due, so the database
row — never the broker — decides what is still to be sent.

An event's is_delivered is false while any of its deliveries is pending or failed.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from automation.webhooks.models import Delivery, Endpoint
from events_app.models import Event
from project import background
from project.errors import ConflictError
from project.ids import new_public_id

logger = logging.getLogger(__name__)

# A task was enqueued for the row: the dispatcher leaves it alone this long before
# assuming the broker message was lost and enqueueing it again.
QUEUE_LEASE = timedelta(minutes=5)

# The send task (automation.webhooks.tasks), enqueued by name through project.background.
SEND_TASK = "automation.deliver_one"

PENDING = Delivery.Status.PENDING
OUTSTANDING = (Delivery.Status.PENDING, Delivery.Status.FAILED)


# ---------------------------------------------------------------- creating deliveries


def message_id_new() -> str:
    """A new Standard Webhooks message id (`webhook-id`): kept across retries of a delivery."""
    return "msg_" + secrets.token_hex(16)


def delivery_build(
    endpoint: Endpoint,
    payload: dict[str, Any],
    event_id: str | None,
    give_up_at: datetime | None,
    now: datetime,
) -> Delivery:
    """An unsaved Delivery due now and marked queued (the caller saves it and enqueues it
    with `deliveries_enqueue_on_commit`); shared by every path that creates deliveries."""
    return Delivery(
        endpoint=endpoint,
        event_id=event_id,
        message_id=message_id_new(),
        payload=payload,
        next_attempt_at=now,
        queued_until=now + QUEUE_LEASE,
        give_up_at=give_up_at,
        created_at=now,
    )


def deliveries_enqueue_on_commit(delivery_ids: list[str]) -> None:
    """After the caller's transaction commits, hand each delivery to a send task.

    Failing to enqueue is logged, never raised: the rows are committed and the
    dispatcher sends them once their QUEUE_LEASE lapses.
    """
    if not delivery_ids:
        return

    def send() -> None:
        try:
            background.enqueue_many(SEND_TASK, [(i,) for i in delivery_ids])
        except Exception:
            # The rows are committed: the dispatcher sends them once QUEUE_LEASE lapses.
            # Failing the caller (an API request whose events are stored) would be worse.
            logger.exception("Could not enqueue %d deliveries; dispatcher will", len(delivery_ids))

    transaction.on_commit(send)


def delivery_create(
    *,
    endpoint: Endpoint,
    payload: dict[str, Any],
    event: Event | None = None,
    give_up_at: datetime | None = None,
) -> Delivery:
    """Create one delivery in the caller's transaction; it is sent after commit.

    `payload` is the JSON body. With `event`, the event counts as not delivered
    until this delivery succeeds (or the event is marked delivered). `give_up_at`
    stops retries after that instant (schedules: before the next run).
    """
    delivery = delivery_build(
        endpoint, payload, event.pk if event else None, give_up_at, timezone.now()
    )
    delivery.save(force_insert=True)
    if event is not None and event.is_delivered:
        Event.objects.filter(pk=event.pk).update(is_delivered=False)
        event.is_delivered = False
    deliveries_enqueue_on_commit([delivery.pk])
    return delivery


@functools.cache
def _event_serializer() -> Any:
    # One instance for the process: building a serializer deep-copies its fields
    # (~0.5 ms), which per event was a third of a 1000-event batch's ingest time.
    # to_representation only reads the instance, so sharing it is safe.
    from events_app.api.serializers import EventSerializer

    return EventSerializer()


def event_payload(event: Event) -> dict[str, Any]:
    """The body of an event delivery: the event object exactly as GET /events/{id} shows it."""
    return dict(_event_serializer().to_representation(event))


class NewEvent(Protocol):
    """What ingestion hands over before its insert: the prepared values of an event."""

    @property
    def id(self) -> str: ...

    @property
    def event_type_id(self) -> str: ...


def subscriptions_matching(
    *, events: Sequence[NewEvent], subscriptions: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Event id -> the active subscription endpoints the event goes to, newest first
    (Endpoint.Meta.ordering: ids are time-ordered); events that match none are left out.

    `subscriptions`: active subscription endpoint id -> its event type ids (empty =
    every type), as automation.ingest reads them for the insert. Ingestion writes
    is_delivered = false with the matching events and, in the same statement, their
    deliveries (`deliveries_plan_for_new_events`).
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
    """A webhook delivery of a new event, planned before the insert that writes it:
    events_app.ingest_pg inserts it in the event's own statement (the portable path
    builds the row with `as_delivery`). Due now; `queued_until` is set when a send
    task is enqueued for it after the insert (`deliveries_enqueue_on_commit`)."""

    endpoint_id: str
    created_at: datetime
    queued_until: datetime | None
    id: str = field(default_factory=new_public_id)
    message_id: str = field(default_factory=message_id_new)

    def as_delivery(self, event_id: str, payload: dict[str, Any]) -> Delivery:
        return Delivery(
            id=self.id,
            endpoint_id=self.endpoint_id,
            event_id=event_id,
            message_id=self.message_id,
            payload=payload,
            next_attempt_at=self.created_at,
            queued_until=self.queued_until,
            created_at=self.created_at,
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
    # A message per delivery cost ~0.7 ms each (2,000 per batch with two endpoints).
    # An endpoint never sends more than its concurrency limit at once, so plan that
    # many per endpoint as queued; the rest stay due and unqueued: each worker's
    # follow-on loop claims the endpoint's next due delivery after a success, and the
    # dispatcher (every tick) enqueues free slots for whatever is left after a failure.
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


def deliveries_enqueue_planned(planned: Iterable[PlannedDelivery]) -> None:
    """After the insert of their events commits, send those planned as queued."""
    deliveries_enqueue_on_commit([d.id for d in planned if d.queued_until is not None])


# ---------------------------------------------------------------- is_delivered


def events_refresh_delivered(
    event_ids: Iterable[str] | QuerySet[Any], *, except_endpoint: Endpoint | None = None
) -> None:
    """is_delivered = no delivery of the event is pending or failed.

    event_ids may be a queryset of ids: it is then a subquery, never loaded.
    except_endpoint: its deliveries are not counted (they are about to be deleted
    in the same transaction).
    """
    if not isinstance(event_ids, QuerySet):
        event_ids = list(dict.fromkeys(event_ids))
        if not event_ids:
            return
    outstanding = Delivery.objects.filter(event=OuterRef("pk"), status__in=OUTSTANDING)
    if except_endpoint is not None:
        outstanding = outstanding.exclude(endpoint=except_endpoint)
    Event.objects.filter(pk__in=event_ids).update(is_delivered=~Exists(outstanding))


def event_mark_delivered(*, event: Event) -> Event:
    """Seed 001: mark an event delivered; its pending and failed deliveries are cancelled."""
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(event=event, status__in=OUTSTANDING).update(
            status=Delivery.Status.CANCELLED,
            next_attempt_at=None,
            completed_at=now,
            last_error="Cancelled: the event was marked delivered.",
        )
        Event.objects.filter(pk=event.pk).update(is_delivered=True)
    event.is_delivered = True
    return event


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again now, with the same webhook-id, restarting its retry schedule."""
    if not Endpoint.objects.filter(pk=delivery.endpoint_id, active=True).exists():
        raise ConflictError("The webhook is disabled; enable it before redelivering.")
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=PENDING,
            retry_step=0,
            next_attempt_at=now,
            queued_until=now + QUEUE_LEASE,
            completed_at=None,
            give_up_at=None,
        )
        if delivery.event_id is not None:
            Event.objects.filter(pk=delivery.event_id).update(is_delivered=False)
        deliveries_enqueue_on_commit([delivery.pk])
    delivery.refresh_from_db()
    return delivery


def deliveries_cancel_pending(*, endpoint_ids: Iterable[str], reason: str) -> int:
    """Cancel every pending delivery of these endpoints: nothing more is sent for them.

    Returns how many were cancelled. An attempt already in flight completes, and
    the sender discards its result (it records only on a row still pending).
    """
    endpoint_ids = list(endpoint_ids)
    if not endpoint_ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        pending = Delivery.objects.filter(endpoint_id__in=endpoint_ids, status=PENDING)
        event_ids = list(pending.filter(event__isnull=False).values_list("event_id", flat=True))
        cancelled = pending.update(
            status=Delivery.Status.CANCELLED,
            next_attempt_at=None,
            completed_at=now,
            last_error=f"Cancelled: {reason}",
        )
        events_refresh_delivered(event_ids)
    return cancelled
