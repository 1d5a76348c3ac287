"""Deliveries: creating them, handing them to the sender, redelivering, is_delivered.

Everything that calls out (webhook subscriptions, scheduled callbacks, workflow
actions, endpoint pings) creates a `Delivery` with `delivery_create` (or builds
rows with `delivery_build`; new events' subscriptions: `deliveries_fan_out`, in the
claim of due events) inside its own transaction; after commit a task runs
`automation.webhooks.sender.deliver_one`. The periodic dispatcher there finds rows
whose message was lost, whose worker died, or whose retry is due, so the database
row — never the broker — decides what is still to be sent.

An event's is_delivered is false while any of its deliveries is pending or failed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from automation.webhooks.models import Delivery, Endpoint
from events_app.models import Event
from events_app.payloads import event_payload
from project import background
from project.errors import ConflictError

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
    customer_id: str | None = None,
) -> Delivery:
    """An unsaved Delivery due now and marked queued (the caller saves it and enqueues it
    with `deliveries_enqueue_on_commit`); shared by every path that creates deliveries."""
    return Delivery(
        endpoint=endpoint,
        event_id=event_id,
        customer_id=customer_id,
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
        except background.BrokerUnavailable:
            pass  # the breaker logged it; the dispatcher sends them once QUEUE_LEASE lapses
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
    customer_id: str | None = None,
    give_up_at: datetime | None = None,
) -> Delivery:
    """Create one delivery in the caller's transaction; it is sent after commit.

    `payload` is the JSON body. With `event`, the event counts as not delivered
    until this delivery succeeds (or the event is marked delivered), and the delivery
    is about the event's customer unless `customer_id` names one (a run's). `give_up_at`
    stops retries after that instant (schedules: before the next run).
    """
    if customer_id is None and event is not None:
        customer_id = event.customer_id
    delivery = delivery_build(
        endpoint, payload, event.pk if event else None, give_up_at, timezone.now(), customer_id
    )
    delivery.save(force_insert=True)
    if event is not None and event.is_delivered:
        Event.objects.filter(pk=event.pk).update(is_delivered=False)
        event.is_delivered = False
    deliveries_enqueue_on_commit([delivery.pk])
    return delivery


def _subscriptions() -> dict[str, set[str]]:
    """Active subscription endpoint id -> its event type ids (empty = every type), in
    one query (served by endpoint_active_kind_idx)."""
    subscriptions: dict[str, set[str]] = {}
    reserved_only: set[str] = set()
    for endpoint_id, type_id, reserved in Endpoint.objects.filter(
        kind=Endpoint.Kind.SUBSCRIPTION, active=True
    ).values_list("id", "event_types", "reserved_event_types"):
        types = subscriptions.setdefault(endpoint_id, set())
        if type_id is not None:
            types.add(type_id)
        elif reserved:
            # No event type but reserved keys (`customer.deleted` only): no events at all,
            # not every event as an empty list would mean.
            reserved_only.add(endpoint_id)
    return {k: v for k, v in subscriptions.items() if k not in reserved_only}


def deliveries_fan_out(*, events: Sequence[Event], now: datetime) -> list[str]:
    """New events' webhook deliveries, in the caller's transaction (the claim of due
    events, automation.due); returns the ids of the deliveries created.

    `events`: those ingested while subscriptions took them (is_delivered false). One
    delivery per (event, active subscription that takes its type), newest endpoint
    first; its payload is the event as
    GET /events/{id} shows it, its message id (`webhook-id`) made here, once. A pair
    that has a delivery already is skipped, so a repeated fan-out creates nothing. Of
    each endpoint, as many as its concurrency limit are handed to send tasks after
    commit; the rest stay due (each sending worker's follow-on and the dispatcher take
    them). An event left without an outstanding delivery counts as delivered again.
    """
    subscriptions = _subscriptions()
    event_ids = [e.pk for e in events]
    existing = (
        set(
            Delivery.objects.filter(event_id__in=event_ids, endpoint_id__in=subscriptions)
            .values_list("event_id", "endpoint_id")
            .order_by()
        )
        if subscriptions
        else set()
    )
    limit = max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1)
    queued_per_endpoint: dict[str, int] = {}
    rows: list[Delivery] = []
    bare: list[str] = []
    for event in events:
        endpoint_ids = sorted(
            (
                endpoint_id
                for endpoint_id, types in subscriptions.items()
                if (not types or event.event_type_id in types)
                and (event.pk, endpoint_id) not in existing
            ),
            reverse=True,
        )
        if not endpoint_ids:
            bare.append(event.pk)
            continue
        event.is_delivered = False  # as the payload shows it until the deliveries succeed
        payload = event_payload(event)
        for endpoint_id in endpoint_ids:
            seen = queued_per_endpoint.get(endpoint_id, 0)
            queued_per_endpoint[endpoint_id] = seen + 1
            rows.append(
                Delivery(
                    endpoint_id=endpoint_id,
                    event_id=event.pk,
                    customer_id=event.customer_id,
                    message_id=message_id_new(),
                    payload=payload,
                    next_attempt_at=now,
                    queued_until=now + QUEUE_LEASE if seen < limit else None,
                    created_at=now,
                )
            )
    if rows:
        Delivery.objects.bulk_create(rows)
        deliveries_enqueue_on_commit([d.pk for d in rows if d.queued_until is not None])
    if bare:
        events_refresh_delivered(bare)
    return [d.pk for d in rows]


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


def event_deliveries_cancel(*, event: Event) -> None:
    """Cancel the event's pending and failed deliveries: it was marked delivered (seed 001,
    by events_app through automation.ingest)."""
    Delivery.objects.filter(event=event, status__in=OUTSTANDING).update(
        status=Delivery.Status.CANCELLED,
        next_attempt_at=None,
        completed_at=timezone.now(),
        last_error="Cancelled: the event was marked delivered.",
    )


def event_mark_delivered(*, event: Event) -> Event:
    """Seed 001: mark an event delivered; its pending and failed deliveries are cancelled."""
    with transaction.atomic():
        event_deliveries_cancel(event=event)
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
