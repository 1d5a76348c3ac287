"""The one sender: endpoints, deliveries, signing, retries and the is_delivered flag.

Everything that calls out (webhook subscriptions, scheduled callbacks, workflow
actions) creates a `Delivery` with `delivery_create` inside its own transaction;
after commit a task runs `deliver_one`. The periodic `dispatch_due_deliveries`
finds rows whose message was lost, whose worker died, or whose retry is due, so
the database row — never the broker — decides what is still to be sent.

Retry policy (published in docs/operations.md): success is a 2xx; network
errors, timeouts, 408, 429 and 5xx are retried after RETRY_SCHEDULE (+0-10 %
jitter, never sooner than Retry-After asks); other statuses, redirects and
refused URLs are final; 410 disables the endpoint; an endpoint failing for
ENDPOINT_DISABLE_AFTER without a success is disabled.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from standardwebhooks import Webhook

from automation import outbound
from automation.models import Delivery, DeliveryAttempt, Endpoint
from events_app.models import Event, EventType
from project.errors import ConflictError, NotFoundError, ValidationFailed

logger = logging.getLogger(__name__)

# Waits after the 1st, 2nd, … failed attempt: 10 attempts over about 2.6 days.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
)
RETRY_JITTER = 0.10  # up to +10 %, so retries of one outage do not arrive in lockstep
MAX_RETRY_AFTER = timedelta(hours=24)
RETRYABLE_STATUSES = frozenset({408, 429})
ENDPOINT_DISABLE_AFTER = timedelta(days=5)
SECRET_ROTATION_OVERLAP = timedelta(hours=24)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
# A task was enqueued for the row: the dispatcher leaves it alone this long before
# assuming the broker message was lost and enqueueing it again.
QUEUE_LEASE = timedelta(minutes=5)
# After a success, a worker goes on with the same endpoint's due deliveries this long.
FOLLOW_ON_SECONDS = 15.0
FOLLOW_ON_CANDIDATES = 5
RESPONSE_EXCERPT_CHARS = 2000
MAX_DISPATCH_CHUNKS = 20  # bound one dispatcher call; the next tick continues
SUCCESS_RECORD_RESOLUTION = timedelta(minutes=1)
USER_AGENT = "Herald-Webhooks/1.0"
# The error of an attempt the outbound guard refused (nothing was sent): the one attempt
# that does not count as a call (automation.schedules reads it).
GUARD_REFUSED = "Refused by the outbound guard: "

PENDING = Delivery.Status.PENDING
OUTSTANDING = (Delivery.Status.PENDING, Delivery.Status.FAILED)


# ---------------------------------------------------------------- endpoints


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def endpoint_check_url(url: str, *, field: str = "url") -> None:
    """Refuse an endpoint URL at save time (the guard checks again at every call)."""
    try:
        outbound.check_url(url)
    except outbound.OutboundRefused as exc:
        raise ValidationFailed(f"URL not allowed: {exc}", details={field: [str(exc)]}) from None
    except outbound.OutboundFailed as exc:
        raise ValidationFailed(f"URL cannot be used: {exc}", details={field: [str(exc)]}) from None


def _event_types_by_key(keys: Iterable[str]) -> list[EventType]:
    wanted = list(dict.fromkeys(keys))
    found = {t.key: t for t in EventType.objects.filter(key__in=wanted)}
    unknown = [k for k in wanted if k not in found]
    if unknown:
        raise ValidationFailed(
            f"Unknown event type(s): {', '.join(unknown)}.",
            details={"event_types": [f"Unknown event type '{k}'." for k in unknown]},
        )
    return [found[k] for k in wanted]


def endpoint_create(
    *,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    active: bool = True,
    kind: str = Endpoint.Kind.SUBSCRIPTION,
) -> tuple[Endpoint, str]:
    """Create an endpoint; return it with its signing secret (shown once)."""
    endpoint_check_url(url)
    types = _event_types_by_key(event_types or [])
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            kind=kind, url=url, description=description, active=active, secret=new_secret()
        )
        endpoint.event_types.set(types)
    return endpoint, endpoint.secret


def endpoint_update(*, endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
    """Update url, description, event_types (keys) or active; re-activation clears health."""
    with transaction.atomic():
        if "url" in fields:
            endpoint_check_url(fields["url"])
            endpoint.url = fields["url"]
        if "description" in fields:
            endpoint.description = fields["description"]
        if "event_types" in fields:
            endpoint.event_types.set(_event_types_by_key(fields["event_types"] or []))
        if "active" in fields and fields["active"] != endpoint.active:
            endpoint.active = fields["active"]
            if endpoint.active:
                endpoint.disabled_reason = ""
                endpoint.disabled_at = None
                endpoint.first_failure_at = None
            else:
                endpoint.disabled_reason = "Disabled by a user."
                endpoint.disabled_at = timezone.now()
        endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete an endpoint and its delivery log; their events' is_delivered is recomputed.

    The log is deleted with set-based SQL: an endpoint can have millions of deliveries,
    and the ORM's cascade (attempts, schedule runs pointing at deliveries) would load
    every one into memory first. Only events with an outstanding delivery here can
    change their is_delivered, so only those are recomputed.
    """
    from automation.models import ScheduleRun

    with transaction.atomic():
        event_ids = list(
            Delivery.objects.filter(endpoint=endpoint, event__isnull=False, status__in=OUTSTANDING)
            .values_list("event_id", flat=True)
            .distinct()
        )
        # Attempts have no dependents, so the ORM deletes them in one statement; the
        # deliveries themselves need a plain DELETE (their reverse relations would make
        # the ORM collect every row).
        DeliveryAttempt.objects.filter(delivery__endpoint=endpoint).delete()
        ScheduleRun.objects.filter(delivery__endpoint=endpoint).update(delivery=None)
        table = connection.ops.quote_name(Delivery._meta.db_table)
        with connection.cursor() as cursor:
            # Only the endpoint id is data, and it is a parameter.
            cursor.execute(f"DELETE FROM {table} WHERE endpoint_id = %s", [endpoint.pk])  # noqa: S608
        endpoint.delete()
        _events_refresh_delivered(event_ids)


