"""A cap is exact under concurrency: 50 runs of one customer racing on real threads
(each its own database connection, as workers are) let exactly `count` actions run."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from automation.webhooks.models import Delivery
from automation.workflows.models import WorkflowRun
from automation.workflows.policies.models import PolicyUsage
from automation.workflows.policies.services import delivery_policy_create
from automation.workflows.runner import workflow_run_advance
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.models import EventType
from tests.receiver import Receiver

# One race at a time: each holds RACERS connections of the server's shared limit.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("races")]

RACERS = 50


def advance_concurrently(run_ids: list[str]) -> None:
    barrier = threading.Barrier(len(run_ids))
    errors: list[BaseException] = []

    def work(run_id: str) -> None:
        try:
            barrier.wait(timeout=30)
            workflow_run_advance(run_id=run_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_fifty_racing_runs_of_one_customer_send_exactly_the_capped_three(
    receiver: Receiver,
) -> None:
    EventType.objects.create(key="purchase", name="Purchase")
    policy = delivery_policy_create(
        data={"key": "default", "caps": [{"count": 3, "window": "P7D", "actions": ["webhook"]}]}
    )
    workflow = workflow_create(
        data=WorkflowInput(
            name="racy",
            trigger_event_types=["purchase"],
            actions=[{"type": "webhook", "url": receiver.url()}],
            delivery_policy=policy.key,
        )
    )
    workflow.refresh_from_db()
    alice = Customer.objects.create(external_id="alice")
    now = timezone.now()
    runs = WorkflowRun.objects.bulk_create(
        WorkflowRun(
            workflow=workflow,
            customer=alice,
            actions=workflow.actions,
            created_at=now,
            resume_at=now,
        )
        for _ in range(RACERS)
    )

    advance_concurrently([run.pk for run in runs])

    outcomes = Counter(
        run.outcomes[0]["status"] for run in WorkflowRun.objects.filter(workflow=workflow)
    )
    assert outcomes == {"succeeded": 3, "capped": RACERS - 3}
    assert Delivery.objects.count() == 3
    assert PolicyUsage.objects.filter(customer=alice).count() == 3
    reasons = {
        run.outcomes[0].get("reason")
        for run in WorkflowRun.objects.filter(workflow=workflow)
        if run.outcomes[0]["status"] == "capped"
    }
    assert reasons == {"capped: 3 of 3 webhook actions in the last 7 days"}
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"succeeded"}
