"""Re-entry under concurrency: two workers evaluating two events of one customer at
the same moment still fire a once_per_customer workflow once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from automation.due import due_events_process
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.models import Event, EventType

pytestmark = pytest.mark.django_db(transaction=True)


def evaluate_concurrently(event_ids: list[str]) -> None:
    barrier = threading.Barrier(len(event_ids))
    errors: list[BaseException] = []

    def work(event_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            due_events_process(event_ids=[event_id])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(e,)) for e in event_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


@pytest.mark.parametrize("reentry", ["once_per_customer", "once_per_customer_per:P1D"])
def test_concurrent_workers_fire_once_per_customer_exactly_once(reentry: str) -> None:
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    workflow_create(
        data=WorkflowInput(name="once", trigger_event_types=["purchase"], reentry=reentry)
    )
    customers = [Customer.objects.create(external_id=f"c{i}") for i in range(5)]
    for customer in customers:
        # Four events per customer, flagged as ingestion would, evaluated at once.
        ids = [
            Event.objects.create(
                event_type=purchase,
                customer=customer,
                occurred_at=customer.created_at,
                automation_pending=True,
            ).pk
            for _ in range(4)
        ]
        evaluate_concurrently(ids)
    assert sorted(WorkflowRun.objects.values_list("customer__external_id", flat=True)) == [
        f"c{i}" for i in range(5)
    ]
    assert Event.objects.filter(automation_pending=True).count() == 0
    assert Workflow.objects.count() == 1