def endpoint_rotate_secret(*, endpoint: Endpoint) -> str:
    """Issue a new secret; the old one keeps signing for SECRET_ROTATION_OVERLAP."""
    now = timezone.now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + SECRET_ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    return endpoint.secret


def endpoint_disable(*, endpoint: Endpoint, reason: str) -> None:
    """Stop sending to an endpoint: mark it inactive with a reason, fail its pending work."""
    now = timezone.now()
    with transaction.atomic():
        Endpoint.objects.filter(pk=endpoint.pk).update(
            active=False, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        endpoint.active, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
        pending = Delivery.objects.filter(endpoint=endpoint, status=PENDING)
        event_ids = list(pending.filter(event__isnull=False).values_list("event_id", flat=True))
        pending.update(
            status=Delivery.Status.FAILED,
            next_attempt_at=None,
            completed_at=now,
            last_error=f"Endpoint disabled: {reason}",
        )
        _events_refresh_delivered(event_ids)
    logger.warning("Endpoint %s disabled: %s", endpoint.pk, reason)


def endpoint_ping(*, endpoint: Endpoint) -> Delivery:
    """Send a signed test message (`webhook.test`) through the normal delivery path."""
    payload = {
        "type": "webhook.test",
        "webhook_id": endpoint.pk,
        "sent_at": timezone.now().isoformat(),
    }
    with transaction.atomic():
        return delivery_create(endpoint=endpoint, payload=payload)


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
        from automation.tasks import deliver_one_task, enqueue_many

        try:
            enqueue_many(deliver_one_task, [(i,) for i in delivery_ids])
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
    every type), as automation.ingest_facts reads them for the insert. Ingestion writes
    is_delivered = false with the matching events and, in the same transaction, their
    deliveries (`deliveries_create_for_new_events`).
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


