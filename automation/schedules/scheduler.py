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

Next-run times are computed once per distinct (interval, timezone), not per row,
so 10,000 schedules on the same cron cost one cron evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
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

logger = logging.getLogger(__name__)

MAX_CHUNKS = 10  # bound one call; the next tick continues
# The last run of a schedule may retry this long (there is no next tick to stop before).
FINAL_RUN_RETRY_WINDOW = timedelta(hours=1)


@dataclass
class Fire:
    """One callback to fire: which schedule, for which tick, retried until when."""

    schedule_id: str
    endpoint_id: str
    context: Any
    scheduled_for: datetime
    give_up_at: datetime


def dispatch_due_schedules(now: datetime | None = None) -> int:
    """Fire every due schedule once for its tick; return how many callbacks were created."""
    now = now or timezone.now()
    chunk = settings.HERALD_SCHEDULE_CLAIM_CHUNK
    set_based = connection.vendor == "postgresql" and SET_BASED
    total = 0
    for _ in range(MAX_CHUNKS):
        with transaction.atomic():
            claimed = _claim(now, chunk, with_context=not set_based)
            if claimed:
                fire_chunk = _fire_claimed_set_based if set_based else _fire_claimed
                total += fire_chunk(claimed, now)
        if len(claimed) < chunk:
            break
    return total


# PostgreSQL fires a chunk in one statement (_fire_claimed_set_based); other databases (and
# tests that check both give the same result) use the row-by-row ORM path.
SET_BASED = True


# What the set-based path needs; the ORM path also reads the context (the payload).
_CLAIM_FIELDS = ("id", "next_run_at", "interval", "timezone", "end_date", "endpoint_id")


def due_schedules(now: datetime) -> QuerySet[Schedule]:
    """The due scan: an index scan of schedule_due_idx (partial: INACTIVE/ACTIVE only)."""
    return Schedule.objects.filter(status__in=Schedule.RUNNABLE, next_run_at__lte=now).order_by(
        "next_run_at"
    )


def _claim(now: datetime, chunk: int, *, with_context: bool) -> list[tuple[Any, ...]]:
    fields = (*_CLAIM_FIELDS, "context") if with_context else _CLAIM_FIELDS
    return list(due_schedules(now).select_for_update(skip_locked=True).values_list(*fields)[:chunk])


def _next_runs(
    rows: Iterable[tuple[Any, ...]], now: datetime
) -> dict[tuple[str, str], datetime | None]:
    """The first tick after `now` per distinct (interval, timezone); None if there is none."""
    result: dict[tuple[str, str], datetime | None] = {}
    for row in rows:
        key = (row[2], row[3])
        if key not in result:
            try:
                zone = cron.zone(row[3]) if row[3] else None
                result[key] = cron.parse(row[2]).next_after(now, zone)
            except cron.CronError:  # validated on save; a zone removed from tzdata, say
                logger.exception("Schedule interval %r (%s) cannot be evaluated", *key)
                result[key] = None
    return result


def _fire_claimed(claimed: list[tuple[Any, ...]], now: datetime) -> int:
    """Runs, deliveries and the advance of a chunk through the ORM (SQLite, and tests).

    Same decisions as _fire_claimed_set_based: fire unless the tick or the end date
    is past; FINISHED when no tick is left (else the status stays); last_run_at only
    for new runs.
    """
    next_by_cron = _next_runs(claimed, now)
    fires: list[Fire] = []
    updates: list[tuple[str, datetime | None, str | None, datetime | None]] = []
    for sid, due_at, interval, tz_name, end_date, endpoint_id, context in claimed:
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
    fired = fire(fires, now=now)
    fired_ids = {f.schedule_id for f in fired}
    # A schedule whose run already existed (a tick fired elsewhere) still advances; only
    # last_run_at describes callbacks this call actually created.
    rows = [
        (sid, next_run, status, last if sid in fired_ids else None)
        for sid, next_run, status, last in updates
    ]
    _update_schedules(rows, now)
    return len(fired)


