"""Ingestion reads webhook subscriptions and the workflow stamp fresh, in one statement.

"Another process" is simulated by writing rows directly (no service call, so nothing
in this process is told): ingestion must still see the change on the very next event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.models import Delivery, Endpoint, Workflow
from automation.workflow_selectors import active_workflows_forget
from events_app.models import Event
from tests.automation.delivery.test_webhooks_api import ingest
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_workflow_cache() -> Iterator[None]:
    active_workflows_forget()
    yield
    active_workflows_forget()


def subscription(**fields: Any) -> Endpoint:
    return Endpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_x", **fields)


def test_a_webhook_created_elsewhere_between_two_ingests_gets_the_second_event(api: Any) -> None:
    purchase = EventTypeFactory(key="purchase")
    first = ingest(api, purchase, "r1")
    endpoint = subscription()
    second = ingest(api, purchase, "r2")

    assert list(Delivery.objects.values_list("event_id", "endpoint_id")) == [(second, endpoint.pk)]
    assert Event.objects.get(pk=first).is_delivered is True
    assert Event.objects.get(pk=second).is_delivered is False


def test_a_webhook_deactivated_elsewhere_gets_no_delivery_of_the_next_event(api: Any) -> None:
    purchase = EventTypeFactory(key="purchase")
    endpoint = subscription()
    first = ingest(api, purchase, "r1")
    Endpoint.objects.filter(pk=endpoint.pk).update(active=False)
    second = ingest(api, purchase, "r2")

    assert list(Delivery.objects.values_list("event_id", flat=True)) == [first]
    assert Event.objects.get(pk=second).is_delivered is True


def test_a_webhook_of_other_event_types_gets_no_delivery(api: Any) -> None:
    purchase = EventTypeFactory(key="purchase")
    login = EventTypeFactory(key="login")
    endpoint = subscription()
    endpoint.event_types.set([login])
    event_id = ingest(api, purchase, "r1")

    assert Delivery.objects.count() == 0
    assert Event.objects.get(pk=event_id).is_delivered is True


def test_a_workflow_created_and_deactivated_elsewhere_flags_exactly_the_events_between(
    api: Any,
) -> None:
    purchase = EventTypeFactory(key="purchase")
    before = ingest(api, purchase, "r1")
    workflow = Workflow.objects.create(name="w", conditions={}, actions=[], active=True)
    workflow.trigger_event_types.set([purchase])
    during = ingest(api, purchase, "r2")
    Workflow.objects.filter(pk=workflow.pk).update(active=False, updated_at=timezone.now())
    after = ingest(api, purchase, "r3")

    flagged = dict(Event.objects.values_list("id", "automation_pending"))
    assert flagged == {before: False, during: True, after: False}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the prepared-statement path")
def test_a_single_post_is_two_statements_and_no_orm_query(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase = EventTypeFactory(key="purchase")
    customer = CustomerFactory()
    ingest(api, purchase, "warm")  # authenticates (then cached) and records last use
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    with CaptureQueriesContext(connection) as orm:
        response = api.post(
            f"{API}/events",
            {"event": {"event_type_id": purchase.id, "customer_id": customer.id}},
            format="json",
        )
    assert response.status_code == 201
    assert [q["sql"] for q in orm.captured_queries] == []
    # The reference read (type, customer and the automation facts), then the INSERT.
    assert len(sent) == 2
    assert "events_app_eventtype" in sent[0]
    assert "automation_workflow" in sent[0]
    assert "automation_endpoint" in sent[0]
    assert sent[1].lstrip().startswith("WITH input AS")
