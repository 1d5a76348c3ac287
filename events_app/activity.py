"""What ingestion did, by the hour and as it happens: the dashboard's and live page's data.

* Events per (hour, type): EventHourCount, kept by the event counters' triggers
  (events_app migrations 0003 and 0012) on PostgreSQL, so every write path keeps it
  exact; `hour_counts_fold` (a periodic job) folds the per-connection slots of past
  hours into one row so the dashboard reads few rows. SQLite has no such triggers:
  `event_hour_counts` groups the events themselves there (the embedded default's
  tables are small).
* Rejected batch items: RejectedItem, the last REJECTIONS_KEPT per API client, and
  RejectionHourCount, how many per hour; both written by `rejections_record`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from events_app.models import Event, EventHourCount, RejectedItem, RejectionHourCount
from events_app.storable import text_storable
from project.postgresql.slots import slot_counters_fold

# Per API client; older rejections are pruned by the statement that records newer ones.
REJECTIONS_KEPT = 1000
# An item's JSON as sent is kept up to this many characters (enough to recognise it).
SENT_KEPT = 2000


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused batch item, as the API answered it."""

    position: int
    error: str
    event_type: str = ""
    sent: str = ""


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rejections_record(
    *, api_client_id: int, rejections: Sequence[Rejection], now: datetime
) -> None:
    """Keep a batch's refused items for the live page and count them by the hour.

    On PostgreSQL one statement inserts the items, adds them to the hour's count and
    prunes the client's items beyond REJECTIONS_KEPT (its DELETE sees the rows from
    before the statement, so it keeps REJECTIONS_KEPT minus the new ones). SQLite
    (the embedded default) takes three statements in one transaction.
    """
    if not rejections:
        return
    kept = list(rejections)[-REJECTIONS_KEPT:]
    hour = hour_of(now)
    rows = [
        {
            "position": r.position,
            "event_type": text_storable(r.event_type[:64]),
            "error": text_storable(r.error),
            "sent": text_storable(r.sent[:SENT_KEPT]),
        }
        for r in kept
    ]
    if connection.vendor == "postgresql":
        _record_pg(api_client_id, rows, len(rejections), hour, now)
        return
    with transaction.atomic():
        RejectedItem.objects.bulk_create(
            RejectedItem(api_client_id=api_client_id, created_at=now, **row) for row in rows
        )
        counted = RejectionHourCount.objects.filter(hour=hour, api_client_id=api_client_id)
        if not counted.update(items=F("items") + len(rejections)):
            RejectionHourCount.objects.create(
                hour=hour, api_client_id=api_client_id, items=len(rejections)
            )
        _prune(api_client_id, keep=REJECTIONS_KEPT)


def _record_pg(
    api_client_id: int, rows: list[dict[str, Any]], total: int, hour: datetime, now: datetime
) -> None:
    items, counts = RejectedItem._meta.db_table, RejectionHourCount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH added AS (
                INSERT INTO {items} (api_client_id, created_at, position, event_type, error, sent)
                SELECT %(client)s, %(now)s, r.position, r.event_type, r.error, r.sent
                FROM json_to_recordset(%(rows)s::json)
                    AS r(position integer, event_type text, error text, sent text)
            ), counted AS (
                INSERT INTO {counts} (hour, api_client_id, items)
                VALUES (%(hour)s, %(client)s, %(total)s)
                ON CONFLICT (hour, api_client_id)
                DO UPDATE SET items = {counts}.items + EXCLUDED.items
            )
            DELETE FROM {items} WHERE api_client_id = %(client)s AND id <= (
                SELECT id FROM {items} WHERE api_client_id = %(client)s
                ORDER BY id DESC OFFSET %(keep_old)s LIMIT 1)""",  # noqa: S608
            {
                "client": api_client_id,
                "now": now,
                "rows": json.dumps(rows),
                "hour": hour,
                "total": total,
                "keep_old": max(REJECTIONS_KEPT - len(rows), 0),
            },
        )


def _prune(api_client_id: int, *, keep: int) -> None:
    mine = RejectedItem.objects.filter(api_client_id=api_client_id)
    boundary = mine.order_by("-id").values_list("id", flat=True)[keep : keep + 1]
    for last in boundary:
        mine.filter(id__lte=last).delete()


def _sent_type(sent: bytes) -> str:
    """The event type an item names (key or id), or "" when it names none readably."""
    try:
        event = json.loads(sent).get("event") or {}
        named = event.get("event_type") or event.get("event_type_id") or ""
    except (ValueError, AttributeError):
        return ""
    return named if isinstance(named, str) else ""


def batch_rejections_record(
    *, api_client: Any, invalid: Sequence[Any], sent: Sequence[Any], now: datetime | None = None
) -> None:
    """`rejections_record` for the batch API's answer: its `invalid_events` (with
    `index` and `error`) and the items as sent (raw JSON, by index)."""
    if not invalid or not getattr(api_client, "pk", None):
        return
    rejections_record(
        api_client_id=api_client.pk,
        rejections=[
            Rejection(
                position=i.index,
                error=i.error,
                event_type=_sent_type(bytes(sent[i.index])),
                sent=bytes(sent[i.index]).decode("utf-8", "replace"),
            )
            for i in invalid
        ],
        now=now or timezone.now(),
    )


def hour_counts_fold(now: datetime) -> int:
    """The periodic job: fold the slots of hours before the last one into slot 0, and
    drop the rows that hold nothing; returns the rows removed.

    The slots spread concurrent writers of the current hour over several rows; past
    hours are rarely written (a delete of old events), so one row each is enough and
    keeps the dashboard's read small (project.postgresql.slots).
    """
    if connection.vendor != "postgresql":
        return 0
    return slot_counters_fold(
        table=EventHourCount._meta.db_table,
        keys=("hour", "event_type_id"),
        value="events",
        before=hour_of(now) - timedelta(hours=1),
    )


def event_hour_counts(
    *, since: datetime, until: datetime, bucket: str
) -> list[tuple[datetime, str, int]]:
    """(bucket start, event type id, events) for the events created in [since, until),
    `bucket` "hour" or "day" (UTC): from the hourly counters on PostgreSQL, from the
    events on SQLite."""
    rows: Any
    if connection.vendor == "postgresql":
        rows = (
            EventHourCount.objects.filter(hour__gte=since, hour__lt=until)
            .annotate(bucket=Trunc("hour", bucket, tzinfo=UTC))
            .values_list("bucket", "event_type_id")
            .annotate(n=Sum("events"))
        )
    else:
        rows = (
            Event.objects.filter(created_at__gte=since, created_at__lt=until)
            .annotate(bucket=Trunc("created_at", bucket, tzinfo=UTC))
            .values_list("bucket", "event_type_id")
            .annotate(n=Count("id"))
            .order_by()
        )
    return [(b, t, int(n)) for b, t, n in rows if n]


def rejection_hour_counts(
    *, since: datetime, until: datetime, bucket: str
) -> list[tuple[datetime, int]]:
    """(bucket start, items rejected) in [since, until), every API client together."""
    rows = (
        RejectionHourCount.objects.filter(hour__gte=since, hour__lt=until)
        .annotate(bucket=Trunc("hour", bucket, tzinfo=UTC))
        .values_list("bucket")
        .annotate(n=Sum("items"))
        .order_by()
    )
    return [(b, int(n)) for b, n in rows]
