"""Helpers of the set-based delete tests: row counts, a delivery log, runs, a schedule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from automation.due import due_events_process
from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.services import schedule_create
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from events_app.models import Event, EventType
from tests.factories import CustomerFactory, EventFactory

# A public address literal: passes the outbound URL guard without DNS. Nothing is
# sent to it: deliveries are only created (after-commit work does not run here).
PUBLIC_URL = "https://93.184.215.14/hook"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def row_counts(*tables: type[models.Model]) -> dict[str, int]:
    """Rows per table, by model label: what a negative assertion compares."""
    return {model._meta.label: model._base_manager.count() for model in tables}


def attempt_each(deliveries: Iterable[Delivery]) -> None:
    """One attempt per delivery: what the sender records (sending is not what is tested)."""
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=delivery,
            number=1,
            started_at=timezone.now(),
            outcome=DeliveryAttempt.Outcome.RETRY,
        )
        for delivery in deliveries
    )


def delivery_log(
    endpoint: Endpoint, count: int = 0, *, events: Sequence[Event] = ()
) -> list[Delivery]:
    """`count` deliveries without an event, one per event of `events`; one attempt each."""
    with transaction.atomic():
        deliveries = [delivery_create(endpoint=endpoint, payload={"n": n}) for n in range(count)]
        deliveries += [delivery_create(endpoint=endpoint, payload={}, event=e) for e in events]
    attempt_each(deliveries)
    return deliveries


def evaluated(trigger: EventType, count: int, capture: Any) -> list[WorkflowRun]:
    """`count` events of `trigger`, evaluated by the engine: one run per matching workflow."""
    customer = CustomerFactory()
    events = [
        EventFactory(event_type=trigger, customer=customer, automation_pending=True)
        for _ in range(count)
    ]
    active_workflows_forget()  # the cache is dropped on commit, which a `db` test never reaches
    with capture(execute=False):
        due_events_process(event_ids=[e.pk for e in events])
    return list(WorkflowRun.objects.filter(event__in=events))


def a_schedule() -> Schedule:
    """A schedule made by the service at NOW (every minute for a day), with its endpoint."""
    return schedule_create(
        owner="owner@example.com",
        end_date=NOW + timedelta(days=1),
        interval="* * * * *",
        callback_url=PUBLIC_URL,
        now=NOW,
    )


def schedule_history(schedule: Schedule, runs: int) -> None:
    """`runs` ticks from NOW, each with the callback's delivery and one attempt."""
    deliveries = delivery_log(schedule.endpoint, runs)
    ScheduleRun.objects.bulk_create(
        ScheduleRun(schedule=schedule, scheduled_for=NOW + timedelta(minutes=n), delivery=d)
        for n, d in enumerate(deliveries)
    )
