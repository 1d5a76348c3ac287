"""The one sender: deliver_one makes one attempt of one delivery; the dispatcher finds due ones.

Deliveries are created by automation.webhooks.deliveries; here they are claimed, signed
(automation.webhooks.signing), sent through the SSRF guard (automation.webhooks.outbound),
retried and logged as attempts, and endpoint health is kept. The claim's and the
record's SQL live in automation.webhooks.sender_sql; the protocol lives here.

Retry policy (published in docs/operations.md): success is a 2xx; network
errors, timeouts, 408, 429 and 5xx are retried after RETRY_SCHEDULE (+0-10 %
jitter, never sooner than Retry-After asks); other statuses, redirects and
refused URLs are final; 410 disables the endpoint; an endpoint failing for
ENDPOINT_DISABLE_AFTER without a success is disabled.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from automation.webhooks import outbound, sender_sql
from automation.webhooks.deliveries import (
    PENDING,
    QUEUE_LEASE,
    SEND_TASK,
    events_refresh_delivered,
)
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.services import endpoint_disable
from automation.webhooks.signing import sign
from project import background

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
# After a success, a worker goes on with the same endpoint's due deliveries this long.
FOLLOW_ON_SECONDS = 15.0
FOLLOW_ON_CANDIDATES = 5
RESPONSE_EXCERPT_CHARS = 2000
MAX_DISPATCH_CHUNKS = 20  # bound one dispatcher call; the next tick continues
SUCCESS_RECORD_RESOLUTION = timedelta(minutes=1)
USER_AGENT = "Herald-Webhooks/1.0"
# _claim's answer for a delivery another worker's follow-on sent (then its endpoint id).
SENT_BY_ANOTHER = "sent:"

# Endpoint kind -> a hook called with the endpoint's id after an attempt reached the
# network. The subsystem owning that kind of endpoint registers it at start-up
# (AutomationConfig.ready), so the sender knows no subsystem's internals.
CALLED_HOOKS: dict[str, Callable[[str], object]] = {}
# The error of an attempt the outbound guard refused (nothing was sent): the one attempt
# that does not count as a call (automation.schedules.services reads it).
GUARD_REFUSED = "Refused by the outbound guard: "


# ---------------------------------------------------------------- retries


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


# ---------------------------------------------------------------- sending


def _claimed(delivery: Delivery, now: datetime) -> Delivery | str:
    """A claimed delivery; end it at once if its endpoint is disabled or it gave up."""
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
    delivery, or "not-due" / "endpoint-busy" / "sent:<endpoint id>" (another worker's
    follow-on sent it) / a final outcome."""
    claimed = sender_sql.claim_update(now, delivery_id=delivery_id)
    if claimed is None:
        row = (
            Delivery.objects.filter(pk=delivery_id)
            .values_list("status", "next_attempt_at", "locked_until", "endpoint_id")
            .first()
        )
        if row is None:
            return "not-due"
        status, next_at, locked_until, endpoint_id = row
        if status == Delivery.Status.SUCCEEDED:
            return f"{SENT_BY_ANOTHER}{endpoint_id}"
        due = (
            status == PENDING
            and next_at is not None
            and next_at <= now
            and (locked_until is None or locked_until < now)
        )
        return "endpoint-busy" if due else "not-due"
    return _claimed(claimed, now)


def _claim_next(endpoint_id: str, now: datetime) -> Delivery | None:
    """Claim the endpoint's next due delivery nobody holds (follow-on work), if any."""
    for _ in range(FOLLOW_ON_CANDIDATES):
        delivery = sender_sql.claim_update(now, endpoint_id=endpoint_id)
        if delivery is None:
            return None
        claimed = _claimed(delivery, now)
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
        events_refresh_delivered([delivery.event_id])


def deliver_one(delivery_id: str, *, resolver: outbound.Resolver | None = None) -> str:
    """Make one attempt of one delivery if it is due; safe to call any number of times.

    1. Claim with one conditional UPDATE: due, not held by another worker, endpoint
       below its concurrency limit; bump the attempt count (the fencing token) and set
       a lease. Autocommit, so no row lock is held past that statement.
    2. Call the endpoint outside any transaction, through the SSRF guard, with a
       wall-clock deadline.
    3. Record the attempt and the next state atomically (one statement on PostgreSQL),
       only if the row is still ours (same attempt count, still pending): a cancelled
       delivery or one a second worker re-claimed after our lease lapsed is left alone.
    4. After a success, keep the endpoint's slot: claim and send its next due delivery
       (steps 1-3) until none is left or FOLLOW_ON_SECONDS pass. An endpoint's backlog
       thus flows at its concurrency limit without bouncing tasks off a busy endpoint.
       A task whose delivery such a follow-on sent already does the same with the
       endpoint's next due delivery (returning that one's outcome), so the tasks of a
       backlog (the dispatcher's, a task per delivery) all help send it.
    An endpoint at its limit leaves the delivery due and unqueued: a slot holder
    (step 4) or a later dispatcher tick takes it. Returns a short outcome word.
    """
    claimed = _claim(delivery_id, timezone.now())
    if claimed == "endpoint-busy":
        Delivery.objects.filter(pk=delivery_id, status=PENDING).update(queued_until=None)
    if isinstance(claimed, str) and claimed.startswith(SENT_BY_ANOTHER):
        # A follow-on sent this one: take the endpoint's next due delivery instead, so
        # the task helps with the backlog rather than ending idle.
        following = _claim_next(claimed[len(SENT_BY_ANOTHER) :], timezone.now())
        if following is None:
            return "not-due"
        claimed = following
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
    on_called = CALLED_HOOKS.get(endpoint.kind)
    if not refused and on_called is not None:
        # The endpoint's owner learns that a request went out, whatever came back (a
        # schedule becomes ACTIVE, seed 003). Not on a refusal: the guard stopped it
        # before anything went out. Autocommit, no lock of the delivery held.
        on_called(endpoint.pk)
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
    attempt = {
        "delivery_id": delivery.pk,
        "number": delivery.attempt_count,
        "started_at": started_at,
        "duration_ms": duration_ms,
        "status_code": status_code,
        "error": error,
        "response_excerpt": excerpt,
    }
    if outcome == DeliveryAttempt.Outcome.RETRY or delivery.event_id is None:
        sender_sql.record_statement(delivery, fields, attempt, outcome)
    else:
        # The event's is_delivered follows the delivery's final state in the same commit.
        with transaction.atomic():
            if sender_sql.record_statement(delivery, fields, attempt, outcome):
                events_refresh_delivered([delivery.event_id])
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
            background.enqueue_many(SEND_TASK, [(i,) for i in ids])
        total += len(ids)
        if len(rows) < chunk:
            break
    return total
