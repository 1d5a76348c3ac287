"""GET /metrics: exact figures read from the database, in the Prometheus text format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from automation.schedules.models import Schedule
from automation.webhooks.deliveries import message_id_new
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def scrape(client: Client, **headers: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus_client's own parser: {(sample, labels): value}."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def queue(name: str) -> tuple[tuple[str, str], ...]:
    return (("queue", name),)


def endpoint(kind: str = Endpoint.Kind.SUBSCRIPTION, **fields: Any) -> Endpoint:
    return Endpoint.objects.create(
        kind=kind, url="https://hooks.example.com/h", secret="s", **fields
    )


def delivery(to: Endpoint, **fields: Any) -> Delivery:
    return Delivery.objects.create(endpoint=to, message_id=message_id_new(), payload={}, **fields)


def test_empty_deployment_reports_zero_everywhere(client):
    with time_machine.travel(NOW, tick=False):
        figures = scrape(client)

    for name in ("deliveries", "evaluation", "schedules"):
        assert figures[("herald_pending_work", queue(name))] == 0
        assert figures[("herald_oldest_pending_seconds", queue(name))] == 0
    assert figures[("herald_events_ingested_total", ())] == 0
    assert figures[("herald_evaluation_lag_seconds", ())] == 0
    assert figures[("herald_deliveries_pending", ())] == 0
    for status in ("succeeded", "failed", "cancelled"):
        assert figures[("herald_deliveries_completed", (("status", status),))] == 0
    for kind in ("subscription", "schedule", "workflow"):
        assert figures[("herald_endpoints_disabled", (("kind", kind),))] == 0
        assert figures[("herald_endpoints_failing", (("kind", kind),))] == 0
    sources = {labels[0][1]: value for (name, labels), value in figures.items()
               if name == "herald_metrics_source_up"}  # fmt: skip
    assert sources == {
        "deliveries": 1,
        "evaluation.events": 1,
        "evaluation.runs": 1,
        "schedules": 1,
        "events": 1,
        "deliveries.outcomes": 1,
        "endpoints": 1,
    }


def test_events_ingested_counts_every_event_stored_through_the_api(api, client):
    purchase = EventTypeFactory(key="purchase")
    body = {
        "events": [
            {"event": {"event_type": "purchase", "customer_external_id": f"c-{n}"}}
            for n in range(3)
        ]
    }
    assert api.post(f"{API}/events/batch", body, format="json").status_code == 200
    single = {"event": {"event_type_id": purchase.id, "customer_external_id": "c-9"}}
    assert api.post(f"{API}/events", single, format="json").status_code in (200, 201)

    assert scrape(client)[("herald_events_ingested_total", ())] == 4


def test_events_ingested_never_goes_down_when_events_and_their_type_are_deleted(api, client):
    purchase = EventTypeFactory(key="purchase")
    other = EventTypeFactory(key="other")
    body = {
        "events": [
            {"event": {"event_type": key, "customer_external_id": f"c-{n}"}}
            for n, key in enumerate(["purchase", "purchase", "other"])
        ]
    }
    assert api.post(f"{API}/events/batch", body, format="json").status_code == 200
    assert scrape(client)[("herald_events_ingested_total", ())] == 3

    # Deleted one by one (row paths), then a whole type's events and the type itself.
    Event.objects.filter(event_type=purchase).first().delete()  # type: ignore[union-attr]
    Event.objects.filter(event_type=other).delete()
    other.delete()

    assert Event.objects.count() == 1
    assert scrape(client)[("herald_events_ingested_total", ())] == 3
    single = {"event": {"event_type_id": purchase.id, "customer_external_id": "c-9"}}
    assert api.post(f"{API}/events", single, format="json").status_code == 201
    assert scrape(client)[("herald_events_ingested_total", ())] == 4


def test_pending_work_and_its_age_per_queue_are_exact(client):
    hook = endpoint()
    # Deliveries: two due (one for 90 s, one in flight since 5 s), one retry due later,
    # one finished (not pending work).
    delivery(hook, next_attempt_at=NOW - timedelta(seconds=90))
    delivery(
        hook, next_attempt_at=NOW - timedelta(seconds=5), locked_until=NOW + timedelta(seconds=60)
    )
    delivery(hook, next_attempt_at=NOW + timedelta(minutes=5), retry_step=1)
    delivery(hook, status="succeeded", completed_at=NOW - timedelta(days=2))
    # Evaluation: three events awaiting evaluation (the oldest for 40 s), one evaluated;
    # a waiting run due 120 s ago, a waiting run due tomorrow, a finished run.
    customer = CustomerFactory()
    for age in (40, 20, 1):
        EventFactory(customer=customer, automation_pending=True,
                     created_at=NOW - timedelta(seconds=age))  # fmt: skip
    evaluated = EventFactory(customer=customer, created_at=NOW - timedelta(hours=1))
    workflow = Workflow.objects.create(name="w")
    for status, resume_at in (
        ("waiting", NOW - timedelta(seconds=120)),
        ("waiting", NOW + timedelta(days=1)),
        ("succeeded", None),
    ):
        WorkflowRun.objects.create(
            workflow=workflow, event=EventFactory(customer=customer), customer=customer,
            status=status, resume_at=resume_at, created_at=NOW - timedelta(hours=1),
        )  # fmt: skip
    # Schedules: one tick due 2 s ago, one due later, one paused with a past time.
    for status, next_run_at in (
        ("ACTIVE", NOW - timedelta(seconds=2)),
        ("INACTIVE", NOW + timedelta(minutes=1)),
        ("PAUSED", NOW - timedelta(days=1)),
    ):
        Schedule.objects.create(
            owner="ops@example.com", end_date=NOW + timedelta(days=30), interval="* * * * *",
            callback_url="https://cb.example.com/", status=status, next_run_at=next_run_at,
        )  # fmt: skip

    with time_machine.travel(NOW, tick=False):
        figures = scrape(client)

    assert figures[("herald_pending_work", queue("deliveries"))] == 2
    assert figures[("herald_oldest_pending_seconds", queue("deliveries"))] == 90
    assert figures[("herald_pending_work", queue("evaluation"))] == 3 + 1
    assert figures[("herald_oldest_pending_seconds", queue("evaluation"))] == 120
    assert figures[("herald_evaluation_lag_seconds", ())] == 40
    assert figures[("herald_pending_work", queue("schedules"))] == 1
    assert figures[("herald_oldest_pending_seconds", queue("schedules"))] == 2
    assert figures[("herald_deliveries_pending", ())] == 3
    assert evaluated.automation_pending is False


def test_delivery_outcomes_count_the_deliveries_finished_within_the_window(client, settings):
    settings.HERALD_METRICS_WINDOW_SECONDS = 60
    hook = endpoint()
    for status, seconds_ago in (
        ("succeeded", 1), ("succeeded", 30), ("succeeded", 59), ("succeeded", 61),
        ("failed", 10), ("failed", 3600), ("cancelled", 5),
    ):  # fmt: skip
        delivery(hook, status=status, completed_at=NOW - timedelta(seconds=seconds_ago))
    delivery(hook, next_attempt_at=NOW)

    with time_machine.travel(NOW, tick=False):
        figures = scrape(client)

    completed = {
        status: figures[("herald_deliveries_completed", (("status", status),))]
        for status in ("succeeded", "failed", "cancelled")
    }
    assert completed == {"succeeded": 3, "failed": 1, "cancelled": 1}
    assert figures[("herald_deliveries_pending", ())] == 1


def test_failing_and_disabled_endpoints_per_kind(client):
    endpoint()  # healthy
    endpoint(first_failure_at=NOW - timedelta(hours=3))
    endpoint(first_failure_at=NOW - timedelta(hours=1))
    endpoint(Endpoint.Kind.WORKFLOW, first_failure_at=NOW - timedelta(minutes=10))
    endpoint(active=False, disabled_at=NOW - timedelta(days=1), first_failure_at=NOW)
    endpoint(Endpoint.Kind.SCHEDULE, active=False, disabled_at=NOW)

    with time_machine.travel(NOW, tick=False):
        figures = scrape(client)

    def per_kind(name: str) -> dict[str, float]:
        return {kind: figures[(name, (("kind", kind),))] for kind in Endpoint.Kind.values}

    assert per_kind("herald_endpoints_failing") == {
        "subscription": 2, "schedule": 0, "workflow": 1
    }  # fmt: skip
    assert per_kind("herald_endpoint_failing_seconds") == {
        "subscription": 3 * 3600, "schedule": 0, "workflow": 600
    }  # fmt: skip
    assert per_kind("herald_endpoints_disabled") == {
        "subscription": 1, "schedule": 1, "workflow": 0
    }  # fmt: skip


def test_backlog_counts_stop_at_the_cap_but_the_age_stays_exact(client, settings):
    settings.HERALD_METRICS_COUNT_CAP = 2
    hook = endpoint()
    for seconds_ago in (300, 200, 100, 50):
        delivery(hook, next_attempt_at=NOW - timedelta(seconds=seconds_ago))

    with time_machine.travel(NOW, tick=False):
        figures = scrape(client)

    assert figures[("herald_pending_work", queue("deliveries"))] == 2
    assert figures[("herald_oldest_pending_seconds", queue("deliveries"))] == 300
    assert figures[("herald_deliveries_pending", ())] == 2


def test_a_failing_source_is_reported_down_and_the_others_still_answer(client, monkeypatch):
    from project import metrics

    def broken(now: datetime, cap: int) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setitem(metrics._BACKLOGS, "evaluation.runs", ("evaluation", broken))

    figures = scrape(client)

    assert figures[("herald_metrics_source_up", (("source", "evaluation.runs"),))] == 0
    assert figures[("herald_metrics_source_up", (("source", "evaluation.events"),))] == 1
    assert figures[("herald_metrics_source_up", (("source", "deliveries"),))] == 1
    # A queue with a part unknown is left out rather than reported too small.
    assert ("herald_pending_work", queue("evaluation")) not in figures
    assert ("herald_oldest_pending_seconds", queue("evaluation")) not in figures
    assert figures[("herald_pending_work", queue("deliveries"))] == 0
    assert figures[("herald_events_ingested_total", ())] == 0


def test_metrics_are_not_in_the_openapi_document(client):
    document = client.get(f"{API}/schema/", HTTP_ACCEPT="application/json").json()
    assert not [path for path in document["paths"] if "metrics" in path]
