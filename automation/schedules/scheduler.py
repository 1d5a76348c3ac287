"""The scheduler: fires due schedules exactly once per tick, on as many machines as you like.

`dispatch_due_schedules(now)` is a periodic job (project.background, every
second under Celery beat or the embedded ticker). Per chunk, in one transaction:

1. Claim: SELECT … FOR UPDATE SKIP LOCKED the due rows (status INACTIVE/ACTIVE,
   next_run_at <= now) in next_run_at order — an index scan of the partial index
   schedule_due_idx, so idle schedules cost nothing. Concurrent schedulers skip
   each other's rows instead of waiting.
2. Runs: INSERT one ScheduleRun per claimed row, ON CONFLICT (schedule,
   scheduled_for) DO NOTHING RETURNING … — the unique key is what makes a tick
   fire once even if two processes somehow claimed the same row.
3. Callbacks: one Delivery per inserted run (POST of `context`, signed, through
   the schedule's Endpoint), giving up when the next tick is due so retries
   never pile up behind new runs.
4. Advance: next_run_at = the first tick after `now` (missed ticks after a
   downtime coalesce into this one run), FINISHED when no tick is left before
   end_date. One UPDATE for the whole chunk. The status stays INACTIVE while the
   first callback is only queued: the sender makes it ACTIVE when it calls
   (automation.schedules.services.schedule_mark_called; seed 003).

"Run now" (automation.schedules.services.schedule_run_now) fires through the same
path (`fire_claimed` with `run_now`): one extra run at `now`, its callback retried
until the regular next run, which does not move.

Next-run times are computed once per distinct (interval, timezone), not per row,
so 10,000 schedules on the same cron cost one cron evaluation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, QuerySet
from django.utils import timezone

from automation.schedules import cron
from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.deliveries import (
    deliveries_enqueue_on_commit,
    delivery_build,
    message_id_new,
)
from automation.webhooks.models import Delivery, Endpoint
from project.ids import new_public_id
from project.sql import fetch_all, insert_parts

logger = logging.getLogger(__name__)

MAX_CHUNKS = 10  # bound one call; the next tick continues
# The last run of a schedule may retry this long (there is no next tick to stop before).
FINAL_RUN_RETRY_WINDOW = timedelta(hours=1)


def dispatch_due_schedules(now: datetime | None = None) -> int:
    """Fire every due schedule once for its tick; return how many callbacks were created."""
    now = now or timezone.now()
    chunk = settings.HERALD_SCHEDULE_CLAIM_CHUNK
    total = 0
    for _ in range(MAX_CHUNKS):
        with transaction.atomic():
            claimed = _claim(now, chunk)
            total += len(fire_claimed(claimed, now))
        if len(claimed) < chunk:
            break
    return total


# PostgreSQL fires a chunk in one statement (_fire_set_based); other databases (and tests
# that check both give the same result) use the ORM (_fire_orm).
SET_BASED = True

# A claimed schedule as fire_claimed takes it; the set-based path copies the context
# inside PostgreSQL, so only the ORM path reads it.
CLAIM_FIELDS = ("id", "next_run_at", "interval", "timezone", "end_date", "endpoint_id", "context")
Claimed = tuple[Any, ...]


def _set_based() -> bool:
    return connection.vendor == "postgresql" and SET_BASED


def due_schedules(now: datetime) -> QuerySet[Schedule]:
    """The due scan: an index scan of schedule_due_idx (partial: INACTIVE/ACTIVE only)."""
    return Schedule.objects.filter(status__in=Schedule.RUNNABLE, next_run_at__lte=now).order_by(
        "next_run_at"
    )


def _claim(now: datetime, chunk: int) -> list[Claimed]:
    fields = CLAIM_FIELDS[:-1] if _set_based() else CLAIM_FIELDS
    return list(due_schedules(now).select_for_update(skip_locked=True).values_list(*fields)[:chunk])


def claimed_row(schedule: Schedule) -> Claimed:
    """A schedule the caller holds locked, as _claim returns it (for "run now")."""
    return tuple(getattr(schedule, name) for name in CLAIM_FIELDS)


def fire_claimed(claimed: list[Claimed], now: datetime, *, run_now: bool = False) -> list[str]:
    """Fire schedules the caller holds locked; return the ids of those whose run was new.

    Call inside a transaction. A tick (run_now False) fires each schedule for its
    next_run_at and advances it: the next tick after `now`, or FINISHED when none is
    left before end_date (a tick past the end date finishes without firing). "Run now"
    fires one extra run at `now` whose callback is retried until the regular next run;
    the next run and the status stay. Both set last_run_at for runs that were new (a
    tick that already has its run, fired elsewhere, still advances).
    """
    if not claimed:
        return []
    if _set_based():
        return _fire_set_based(claimed, now, run_now=run_now)
    return _fire_orm(claimed, now, run_now=run_now)


def _next_runs(claimed: Iterable[Claimed], now: datetime) -> dict[tuple[str, str], datetime | None]:
    """The first tick after `now` per distinct (interval, timezone); None if there is none."""
    result: dict[tuple[str, str], datetime | None] = {}
    for row in claimed:
        key = (row[2], row[3])
        if key not in result:
            try:
                zone = cron.zone(row[3]) if row[3] else None
                result[key] = cron.parse(row[2]).next_after(now, zone)
            except cron.CronError:  # validated on save; a zone removed from tzdata, say
                logger.exception("Schedule interval %r (%s) cannot be evaluated", *key)
                result[key] = None
    return result


# ---------------------------------------------------------------- PostgreSQL: one statement


_FIRE_SQL = """
WITH input AS (
    SELECT * FROM unnest(
        string_to_array(%(ids)s, ','),
        string_to_array(%(delivery_ids)s, ','),
        string_to_array(%(message_ids)s, ',')
    ) AS i(id, delivery_id, message_id)
),
groups AS (
    SELECT * FROM unnest(%(g_interval)s::text[], %(g_timezone)s::text[],
                         %(g_next)s::timestamptz[]) AS g(interval, timezone, next_run_at)
),
ticks AS (
    SELECT s.id, s.next_run_at, s.end_date, s.endpoint_id, s.context,
           i.delivery_id, i.message_id,
           CASE WHEN g.next_run_at <= s.end_date THEN g.next_run_at END AS next_tick
    FROM input i
    JOIN {schedule_table} s ON s.id = i.id
    LEFT JOIN groups g ON g.interval = s.interval AND g.timezone = s.timezone
),
claimed AS (
    SELECT t.id, t.endpoint_id, t.context, t.delivery_id, t.message_id,
           CASE WHEN %(run_now)s THEN %(now)s ELSE t.next_run_at END AS due_at,
           CASE WHEN %(run_now)s THEN t.next_run_at ELSE t.next_tick END AS new_next,
           CASE WHEN %(run_now)s THEN COALESCE(t.next_run_at, %(now)s + %(final)s)
                ELSE COALESCE(t.next_tick, GREATEST(t.end_date, %(now)s) + %(final)s)
           END AS give_up_at,
           (t.endpoint_id IS NOT NULL AND (%(run_now)s OR (
               t.next_run_at <= t.end_date AND t.end_date >= %(now)s))) AS fires
    FROM ticks t
),
runs AS (
    INSERT INTO {run_table} ({run_columns})
    SELECT {run_values} FROM claimed c WHERE c.fires
    ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
    RETURNING schedule_id
),
deliveries AS (
    INSERT INTO {delivery_table} ({delivery_columns})
    SELECT {delivery_values}
    FROM runs r JOIN claimed c ON c.id = r.schedule_id
),
advanced AS (
    UPDATE {schedule_table} AS s SET
        next_run_at = CASE WHEN c.fires THEN c.new_next END,
        status = CASE WHEN %(run_now)s THEN s.status
                      WHEN NOT c.fires OR c.new_next IS NULL THEN 'FINISHED'
                      ELSE s.status END,
        last_run_at = CASE WHEN r.schedule_id IS NOT NULL THEN %(now)s ELSE s.last_run_at END,
        updated_at = %(now)s
    FROM claimed c LEFT JOIN runs r ON r.schedule_id = c.id
    WHERE s.id = c.id
)
SELECT c.id, c.delivery_id FROM runs r JOIN claimed c ON c.id = r.schedule_id
"""


@functools.cache
def _fire_statement() -> tuple[str, tuple[Field[Any, Any], ...]]:
    """The statement's text and the Delivery fields whose value is a parameter: those
    automation.webhooks.deliveries.delivery_build sets alike for every new delivery."""
    quote = connection.ops.quote_name
    runs = insert_parts(
        ScheduleRun,
        given={
            "schedule_id": "c.id",
            "scheduled_for": "c.due_at",
            "started_at": "%(now)s",
            "delivery_id": "c.delivery_id",
        },
    )
    assert not runs.defaulted, "every run column is given"
    deliveries = insert_parts(
        Delivery,
        given={
            "id": "c.delivery_id",
            "endpoint_id": "c.endpoint_id",
            "message_id": "c.message_id",
            "payload": "c.context",
            "give_up_at": "c.give_up_at",
        },
        param="%(c_{attname})s",
    )
    sql = _FIRE_SQL.format(
        schedule_table=quote(Schedule._meta.db_table),
        run_table=quote(ScheduleRun._meta.db_table),
        run_columns=runs.columns,
        run_values=runs.values,
        delivery_table=quote(Delivery._meta.db_table),
        delivery_columns=deliveries.columns,
        delivery_values=deliveries.values,
    )
    return sql, tuple(deliveries.defaulted)


def _fire_set_based(claimed: list[Claimed], now: datetime, *, run_now: bool) -> list[str]:
    """Runs, deliveries and the advance of claimed schedules in one PostgreSQL statement.

    Python decides only what needs cron: the next tick per distinct (interval,
    timezone). Ids travel as one comma-joined string each (cheap to bind), and
    the schedule's context is copied into the delivery payload inside PostgreSQL.
    """
    next_by_cron = {} if run_now else _next_runs(claimed, now)
    ids = [row[0] for row in claimed]
    enqueue = len(ids) <= settings.HERALD_SCHEDULE_ENQUEUE_MAX
    template = delivery_build(Endpoint(pk=""), {}, None, None, now)
    if not enqueue:
        template.queued_until = None  # the delivery dispatcher picks them up
    sql, constant_fields = _fire_statement()
    params: dict[str, Any] = {
        "ids": ",".join(ids),
        "delivery_ids": ",".join(new_public_id() for _ in ids),
        "message_ids": ",".join(message_id_new() for _ in ids),
        "g_interval": [key[0] for key in next_by_cron],
        "g_timezone": [key[1] for key in next_by_cron],
        "g_next": list(next_by_cron.values()),
        "now": now,
        "final": FINAL_RUN_RETRY_WINDOW,
        "run_now": run_now,
        **{
            f"c_{f.attname}": f.get_db_prep_save(getattr(template, f.attname), connection)
            for f in constant_fields
        },
    }
    rows = fetch_all(sql, params)
    if enqueue:
        deliveries_enqueue_on_commit([delivery_id for _, delivery_id in rows])
    return [schedule_id for schedule_id, _ in rows]


# ---------------------------------------------------------------- other databases: the ORM


@dataclass
class Fire:
    """One callback to fire: which schedule, for which tick, retried until when."""

    schedule_id: str
    endpoint_id: str
    context: Any
    scheduled_for: datetime
    give_up_at: datetime


# (schedule id, next_run_at, status or None to keep it, last_run_at or None to keep it)
_Advance = tuple[str, datetime | None, str | None, datetime | None]


def _fire_orm(claimed: list[Claimed], now: datetime, *, run_now: bool) -> list[str]:
    """Runs, deliveries and the advance through the ORM (SQLite, and tests): the same
    decisions as _fire_set_based, row by row."""
    next_by_cron = {} if run_now else _next_runs(claimed, now)
    fires: list[Fire] = []
    updates: list[_Advance] = []
    for sid, due_at, interval, tz_name, end_date, endpoint_id, context in claimed:
        if run_now:
            give_up_at = due_at or now + FINAL_RUN_RETRY_WINDOW
            fires.append(Fire(sid, endpoint_id, context, now, give_up_at))
            updates.append((sid, due_at, None, now))
            continue
        next_run = next_by_cron[(interval, tz_name)]
        if next_run is not None and next_run > end_date:
            next_run = None
        new_status = Schedule.Status.FINISHED if next_run is None else None
        if due_at > end_date or end_date < now:
            # The tick is past the end date (e.g. after a downtime): finish without firing.
            updates.append((sid, None, Schedule.Status.FINISHED, None))
            continue
        if endpoint_id is None:
            logger.error("Schedule %s has no endpoint; finishing it.", sid)
            updates.append((sid, None, Schedule.Status.FINISHED, None))
            continue
        give_up_at = (
            next_run if next_run is not None else max(end_date, now) + FINAL_RUN_RETRY_WINDOW
        )
        fires.append(Fire(sid, endpoint_id, context, due_at, give_up_at))
        updates.append((sid, next_run, new_status, now))
    fired = _insert_fires(fires, now)
    # A schedule whose run already existed (a tick fired elsewhere) still advances; only
    # last_run_at describes callbacks this call actually created.
    _update_schedules(
        [(sid, nxt, status, last if sid in fired else None) for sid, nxt, status, last in updates],
        now,
    )
    return [f.schedule_id for f in fires if f.schedule_id in fired]


def _insert_fires(fires: list[Fire], now: datetime) -> set[str]:
    """Insert the runs whose tick has none yet and their deliveries; return their
    schedule ids. Each delivery's id is chosen before the run is inserted, so the run
    links to it (the FK is deferred to commit)."""
    if not fires:
        return set()
    existing = set(
        ScheduleRun.objects.filter(
            schedule_id__in=[f.schedule_id for f in fires],
            scheduled_for__in=[f.scheduled_for for f in fires],
        ).values_list("schedule_id", "scheduled_for")
    )
    new = [f for f in fires if (f.schedule_id, f.scheduled_for) not in existing]
    deliveries = [
        delivery_build(Endpoint(pk=f.endpoint_id), f.context, None, f.give_up_at, now) for f in new
    ]
    ScheduleRun.objects.bulk_create(
        [
            ScheduleRun(
                schedule_id=f.schedule_id,
                scheduled_for=f.scheduled_for,
                started_at=now,
                delivery_id=delivery.pk,
            )
            for f, delivery in zip(new, deliveries, strict=True)
        ]
    )
    # A big burst is left to the delivery dispatcher (it runs every second) rather than
    # published message by message from here.
    enqueue = len(deliveries) <= settings.HERALD_SCHEDULE_ENQUEUE_MAX
    if not enqueue:
        for delivery in deliveries:
            delivery.queued_until = None
    Delivery.objects.bulk_create(deliveries, batch_size=2000)
    if enqueue:
        deliveries_enqueue_on_commit([d.pk for d in deliveries])
    return {f.schedule_id for f in new}


def _update_schedules(rows: list[_Advance], now: datetime) -> None:
    """next_run_at always; status and last_run_at when given."""
    if not rows:
        return
    schedules = Schedule.objects.in_bulk([r[0] for r in rows])
    for sid, next_run, status, last in rows:
        schedule = schedules[sid]
        schedule.next_run_at = next_run
        schedule.status = status or schedule.status
        schedule.last_run_at = last or schedule.last_run_at
        schedule.updated_at = now
    Schedule.objects.bulk_update(
        schedules.values(), ["next_run_at", "status", "last_run_at", "updated_at"]
    )