# Delivery columns filled per row by _fire_claimed_set_based; every other column takes the
# value automation.webhooks.deliveries.delivery_build gives a new delivery (so its
# defaults stay theirs).
_PER_ROW_DELIVERY_COLUMNS = ("id", "endpoint_id", "message_id", "payload", "give_up_at")


def _fire_claimed_set_based(claimed: list[tuple[Any, ...]], now: datetime) -> int:
    """Runs, deliveries and the advance of a whole chunk in one PostgreSQL statement.

    Python decides only what needs cron: the next tick per distinct (interval,
    timezone). Ids travel as one comma-joined string each (cheap to bind), and
    the schedule's context is copied into the delivery payload inside PostgreSQL.
    """
    next_by_cron = _next_runs(claimed, now)
    ids = [row[0] for row in claimed]
    enqueue = len(ids) <= settings.HERALD_SCHEDULE_ENQUEUE_MAX
    template = delivery_build(Endpoint(pk=""), {}, None, None, now)
    if not enqueue:
        template.queued_until = None  # the delivery dispatcher picks them up
    constant_fields = [
        f for f in Delivery._meta.concrete_fields if f.attname not in _PER_ROW_DELIVERY_COLUMNS
    ]
    params: dict[str, Any] = {
        "ids": ",".join(ids),
        "delivery_ids": ",".join(new_public_id() for _ in ids),
        "message_ids": ",".join(message_id_new() for _ in ids),
        "g_interval": [key[0] for key in next_by_cron],
        "g_timezone": [key[1] for key in next_by_cron],
        "g_next": list(next_by_cron.values()),
        "now": now,
        "final": FINAL_RUN_RETRY_WINDOW,
        **{
            f"c_{f.attname}": f.get_db_prep_save(getattr(template, f.attname), connection)
            for f in constant_fields
        },
    }
    schedule_table = Schedule._meta.db_table
    run_table = ScheduleRun._meta.db_table
    delivery_table = Delivery._meta.db_table
    columns = ", ".join([*_PER_ROW_DELIVERY_COLUMNS, *(str(f.column) for f in constant_fields)])
    constants = ", ".join(f"%(c_{f.attname})s" for f in constant_fields)
    sql = f"""
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
        claimed AS (
            SELECT s.id, s.next_run_at AS due_at, s.end_date, s.endpoint_id, s.context,
                   i.delivery_id, i.message_id,
                   CASE WHEN g.next_run_at <= s.end_date THEN g.next_run_at END AS new_next,
                   (s.next_run_at <= s.end_date AND s.end_date >= %(now)s
                    AND s.endpoint_id IS NOT NULL) AS fires
            FROM input i
            JOIN {schedule_table} s ON s.id = i.id
            LEFT JOIN groups g ON g.interval = s.interval AND g.timezone = s.timezone
        ),
        runs AS (
            INSERT INTO {run_table} (schedule_id, scheduled_for, started_at, delivery_id)
            SELECT id, due_at, %(now)s, delivery_id FROM claimed WHERE fires
            ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
            RETURNING schedule_id
        ),
        deliveries AS (
            INSERT INTO {delivery_table} ({columns})
            SELECT c.delivery_id, c.endpoint_id, c.message_id, c.context,
                   COALESCE(c.new_next, GREATEST(c.end_date, %(now)s) + %(final)s),
                   {constants}
            FROM runs r JOIN claimed c ON c.id = r.schedule_id
            RETURNING id
        ),
        advanced AS (
            UPDATE {schedule_table} AS s SET
                next_run_at = CASE WHEN c.fires THEN c.new_next END,
                status = CASE WHEN NOT c.fires OR c.new_next IS NULL THEN 'FINISHED'
                              ELSE s.status END,
                last_run_at = CASE WHEN r.schedule_id IS NOT NULL THEN %(now)s
                                   ELSE s.last_run_at END,
                updated_at = %(now)s
            FROM claimed c LEFT JOIN runs r ON r.schedule_id = c.id
            WHERE s.id = c.id
            RETURNING s.id
        )
        SELECT id FROM deliveries
    """  # noqa: S608 - table and column names are ours, values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        delivery_ids = [row[0] for row in cursor.fetchall()]
    if enqueue:
        deliveries_enqueue_on_commit(delivery_ids)
    return len(delivery_ids)