def deliveries_create_for_new_events(
    *, events: Sequence[Event], endpoints: dict[str, list[str]]
) -> list[Delivery]:
    """One delivery per (event just inserted, endpoint in `endpoints[event.pk]`); call in
    the inserting transaction. The payloads are built from `events` as inserted (unsaved
    instances carrying the inserted values are fine), so nothing is read back.
    """
    now = timezone.now()
    deliveries: list[Delivery] = []
    for event in events:
        payload = event_payload(event)
        deliveries.extend(
            # Only the endpoint's id is needed for the row (no Endpoint query).
            delivery_build(Endpoint(pk=endpoint_id), payload, event.pk, None, now)
            for endpoint_id in endpoints.get(event.pk, ())
        )
    # A message per delivery cost ~0.7 ms each (2,000 per batch with two endpoints).
    # An endpoint never sends more than its concurrency limit at once, so enqueue that
    # many per endpoint; the rest stay due and unqueued: each worker's follow-on loop
    # claims the endpoint's next due delivery after a success, and the dispatcher
    # (every tick) enqueues free slots for whatever is left after a failure.
    limit = max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1)
    per_endpoint: dict[str, int] = {}
    enqueue: list[str] = []
    for delivery in deliveries:
        seen = per_endpoint.get(delivery.endpoint_id, 0)
        per_endpoint[delivery.endpoint_id] = seen + 1
        if seen < limit:
            enqueue.append(delivery.pk)
        else:
            delivery.queued_until = None
    Delivery.objects.bulk_create(deliveries)
    deliveries_enqueue_on_commit(enqueue)
    return deliveries


# ---------------------------------------------------------------- is_delivered


def _events_refresh_delivered(event_ids: Iterable[str]) -> None:
    """is_delivered = no delivery of the event is pending or failed."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return
    outstanding = Delivery.objects.filter(event=OuterRef("pk"), status__in=OUTSTANDING)
    Event.objects.filter(pk__in=ids).update(is_delivered=~Exists(outstanding))


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


# ---------------------------------------------------------------- sending


def retry_delay(step: int, retry_after: timedelta | None = None) -> timedelta | None:
    """The wait after failed attempt number `step + 1`, or None when retries are exhausted."""
    if step >= len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[step] * (1 + random.uniform(0, RETRY_JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as delay-seconds or an HTTP date; garbage is ignored."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


def sign(*, endpoint: Endpoint, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers; during a rotation both secrets sign (space-separated)."""
    signatures = [
        Webhook(secret).sign(message_id, now, body) for secret in endpoint.signing_secrets(now)
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


# The claim, written out: it runs once per attempt and the ORM spent more CPU building
# this statement than PostgreSQL spends running it. Portable (PostgreSQL, SQLite 3.35+).
# {target} picks the row: one id, or an endpoint's next due row nobody holds (with SKIP
# LOCKED where the database has it, so concurrent workers take different rows).
# NOT EXISTS (… OFFSET limit-1): the endpoint has fewer than `limit` attempts in flight
# (served by delivery_in_flight_idx).
_CLAIM_SQL = """
UPDATE {table}
SET attempt_count = attempt_count + 1, locked_until = %(lease)s, last_attempt_at = %(now)s,
    queued_until = NULL
WHERE {target} AND status = 'pending' AND next_attempt_at <= %(now)s
  AND (locked_until IS NULL OR locked_until < %(now)s)
  AND NOT EXISTS (
    SELECT 1 FROM {table} AS busy
    WHERE busy.endpoint_id = {table}.endpoint_id AND busy.status = 'pending'
      AND busy.locked_until >= %(now)s
    LIMIT 1 OFFSET %(offset)s
  )
RETURNING id
"""
_BY_ID = "id = %(id)s"
_NEXT_OF_ENDPOINT = """id = (
    SELECT nxt.id FROM {table} AS nxt
    WHERE nxt.endpoint_id = %(endpoint_id)s AND nxt.status = 'pending'
      AND nxt.next_attempt_at <= %(now)s
      AND (nxt.locked_until IS NULL OR nxt.locked_until < %(now)s)
    ORDER BY nxt.next_attempt_at LIMIT 1 {skip_locked}
  )"""


def _claim_update(now: datetime, *, delivery_id: str = "", endpoint_id: str = "") -> str | None:
    """Run the claim for one delivery id or for an endpoint's next due delivery; return
    the id claimed, or None."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    skip = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    target = _BY_ID if delivery_id else _NEXT_OF_ENDPOINT.format(table=table, skip_locked=skip)
    # The outbound deadline plus a margin for the database work around the call: after
    # that the worker is presumed dead and another may make the attempt.
    lease = now + timedelta(
        seconds=settings.HERALD_OUTBOUND_TIMEOUT + settings.HERALD_DELIVERY_CLAIM_MARGIN
    )
    at = connection.ops.adapt_datetimefield_value
    params = {
        "lease": at(lease),
        "now": at(now),
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "offset": max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1) - 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL.format(table=table, target=target), params)
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def _claimed(delivery_id: str, now: datetime) -> Delivery | str:
    """Load a claimed delivery; end it at once if its endpoint is disabled or it gave up."""
    delivery = Delivery.objects.select_related("endpoint").get(pk=delivery_id)
    if not delivery.endpoint.active:
        _finish(delivery, now, Delivery.Status.FAILED, None, "Endpoint is disabled.")
        return "endpoint-disabled"
    if delivery.give_up_at is not None and now >= delivery.give_up_at:
        _finish(delivery, now, Delivery.Status.FAILED, None, "Gave up (give_up_at passed).")
        return "gave-up"
    return delivery


def _claim(delivery_id: str, now: datetime) -> Delivery | str:
    """Step 1 of deliver_one: one conditional UPDATE claims the row if it is due, not held
    by another worker and its endpoint is below its concurrency limit (PostgreSQL
    re-checks the WHERE after waiting for a concurrent claimer's row lock, so exactly one
    caller wins). Autocommit: no lock outlives the statement. Returns the claimed
    delivery, or "not-due" / "endpoint-busy" / a final outcome."""
    if _claim_update(now, delivery_id=delivery_id) is None:
        due = Delivery.objects.filter(
            pk=delivery_id, status=PENDING, next_attempt_at__lte=now
        ).filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        return "endpoint-busy" if due.exists() else "not-due"
    return _claimed(delivery_id, now)


def _claim_next(endpoint_id: str, now: datetime) -> Delivery | None:
    """Claim the endpoint's next due delivery nobody holds (follow-on work), if any."""
    for _ in range(FOLLOW_ON_CANDIDATES):
        delivery_id = _claim_update(now, endpoint_id=endpoint_id)
        if delivery_id is None:
            return None
        claimed = _claimed(delivery_id, now)
        if isinstance(claimed, Delivery):
            return claimed
    return None


def _finish(
    delivery: Delivery, now: datetime, status: str, status_code: int | None, error: str
) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=PENDING).update(
        status=status,
        next_attempt_at=None,
        locked_until=None,
        completed_at=now,
        last_status_code=status_code,
        last_error=error,
    )
    if delivery.event_id is not None:
        _events_refresh_delivered([delivery.event_id])


