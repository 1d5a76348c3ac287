"""The figures on the admin home page, each one an index lookup or an estimate.

Nothing here counts a whole big table: the last 24 hours (in all and per type) are
read from the hourly event counters, pending and undelivered events are capped
counts over their partial indexes, table totals come from
EstimatedCountPaginator (planner estimate on big tables). Automation figures
read deliveries and workflow runs by time through their time-ordered primary
keys (an id range, project.ids.public_id_floor) and by status through their
(status, id) indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Model, QuerySet

from automation.schedules.models import Schedule
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from customers.models import Customer
from events_app.activity import event_hour_counts, hour_of
from events_app.models import ApiClient, Event, EventType
from project.admin.lists import EstimatedCountPaginator, capped_count
from project.ids import public_id_floor

RECENT = timedelta(hours=24)
# Counts stop here and read "100000+": enough to tell a busy day from a quiet one.
FIGURE_CAP = 100_000
# Events nobody marked stay pending (the integration marks them), so this one is
# usually large: a smaller cap keeps its index range count short.
PENDING_CAP = 10_000
# The dashboard lists the first types only; the event list has them all.
MAX_TYPES = 12
LATEST_EVENTS = 10


@dataclass(frozen=True)
class Figure:
    value: int
    kind: str = "exact"  # "exact" | "estimate" | "at_least"

    def __str__(self) -> str:
        if self.kind == "estimate":
            return f"~{self.value:,}"
        if self.kind == "at_least":
            return f"{self.value:,}+"
        return f"{self.value:,}"


@dataclass(frozen=True)
class TypeFigure:
    event_type: EventType
    recent: Figure


@dataclass(frozen=True)
class Dashboard:
    events_recent: Figure
    events_pending: Figure
    events_undelivered: Figure
    events_total: Figure
    customers_total: Figure
    event_types_total: int
    api_clients_active: int
    by_type: list[TypeFigure] = field(default_factory=list)
    latest_events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class AutomationDashboard:
    endpoints_failing: Figure
    endpoints_disabled: Figure
    deliveries_failed_recent: Figure
    deliveries_pending: Figure
    workflows_active: int
    runs_recent: Figure
    runs_failed_recent: Figure
    runs_waiting: Figure
    schedules_paused: Figure
    # Subscriptions that failed without a success since: the ones a marketer should call about.
    failing_endpoints: list[Endpoint] = field(default_factory=list)


def _capped(queryset: QuerySet[Any], cap: int) -> Figure:
    count, more = capped_count(queryset, cap)
    return Figure(count, "at_least" if more else "exact")


def _total(model: type[Model]) -> Figure:
    paginator = EstimatedCountPaginator(model._default_manager.order_by("pk"), 1)
    count = paginator.count
    return Figure(count, paginator.count_kind)


def dashboard_figures(*, now: datetime) -> Dashboard:
    """Everything the admin home page shows, in a dozen cheap queries.

    The last 24 hours per type come from the hourly event counters (the 24 hours
    that began with the hour 23 hours ago; events_app.activity): exact, and as cheap
    at ten million events as at ten.
    """
    hour = hour_of(now)
    per_type: dict[str, int] = {}
    for _, type_id, n in event_hour_counts(
        since=hour - RECENT + timedelta(hours=1), until=hour + timedelta(hours=1), bucket="day"
    ):
        per_type[type_id] = per_type.get(type_id, 0) + n
    types = list(EventType.objects.order_by("key")[:MAX_TYPES])
    return Dashboard(
        events_recent=Figure(sum(per_type.values())),
        events_pending=_capped(Event.objects.filter(state=Event.State.PENDING), PENDING_CAP),
        events_undelivered=_capped(Event.objects.filter(is_delivered=False), FIGURE_CAP),
        events_total=_total(Event),
        customers_total=_total(Customer),
        event_types_total=EventType.objects.count(),
        api_clients_active=ApiClient.objects.filter(revoked_at__isnull=True).count(),
        by_type=[TypeFigure(t, Figure(per_type.get(t.pk, 0))) for t in types],
        latest_events=list(
            Event.objects.select_related("event_type", "customer").order_by("-created_at", "-id")[
                :LATEST_EVENTS
            ]
        ),
    )


FAILING_ENDPOINTS_SHOWN = 5


def automation_figures(*, now: datetime) -> AutomationDashboard:
    """Webhook health, workflow runs and paused schedules, each an index range or lookup."""
    since = public_id_floor(now - RECENT)
    subscriptions = Endpoint.objects.filter(kind=Endpoint.Kind.SUBSCRIPTION)
    failing = subscriptions.filter(active=True, first_failure_at__isnull=False)
    return AutomationDashboard(
        # endpoint_active_kind_idx (partial on active); the disabled ones are read from the
        # endpoints table itself: one row per webhook or schedule, not per event.
        endpoints_failing=_capped(failing, FIGURE_CAP),
        endpoints_disabled=_capped(subscriptions.filter(active=False), FIGURE_CAP),
        # delivery_status_idx (status, id), the id bounded below.
        deliveries_failed_recent=_capped(
            Delivery.objects.filter(status=Delivery.Status.FAILED, pk__gte=since), FIGURE_CAP
        ),
        # delivery_due_idx (partial on pending).
        deliveries_pending=_capped(
            Delivery.objects.filter(status=Delivery.Status.PENDING), FIGURE_CAP
        ),
        workflows_active=Workflow.objects.filter(active=True).count(),
        runs_recent=_capped(WorkflowRun.objects.filter(pk__gte=since), FIGURE_CAP),
        # workflowrun_status_idx (status, id).
        runs_failed_recent=_capped(
            WorkflowRun.objects.filter(status=WorkflowRun.Status.FAILED, pk__gte=since),
            FIGURE_CAP,
        ),
        runs_waiting=_capped(
            WorkflowRun.objects.filter(status=WorkflowRun.Status.WAITING), FIGURE_CAP
        ),
        # schedule_status_idx (status, created_date, id).
        schedules_paused=_capped(
            Schedule.objects.filter(status=Schedule.Status.PAUSED), FIGURE_CAP
        ),
        failing_endpoints=list(failing.order_by("first_failure_at")[:FAILING_ENDPOINTS_SHOWN]),
    )
