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


def _count_ids(ids: Any, unit: str) -> dict[datetime, int]:
    out: dict[datetime, int] = {}
    for public_id in ids:
        bucket = _bucket_of_id(public_id, unit)
        out[bucket] = out.get(bucket, 0) + 1
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
        ).values_list("pk", flat=True),
        unit,
    )
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
    # delivery_status_idx (status, id): the ids of the window's deliveries that have not
    # succeeded (failed, cancelled, pending: few next to all); the rest succeeded.
    floor = public_id_floor(since)
    ended = Delivery.objects.filter(pk__gte=floor)
    failed = _count_ids(
        ended.filter(status=Delivery.Status.FAILED).values_list("pk", flat=True), unit
    )
    cancelled = _count_ids(
        ended.filter(status=Delivery.Status.CANCELLED).values_list("pk", flat=True), unit
    )
    retrying: dict[datetime, int] = {}
    waiting: dict[datetime, int] = {}
    # delivery_due_idx (partial on pending): the queue, small.
    pending = ended.filter(status=Delivery.Status.PENDING).values_list("pk", "attempt_count")
    for public_id, attempts in pending:
        into = retrying if attempts else waiting
        bucket = _bucket_of_id(public_id, unit)
        into[bucket] = into.get(bucket, 0) + 1
    spread = _spread(
        {"failed": failed, "cancelled": cancelled, "retrying": retrying, "waiting": waiting},
        buckets,
    )
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
