"""A segment's members over time, from its membership rows (entered_at / exited_at).

The members at the end of a day are today's members minus what changed after that day:
so the series needs only the current count and the entries and exits inside the window,
read in one statement (a UNION ALL of three grouped reads), never a count per day over
every stay. Days are the site's time zone (settings.TIME_ZONE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import CharField, Count, DateTimeField, QuerySet, Value
from django.db.models.functions import TruncDay
from django.utils import timezone

from automation.segments.models import SegmentMembership

TREND_DAYS = 30


@dataclass(frozen=True)
class TrendDay:
    day: date
    members: int  # at the end of the day (for today: now)
    entered: int
    exited: int


def _grouped(queryset: QuerySet[SegmentMembership], kind: str, column: str | None) -> QuerySet:
    day = TruncDay(column) if column else Value(None, output_field=DateTimeField())
    return (
        queryset.order_by()
        .annotate(day=day, kind=Value(kind, output_field=CharField()))
        .values("kind", "day")
        .annotate(n=Count("id"))
    )


def segment_member_trend(
    *, segment_id: str, days: int = TREND_DAYS, now: datetime | None = None
) -> list[TrendDay]:
    """Members, entries and exits per day for the last `days` days (oldest first)."""
    now = now or timezone.now()
    today = timezone.localtime(now).date()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    stays = SegmentMembership.objects.filter(segment_id=segment_id)
    # The first arm's columns convert every row's (TruncDay makes the day aware).
    rows = _grouped(stays.filter(entered_at__gte=start), "in", "entered_at").union(
        _grouped(stays.filter(exited_at__gte=start), "out", "exited_at"),
        _grouped(stays.filter(exited_at__isnull=True), "now", None),
        all=True,
    )
    current = 0
    entered: dict[date, int] = {}
    exited: dict[date, int] = {}
    for row in rows:
        if row["kind"] == "now":
            current += row["n"]
            continue
        day = timezone.localtime(row["day"]).date()
        target = entered if row["kind"] == "in" else exited
        target[day] = target.get(day, 0) + row["n"]
    series: list[TrendDay] = []
    members = current
    for offset in range(days):
        day = today - timedelta(days=offset)
        series.append(TrendDay(day, members, entered.get(day, 0), exited.get(day, 0)))
        # The end of the day before: undo this day's moves.
        members -= entered.get(day, 0) - exited.get(day, 0)
    series.reverse()
    return series
