"""The dashboard's trends: events per type, workflow runs, deliveries and rejected batch
items over the last 24 hours (by the hour) or 7 / 30 days (by the day), in UTC.

Each series is one aggregate query that stays cheap however many rows there are:
events and rejections from their hourly counters (events_app.activity), runs started
and deliveries created from theirs (automation.activity); the outcomes that are not a
success (failed runs, failed, retrying and cancelled deliveries: few) from the window's
rows through their (status, id) indexes (project.ids.public_id_floor: an id range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Case, CharField, Count, F, Value, When
from django.db.models.expressions import RawSQL

from automation.activity import DELIVERIES, RUNS, created_per_bucket
from automation.webhooks.models import Delivery
from automation.workflows.models import WorkflowRun
from events_app.activity import event_hour_counts, hour_of, rejection_hour_counts
from events_app.models import EventType
from project.ids import public_id_floor

# name -> (buckets, bucket unit)
RANGES: dict[str, tuple[int, str]] = {"24h": (24, "hour"), "7d": (7, "day"), "30d": (30, "day")}
DEFAULT_RANGE = "24h"
# Types drawn on their own in the events chart; the rest add up to "other types".
TYPES_DRAWN = 8


@dataclass(frozen=True)
class Series:
    label: str
    values: list[int]

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True)
class Chart:
    key: str  # the element ids' stem
    title: str
    series: list[Series]
    stacked: bool = False

    def table(self, labels: list[str]) -> list[tuple[str, list[int]]]:
        """The text fallback: one row per bucket, one column per series."""
        return [(label, [s.values[i] for s in self.series]) for i, label in enumerate(labels)]


@dataclass(frozen=True)
class Trends:
    range: str
    labels: list[str]
    charts: list[Chart] = field(default_factory=list)

    @property
    def tables(self) -> list[tuple[Chart, list[tuple[str, list[int]]]]]:
        return [(chart, chart.table(self.labels)) for chart in self.charts]

    def as_json(self) -> dict[str, Any]:
        """What herald/dashboard.js draws (the page carries it as a JSON script tag)."""
        return {
            "labels": self.labels,
            "charts": [
                {
                    "key": c.key,
                    "title": c.title,
                    "stacked": c.stacked,
                    "series": [{"label": s.label, "values": s.values} for s in c.series],
                }
                for c in self.charts
            ],
        }


def _buckets(now: datetime, count: int, unit: str) -> list[datetime]:
    last = hour_of(now)
    if unit == "day":
        last = last.replace(hour=0)
        return [last - timedelta(days=count - 1 - i) for i in range(count)]
    return [last - timedelta(hours=count - 1 - i) for i in range(count)]


def _label(moment: datetime, unit: str) -> str:
    return moment.strftime("%H:00" if unit == "hour" else "%b %d")


def _spread(rows: dict[Any, dict[datetime, int]], buckets: list[datetime]) -> dict[Any, list[int]]:
    return {key: [by_bucket.get(b, 0) for b in buckets] for key, by_bucket in rows.items()}


def _bucket_of_id(public_id: str, unit: str) -> datetime:
    """The bucket of a row by its time-ordered id (project.ids: milliseconds first), so
    counting needs only the (status, id) index, not the rows."""
    moment = datetime.fromtimestamp(int(public_id[:12], 16) / 1000, tz=UTC)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if unit == "day" else start


def _count_ids(
    queryset: Any, unit: str, since: datetime, split: Any = None
) -> dict[Any, dict[datetime, int]]:
    """{split value: {bucket: rows}} of `queryset` bucketed by the time in their ids
    (`split` None: one key, None). On PostgreSQL the database buckets them from the
    (status, id) index alone; SQLite's rows come to Python (small tables there)."""
    width = 86_400_000 if unit == "day" else 3_600_000
    out: dict[Any, dict[datetime, int]] = {}
    if connection.vendor == "postgresql":
        since_ms = int(since.timestamp() * 1000)
        bucketed = queryset.annotate(
            b=RawSQL(
                "((('x' || substr(id, 1, 12))::bit(48)::bigint - %s) / %s)", (since_ms, width)
            ),
            key=split if split is not None else Value(None, output_field=CharField()),
        )
        for offset, key, n in bucketed.values_list("b", "key").annotate(n=Count("pk")).order_by():
            out.setdefault(key, {})[since + timedelta(milliseconds=offset * width)] = n
        return out
    with_key = (
        queryset.annotate(key=split).values_list("pk", "key")
        if split is not None
        else ((pk, None) for pk in queryset.values_list("pk", flat=True))
    )
    for public_id, key in with_key:
        bucket = _bucket_of_id(public_id, unit)
        by_bucket = out.setdefault(key, {})
        by_bucket[bucket] = by_bucket.get(bucket, 0) + 1
    return out


