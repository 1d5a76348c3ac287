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

from automation.due import due_events_process
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow
from automation.workflows.selectors import active_workflows_forget
from events_app.models import Event
from tests.automation.webhooks.test_webhooks_api import ingest
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
    before = ingest(api, purchase, "r1", claim=False)
    workflow = Workflow.objects.create(name="w", conditions={}, actions=[], active=True)
    workflow.trigger_event_types.set([purchase])
    during = ingest(api, purchase, "r2", claim=False)
    Workflow.objects.filter(pk=workflow.pk).update(active=False, updated_at=timezone.now())
    after = ingest(api, purchase, "r3", claim=False)

    flagged = dict(Event.objects.values_list("id", "automation_pending"))
    assert flagged == {before: False, during: True, after: False}


def post_counting_statements(
    api: Any, event_type: Any, customer: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], CaptureQueriesContext, Any]:
    """One single POST after a warm-up one (which authenticates, then cached, and records
    last use): every statement psycopg sent, the ORM's queries, and the response."""
    ingest(api, event_type, "warm")
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    with CaptureQueriesContext(connection) as orm:
        response = api.post(
            f"{API}/events",
            {"event": {"event_type_id": event_type.id, "customer_id": customer.id}},
            format="json",
        )
    return sent, orm, response


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the prepared-statement path")
def test_a_single_post_is_one_statement_and_no_orm_query(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase = EventTypeFactory(key="purchase")
    customer = CustomerFactory()
    sent, orm, response = post_counting_statements(api, purchase, customer, monkeypatch)
    assert response.status_code == 201
    assert [q["sql"] for q in orm.captured_queries] == []
    # One INSERT that checks the type and the automation facts kept from the warm-up
    # (events_app.ingest_single) and resolves the customer itself.
    assert len(sent) == 1
    assert "events_app_eventtype" in sent[0]
    assert "automation_workflow" in sent[0]
    assert "automation_endpoint" in sent[0]
    assert "customers_customer" in sent[0]
    assert "INSERT INTO" in sent[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the prepared-statement path")
def test_a_single_post_with_subscriptions_writes_only_the_flagged_event_and_the_claim_fans_out(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchase = EventTypeFactory(key="purchase")
    customer = CustomerFactory()
    subscription()
    subscription()
    sent, orm, response = post_counting_statements(api, purchase, customer, monkeypatch)
    assert response.status_code == 201
    event_id = response.json()["data"]["event_id"]
    # One statement, as without subscriptions: the INSERT of the event, flagged
    # (automation_pending, is_delivered = false written with the row), and its records,
    # checking the references kept from the warm-up. No delivery row, no transaction,
    # no SELECT, no UPDATE.
    statements = [q for q in sent if "SAVEPOINT" not in q]
    assert len(statements) == 1
    assert "events_app_eventtype" in statements[0]
    assert "automation_delivery" not in statements[0]
    assert [q["sql"] for q in orm.captured_queries if "SAVEPOINT" not in q["sql"]] == []
    stored = Event.objects.get(pk=event_id)
    assert (stored.is_delivered, stored.automation_pending) == (False, True)
    assert Delivery.objects.filter(event_id=event_id).count() == 0

    outcome = due_events_process()  # what the worker the commit wakes does

    assert outcome.claimed == 1
    assert Delivery.objects.filter(event_id=event_id).count() == 2
    assert Event.objects.get(pk=event_id).automation_pending is False


def test_a_delivery_payload_is_the_event_exactly_as_get_shows_it(api: Any) -> None:
    purchase = EventTypeFactory(key="purchase")
    subscription()
    customer = CustomerFactory()
    response = api.post(
        f"{API}/events",
        {
            "event": {
                "event_type": "purchase",
                "customer_id": customer.id,
                "external_id": "order-1",
                "secondary_external_id": "cart-9",
                "data": {"b": 2, "a": {"nested": [1, "x", None]}},
                "occurred_at": "2026-11-20T10:11:12.345678+02:00",
            }
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    event_id = response.json()["data"]["event_id"]
    due_events_process()  # what the worker the commit wakes does

    shown = api.get(f"{API}/events/{event_id}").json()["data"]
    (payload,) = Delivery.objects.filter(event_id=event_id).values_list("payload", flat=True)
    assert payload == shown
    assert payload["is_delivered"] is False
    assert payload["event_type_id"] == purchase.id
