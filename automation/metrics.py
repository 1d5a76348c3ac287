"""Automation's figures for GET /metrics (project.metrics), registered in AppConfig.ready().

Every query the scrape runs is here, each served by an index (named beside it) and
bounded by the cap, so a scrape costs the same at a thousand rows or a hundred million:

- pending work per queue: the rows the claimers take, through the partial indexes
  they use (deliveries: the dispatcher's due rows; evaluation: events still flagged
  for automation and workflow runs due to resume; schedules: due ticks);
- events ingested: the trigger-kept, never decremented `ingested` column of the event
  counters (events_app.selectors.events_ingested_total);
- delivery outcomes: pending deliveries, and the deliveries that reached a final
  status within HERALD_METRICS_WINDOW_SECONDS (an index on the completion time, so
  the scrape reads a minute of completions, not the table);
- endpoints failing (since when) and disabled, through partial indexes that hold
  only those endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, QuerySet
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from automation.schedules.models import Schedule
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import WorkflowRun
from events_app.models import Event
from events_app.selectors import events_ingested_total
from project.metrics import (
    backlog_of,
    capped_count,
    metric_source_register,
    oldest,
    pending_work_register,
    seconds_since,
)

DELIVERY_FINAL = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)


def deliveries_due(now: datetime) -> QuerySet[Delivery]:
    """Due deliveries, in flight or not (delivery_due_idx: the dispatcher's scan)."""
    return Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)


def events_awaiting_evaluation(now: datetime) -> QuerySet[Event]:
    """Events flagged for automation: what the claimer of due work takes
    (event_automation_pending_idx)."""
    return Event.objects.filter(automation_pending=True)


def workflow_runs_due(now: datetime) -> QuerySet[WorkflowRun]:
    """Unfinished runs past their resume_at (workflowrun_due_idx: the run dispatcher's)."""
    return WorkflowRun.objects.filter(
        status__in=[WorkflowRun.Status.PENDING, WorkflowRun.Status.WAITING], resume_at__lte=now
    )


def schedules_due(now: datetime) -> QuerySet[Schedule]:
    """Schedules whose tick is due (schedule_due_idx: the scheduler's claim)."""
    return Schedule.objects.filter(status__in=Schedule.RUNNABLE, next_run_at__lte=now)


def events_metrics(now: datetime, cap: int) -> Iterator[Metric]:
    ingested = CounterMetricFamily(
        "herald_events_ingested",
        "Events stored since the database was created (deleting events does not lower it).",
    )
    ingested.add_metric([], events_ingested_total())
    yield ingested
    lag = GaugeMetricFamily(
        "herald_evaluation_lag_seconds",
        "Age of the oldest event still awaiting workflow evaluation (0: none).",
    )
    lag.add_metric([], seconds_since(oldest(events_awaiting_evaluation(now), "created_at"), now))
    yield lag


def delivery_metrics(now: datetime, cap: int) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "herald_deliveries_pending",
        f"Deliveries not final yet, due or waiting for a retry (counted up to {cap}).",
    )
    pending.add_metric(
        [],
        capped_count(
            Delivery.objects.filter(status=Delivery.Status.PENDING), cap, "next_attempt_at"
        ),
    )
    yield pending
    window = settings.HERALD_METRICS_WINDOW_SECONDS
    completed = GaugeMetricFamily(
        "herald_deliveries_completed",
        f"Deliveries that reached a final status in the last {window} s, by status "
        f"(counted up to {cap} each).",
        labels=["status"],
    )
    since = now - timedelta(seconds=window)
    for status in DELIVERY_FINAL:
        # delivery_completed_idx: (status, completed_at) of final deliveries.
        finished = Delivery.objects.filter(status=status, completed_at__gt=since)
        completed.add_metric([status.value], capped_count(finished, cap, "completed_at"))
    yield completed


def endpoint_metrics(now: datetime, cap: int) -> Iterator[Metric]:
    failing = GaugeMetricFamily(
        "herald_endpoints_failing",
        "Active endpoints whose deliveries fail since their last success, by kind "
        "(disabled automatically after 5 days).",
        labels=["kind"],
    )
    failing_for = GaugeMetricFamily(
        "herald_endpoint_failing_seconds",
        "How long the longest-failing active endpoint of each kind has been failing.",
        labels=["kind"],
    )
    # endpoint_failing_idx holds only these rows.
    rows = (
        Endpoint.objects.filter(active=True, first_failure_at__isnull=False)
        .values("kind")
        .annotate(n=Count("pk"), since=Min("first_failure_at"))
        .order_by("kind")
    )
    found: dict[str, tuple[int, datetime]] = {row["kind"]: (row["n"], row["since"]) for row in rows}
    for kind in Endpoint.Kind.values:
        count, since = found.get(kind, (0, None))
        failing.add_metric([kind], count)
        failing_for.add_metric([kind], seconds_since(since, now))
    yield failing
    yield failing_for
    disabled = GaugeMetricFamily(
        "herald_endpoints_disabled",
        "Disabled endpoints, by kind (by hand, by a 410, or after 5 days of failures).",
        labels=["kind"],
    )
    # endpoint_disabled_idx holds only these rows.
    counts = dict(
        Endpoint.objects.filter(active=False)
        .values("kind")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("kind", "n")
    )
    for kind in Endpoint.Kind.values:
        disabled.add_metric([kind], counts.get(kind, 0))
    yield disabled


def metrics_register() -> None:
    """Register automation's figures with project.metrics (AutomationConfig.ready)."""
    pending_work_register(
        name="deliveries", queue="deliveries", source=backlog_of(deliveries_due, "next_attempt_at")
    )
    pending_work_register(
        name="evaluation.events",
        queue="evaluation",
        source=backlog_of(events_awaiting_evaluation, "created_at"),
    )
    pending_work_register(
        name="evaluation.runs",
        queue="evaluation",
        source=backlog_of(workflow_runs_due, "resume_at"),
    )
    pending_work_register(
        name="schedules", queue="schedules", source=backlog_of(schedules_due, "next_run_at")
    )
    metric_source_register(name="events", source=events_metrics)
    metric_source_register(name="deliveries.outcomes", source=delivery_metrics)
    metric_source_register(name="endpoints", source=endpoint_metrics)