def deliver_one(delivery_id: str, *, resolver: outbound.Resolver | None = None) -> str:
    """Make one attempt of one delivery if it is due; safe to call any number of times.

    1. Claim with one conditional UPDATE: due, not held by another worker, endpoint
       below its concurrency limit; bump the attempt count (the fencing token) and set
       a lease. Autocommit, so no row lock is held past that statement.
    2. Call the endpoint outside any transaction, through the SSRF guard, with a
       wall-clock deadline.
    3. Record the attempt and the next state in one transaction, only if the row is
       still ours (same attempt count, still pending): a cancelled delivery or one a
       second worker re-claimed after our lease lapsed is left alone.
    4. After a success, keep the endpoint's slot: claim and send its next due delivery
       (steps 1-3) until none is left or FOLLOW_ON_SECONDS pass. An endpoint's backlog
       thus flows at its concurrency limit without bouncing tasks off a busy endpoint.
    An endpoint at its limit leaves the delivery due and unqueued: a slot holder
    (step 4) or a later dispatcher tick takes it. Returns a short outcome word.
    """
    claimed = _claim(delivery_id, timezone.now())
    if claimed == "endpoint-busy":
        Delivery.objects.filter(pk=delivery_id, status=PENDING).update(queued_until=None)
    if isinstance(claimed, str):
        return claimed
    outcome = _attempt(claimed, resolver)
    deadline = time.monotonic() + FOLLOW_ON_SECONDS
    follow = outcome
    while follow == "succeeded" and time.monotonic() < deadline:
        following = _claim_next(claimed.endpoint_id, timezone.now())
        if following is None:
            break
        follow = _attempt(following, resolver)
    return outcome


