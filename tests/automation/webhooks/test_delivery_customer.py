"""A delivery names the customer it is about: its event's, or its run's. Listed by it
over the API, and filled in by the migration for the deliveries stored before."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from automation.webhooks.models import Delivery
from project.ids import new_public_id
from tests.automation.webhooks.test_webhooks_api import create_webhook, ingest
from tests.conftest import API
from tests.factories import EventTypeFactory


@pytest.mark.django_db
def test_deliveries_show_and_are_listed_by_the_customer_of_their_event(
    api, receiver, allow_loopback
):
    purchase = EventTypeFactory(key="purchase")
    hook = create_webhook(api, receiver).json()["data"]
    first, second = ingest(api, purchase, "r1"), ingest(api, purchase, "r2")
    customer_of = {
        e: api.get(f"{API}/events/{e}").json()["data"]["customer_id"] for e in (first, second)
    }
    ping = api.post(f"{API}/webhooks/{hook['webhook_id']}/test").json()["data"]

    listed = api.get(f"{API}/deliveries", {"customer_id": customer_of[first]}).json()["data"]

    assert [(d["event_id"], d["customer_id"]) for d in listed["deliveries"]] == [
        (first, customer_of[first])
    ]
    assert listed["total_items"] == 1
    # A ping is about no one.
    assert ping["customer_id"] is None
    everyone = api.get(f"{API}/deliveries", {"sort_field": "created_at"}).json()["data"]
    assert {d["event_id"]: d["customer_id"] for d in everyone["deliveries"]} == {
        first: customer_of[first],
        second: customer_of[second],
        None: None,
    }
    assert api.get(f"{API}/deliveries", {"customer_id": "nobody"}).json()["data"] == {
        "deliveries": [],
        "total_items": 0,
    }


BEFORE = [("automation", "0026_policy_counters_for_existing_usage")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_the_customer_of_every_stored_delivery_about_someone():
    # Stored before deliveries named their customer: one of an event, one a segment
    # run's webhook action made (only the run's outcomes name it), a ping.
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    apps = _migrate(BEFORE)
    try:
        customer = apps.get_model("customers", "Customer").objects.create(
            id=new_public_id(), external_id="alice"
        )
        event_type = apps.get_model("events_app", "EventType").objects.create(
            id=new_public_id(), key="purchase", name="Purchase"
        )
        event = apps.get_model("events_app", "Event").objects.create(
            id=new_public_id(),
            event_type=event_type,
            customer=customer,
            data={},
            occurred_at=timezone.now(),
        )
        endpoint = apps.get_model("automation", "Endpoint").objects.create(
            id=new_public_id(), url="https://93.184.215.14/hook", secret="whsec_x"
        )
        old_delivery = apps.get_model("automation", "Delivery")

        def delivery(**fields: Any) -> str:
            pk = new_public_id()
            old_delivery.objects.create(
                id=pk, endpoint=endpoint, message_id=f"msg_{pk}", payload={}, **fields
            )
            return pk

        of_event, of_run, ping = delivery(event=event), delivery(), delivery()
        workflow = apps.get_model("automation", "Workflow").objects.create(
            id=new_public_id(), name="on entry"
        )
        apps.get_model("automation", "WorkflowRun").objects.create(
            id=new_public_id(),
            workflow=workflow,
            customer=customer,
            created_at=timezone.now(),
            outcomes=[
                {"index": 0, "type": "add_tags", "detail": {}},
                {"index": 1, "type": "webhook", "detail": {"delivery_id": of_run}},
            ],
        )
    finally:
        _migrate(latest)

    customers = dict(Delivery.objects.values_list("pk", "customer_id"))
    assert customers == {of_event: customer.pk, of_run: customer.pk, ping: None}