def _event_chart(since: datetime, until: datetime, unit: str, buckets: list[datetime]) -> Chart:
    per_type: dict[str, dict[datetime, int]] = {}
    for bucket, type_id, n in event_hour_counts(since=since, until=until, bucket=unit):
        per_type.setdefault(type_id, {})[bucket] = n
    spread = _spread(per_type, buckets)
    ranked = sorted(spread, key=lambda t: -sum(spread[t]))
    keys = dict(EventType.objects.filter(pk__in=ranked[:TYPES_DRAWN]).values_list("pk", "key"))
    series = [Series(keys.get(t, t), spread[t]) for t in ranked[:TYPES_DRAWN]]
    rest = ranked[TYPES_DRAWN:]
    if rest:
        series.append(
            Series("other types", [sum(spread[t][i] for t in rest) for i in range(len(buckets))])
        )
    if not series:
        series = [Series("events", [0] * len(buckets))]
    return Chart("events", "Events by type", series, stacked=True)


def _runs_chart(since: datetime, until: datetime, unit: str, buckets: list[datetime]) -> Chart:
    started = created_per_bucket(
        kind=RUNS, model=WorkflowRun, since=since, until=until, bucket=unit
    )
    # workflowrun_status_idx (status, id): the window's failed runs, few next to all.
    failed = _count_ids(
        WorkflowRun.objects.filter(
            status=WorkflowRun.Status.FAILED, pk__gte=public_id_floor(since)
        ),
        unit,
        since,
    ).get(None, {})
    return Chart(
        "runs",
        "Workflow runs",
        [
            Series("runs started", [started.get(b, 0) for b in buckets]),
            Series("failed", [failed.get(b, 0) for b in buckets]),
        ],
    )


def _deliveries_chart(
    since: datetime, until: datetime, unit: str, buckets: list[datetime]
) -> Chart:
    created = created_per_bucket(
        kind=DELIVERIES, model=Delivery, since=since, until=until, bucket=unit
    )
    # delivery_status_idx (status, id): the window's deliveries that have not succeeded
    # (failed, cancelled, pending: few next to all); the rest succeeded.
    window = Delivery.objects.filter(pk__gte=public_id_floor(since))
    ended = window.filter(status__in=[Delivery.Status.FAILED, Delivery.Status.CANCELLED])
    # The queue (pending) is small: only its rows are read, for their attempt count.
    retrying = Case(
        When(attempt_count__gt=0, then=Value("retrying")),
        default=Value("waiting"),
        output_field=CharField(),
    )
    counted = _count_ids(ended, unit, since, F("status"))
    counted.update(_count_ids(window.filter(status=Delivery.Status.PENDING), unit, since, retrying))
    spread = _spread(counted, buckets)
    zero = [0] * len(buckets)
    others = [sum(values[i] for values in spread.values()) for i in range(len(buckets))]
    succeeded = [max(created.get(b, 0) - others[i], 0) for i, b in enumerate(buckets)]
    return Chart(
        "deliveries",
        "Webhook deliveries (by the time they were created)",
        [
            Series("succeeded", succeeded),
            Series("failed", spread.get("failed", zero)),
            Series("retrying", spread.get("retrying", zero)),
        ],
        stacked=True,
    )


def _rejections_chart(
    since: datetime, until: datetime, unit: str, buckets: list[datetime]
) -> Chart:
    counted = dict(rejection_hour_counts(since=since, until=until, bucket=unit))
    return Chart(
        "rejections",
        "Batch items rejected",
        [Series("items rejected", [counted.get(b, 0) for b in buckets])],
    )


def trends(*, now: datetime, range_name: str, automation: bool) -> Trends:
    """The dashboard's charts over `range_name` (a key of RANGES) ending now; the
    automation charts (runs, deliveries) only with `automation`."""
    count, unit = RANGES.get(range_name, RANGES[DEFAULT_RANGE])
    buckets = _buckets(now, count, unit)
    since = buckets[0]
    until = hour_of(now) + timedelta(hours=1)
    charts = [_event_chart(since, until, unit, buckets)]
    if automation:
        charts += [
            _runs_chart(since, until, unit, buckets),
            _deliveries_chart(since, until, unit, buckets),
        ]
    charts.append(_rejections_chart(since, until, unit, buckets))
    name = range_name if range_name in RANGES else DEFAULT_RANGE
    return Trends(name, [_label(b, unit) for b in buckets], charts)