def _attempt(delivery: Delivery, resolver: outbound.Resolver | None) -> str:
    """Steps 2-3 of deliver_one for a claimed delivery."""
    endpoint = delivery.endpoint
    started_at = timezone.now()
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **sign(endpoint=endpoint, message_id=delivery.message_id, body=body, now=started_at),
    }
    status_code: int | None = None
    excerpt = ""
    retry_after: timedelta | None = None
    refused = False
    duration_ms = 0
    try:
        response = outbound.post(
            endpoint.url, body=body.encode("utf-8"), headers=headers, resolver=resolver
        )
    except outbound.OutboundRefused as exc:
        refused, error = True, f"{GUARD_REFUSED}{exc}"
    except outbound.OutboundFailed as exc:
        error = str(exc)
    else:
        status_code = response.status_code
        duration_ms = response.duration_ms
        excerpt = response.body.decode("utf-8", "replace")[:RESPONSE_EXCERPT_CHARS]
        error = "" if 200 <= status_code < 300 else f"HTTP {status_code}"
        retry_after = parse_retry_after(response.headers.get("retry-after"), timezone.now())
    if not duration_ms:
        duration_ms = int((timezone.now() - started_at).total_seconds() * 1000)
    if not refused and endpoint.kind == Endpoint.Kind.SCHEDULE:
        # The callback has been called (seed 003's ACTIVE), whatever came back. Not a
        # refusal: the guard stopped it before anything went out. Autocommit, no lock of
        # the delivery held; the update is conditional, so concurrent workers agree.
        from automation.schedules import schedule_mark_called

        schedule_mark_called(endpoint_id=endpoint.pk)
    _record(
        delivery,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error,
        excerpt=excerpt,
        retry_after=retry_after,
        refused=refused,
    )
    return "failed" if error else "succeeded"


def _is_retryable(status_code: int | None, refused: bool) -> bool:
    if refused:
        return False
    if status_code is None:
        return True  # network error or timeout
    return status_code in RETRYABLE_STATUSES or 500 <= status_code < 600


def _record(
    delivery: Delivery,
    *,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str,
    excerpt: str,
    retry_after: timedelta | None,
    refused: bool,
) -> None:
    """Step 3 of deliver_one: the attempt row, the delivery's next state, endpoint health."""
    now = timezone.now()
    endpoint = delivery.endpoint
    succeeded = status_code is not None and 200 <= status_code < 300
    fields: dict[str, Any] = {
        "locked_until": None,
        "last_status_code": status_code,
        "last_error": error,
    }
    if succeeded:
        outcome = DeliveryAttempt.Outcome.SUCCEEDED
        fields.update(status=Delivery.Status.SUCCEEDED, next_attempt_at=None, completed_at=now)
    else:
        delay = retry_delay(delivery.retry_step, retry_after)
        next_at = now + delay if delay is not None else None
        give_up_at = delivery.give_up_at
        if next_at is not None and give_up_at is not None and next_at > give_up_at:
            next_at = None
        if _is_retryable(status_code, refused) and next_at is not None:
            outcome = DeliveryAttempt.Outcome.RETRY
            fields.update(next_attempt_at=next_at, retry_step=delivery.retry_step + 1)
            fields["queued_until"] = None
        else:
            outcome = DeliveryAttempt.Outcome.FAILED
            fields.update(status=Delivery.Status.FAILED, next_attempt_at=None, completed_at=now)
    with transaction.atomic():
        ours = Delivery.objects.filter(
            pk=delivery.pk, status=PENDING, attempt_count=delivery.attempt_count
        ).update(**fields)
        DeliveryAttempt.objects.create(
            delivery_id=delivery.pk,
            number=delivery.attempt_count,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error,
            outcome=outcome if ours else DeliveryAttempt.Outcome.DISCARDED,
            response_excerpt=excerpt,
        )
        if ours and outcome != DeliveryAttempt.Outcome.RETRY and delivery.event_id is not None:
            _events_refresh_delivered([delivery.event_id])
    if succeeded:
        _endpoint_record_success(endpoint, now)
    else:
        _endpoint_record_failure(endpoint, now, status_code)


def _endpoint_record_success(endpoint: Endpoint, now: datetime) -> None:
    # At most one write a minute per healthy endpoint: at hundreds of deliveries a
    # second a write per success would serialise every worker on one row.
    if (
        endpoint.first_failure_at is None
        and endpoint.last_success_at is not None
        and now - endpoint.last_success_at < SUCCESS_RECORD_RESOLUTION
    ):
        return
    Endpoint.objects.filter(pk=endpoint.pk).update(last_success_at=now, first_failure_at=None)