def fire(fires: list[Fire], *, now: datetime) -> list[Fire]:
    """Insert the runs and their deliveries; return the fires whose run was new.

    Call inside a transaction. Each delivery's id is chosen before the run is
    inserted, so one INSERT … ON CONFLICT DO NOTHING both dedupes the tick and
    links the run to its delivery (the FK is deferred to commit).
    """
    if not fires:
        return []
    deliveries = {
        f.schedule_id: delivery_build(
            Endpoint(pk=f.endpoint_id), f.context, None, f.give_up_at, now
        )
        for f in fires
    }
    inserted = _insert_runs(fires, deliveries, now)
    new = [f for f in fires if f.schedule_id in inserted]
    new_deliveries = [deliveries[f.schedule_id] for f in new]
    # A big burst is left to the delivery dispatcher (it runs every second) rather than
    # published message by message from here.
    enqueue = len(new_deliveries) <= settings.HERALD_SCHEDULE_ENQUEUE_MAX
    if not enqueue:
        for delivery in new_deliveries:
            delivery.queued_until = None
    Delivery.objects.bulk_create(new_deliveries, batch_size=2000)
    if enqueue:
        deliveries_enqueue_on_commit([d.pk for d in new_deliveries])
    return new


def _insert_runs(fires: list[Fire], deliveries: dict[str, Delivery], now: datetime) -> set[str]:
    """INSERT the runs, skipping ticks that already have one; return the new runs' schedule ids."""
    table = ScheduleRun._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (schedule_id, scheduled_for, started_at, delivery_id)
                SELECT u.schedule_id, u.scheduled_for, %s, u.delivery_id
                FROM unnest(%s::varchar[], %s::timestamptz[], %s::varchar[])
                    AS u(schedule_id, scheduled_for, delivery_id)
                ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
                RETURNING schedule_id
                """,  # noqa: S608 - the table name is ours, values are parameters
                [
                    now,
                    [f.schedule_id for f in fires],
                    [f.scheduled_for for f in fires],
                    [deliveries[f.schedule_id].pk for f in fires],
                ],
            )
            return {row[0] for row in cursor.fetchall()}
    # SQLite (the embedded default, one process): skip existing ticks, insert the rest.
    existing = set(
        ScheduleRun.objects.filter(
            schedule_id__in=[f.schedule_id for f in fires],
            scheduled_for__in=[f.scheduled_for for f in fires],
        ).values_list("schedule_id", "scheduled_for")
    )
    new = [f for f in fires if (f.schedule_id, f.scheduled_for) not in existing]
    ScheduleRun.objects.bulk_create(
        [
            ScheduleRun(
                schedule_id=f.schedule_id,
                scheduled_for=f.scheduled_for,
                started_at=now,
                delivery_id=deliveries[f.schedule_id].pk,
            )
            for f in new
        ]
    )
    return {f.schedule_id for f in new}


def _update_schedules(
    rows: list[tuple[str, datetime | None, str | None, datetime | None]], now: datetime
) -> None:
    """One UPDATE for the chunk: next_run_at always; status and last_run_at when given."""
    if not rows:
        return
    table = Schedule._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE {table} AS s
                SET next_run_at = u.next_run_at,
                    status = COALESCE(u.status, s.status),
                    last_run_at = COALESCE(u.last_run_at, s.last_run_at),
                    updated_at = %s
                FROM unnest(%s::varchar[], %s::timestamptz[], %s::varchar[], %s::timestamptz[])
                    AS u(id, next_run_at, status, last_run_at)
                WHERE s.id = u.id
                """,  # noqa: S608 - the table name is ours, values are parameters
                [
                    now,
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [r[2] for r in rows],
                    [r[3] for r in rows],
                ],
            )
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