def _endpoint_record_failure(endpoint: Endpoint, now: datetime, status_code: int | None) -> None:
    if status_code == 410:
        endpoint_disable(endpoint=endpoint, reason="The endpoint answered 410 Gone.")
        return
    if endpoint.first_failure_at is None:
        Endpoint.objects.filter(pk=endpoint.pk, first_failure_at__isnull=True).update(
            first_failure_at=now
        )
        return
    if now - endpoint.first_failure_at >= ENDPOINT_DISABLE_AFTER:
        since = endpoint.first_failure_at.isoformat(timespec="seconds")
        endpoint_disable(
            endpoint=endpoint,
            reason=f"No successful delivery for 5 days (failing since {since}).",
        )


# ---------------------------------------------------------------- the dispatcher


def dispatch_due_deliveries(now: datetime | None = None) -> int:
    """Enqueue a send task for due deliveries nobody is working on; return how many.

    Claims rows in chunks with SELECT … FOR UPDATE SKIP LOCKED and marks them queued
    (queued_until), so dispatchers on several machines never enqueue the same row
    twice within QUEUE_LEASE. Covers new rows whose message was lost, retries that
    came due, and attempts whose worker died (their lease lapsed). Per endpoint it
    enqueues at most its free slots (concurrency limit minus attempts in flight): the
    workers holding those slots go on with the rest (deliver_one, step 4), so a busy
    endpoint's backlog never floods the queue with tasks that could only bounce.
    """
    from automation.tasks import deliver_one_task, enqueue_many

    now = now or timezone.now()
    chunk = settings.HERALD_DELIVERY_DISPATCH_CHUNK
    limit = max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1)
    free: dict[str, int] = {}
    for endpoint_id, in_flight in (
        Delivery.objects.filter(status=PENDING, locked_until__gte=now)
        .values("endpoint_id")
        .annotate(n=Count("pk"))
        .values_list("endpoint_id", "n")
    ):
        free[endpoint_id] = limit - in_flight
    total = 0
    for _ in range(MAX_DISPATCH_CHUNKS):
        full = [endpoint_id for endpoint_id, slots in free.items() if slots <= 0]
        with transaction.atomic():
            rows = list(
                Delivery.objects.select_for_update(skip_locked=True)
                .filter(status=PENDING, next_attempt_at__lte=now)
                .filter(Q(queued_until__isnull=True) | Q(queued_until__lt=now))
                .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
                .exclude(endpoint_id__in=full)
                .order_by("next_attempt_at", "pk")
                .values_list("pk", "endpoint_id")[:chunk]
            )
            ids = []
            for delivery_id, endpoint_id in rows:
                slots = free.get(endpoint_id, limit)
                if slots > 0:
                    ids.append(delivery_id)
                free[endpoint_id] = slots - 1
            if ids:
                Delivery.objects.filter(pk__in=ids).update(queued_until=now + QUEUE_LEASE)
        if ids:
            enqueue_many(deliver_one_task, [(i,) for i in ids])
        total += len(ids)
        if len(rows) < chunk:
            break
    return total


# ---------------------------------------------------------------- reads (API, admin)


def webhook_list() -> QuerySet[Endpoint]:
    """Webhook subscriptions only: endpoints of schedules and workflows are managed there."""
    return Endpoint.objects.filter(kind=Endpoint.Kind.SUBSCRIPTION).prefetch_related("event_types")


def webhook_get(*, webhook_id: str) -> Endpoint:
    try:
        return webhook_list().get(pk=webhook_id)
    except Endpoint.DoesNotExist:
        raise NotFoundError(f"Webhook '{webhook_id}' not found.") from None


def delivery_list(
    *, webhook_id: str | None = None, event_id: str | None = None, status: str | None = None
) -> QuerySet[Delivery]:
    queryset = Delivery.objects.all()
    if webhook_id is not None:
        queryset = queryset.filter(endpoint_id=webhook_id)
    if event_id is not None:
        queryset = queryset.filter(event_id=event_id)
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset


def delivery_get(*, delivery_id: str, with_attempts: bool = False) -> Delivery:
    queryset = Delivery.objects.all()
    if with_attempts:
        queryset = queryset.prefetch_related("attempts")
    try:
        return queryset.get(pk=delivery_id)
    except Delivery.DoesNotExist:
        raise NotFoundError(f"Delivery '{delivery_id}' not found.") from None
