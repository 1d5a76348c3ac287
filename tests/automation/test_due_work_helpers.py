"""A backlog of due events is drained by several claimers at once: a claim that comes
back full asks for a helper (automation.due, step 5), at most HERALD_AUTOMATION_CLAIMERS
runs in all, each holding one slot key in Redis; every event still evaluated and
fanned out exactly once."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
import redis

from automation.due import CLAIM_TASK, due_events_drain
from automation.tasks import claim_due_task
from automation.webhooks.models import Delivery
from automation.workflows.models import WorkflowRun
from events_app.models import Event
from project.celery import EVALUATION
from tests.automation.test_due_work import automation_on, ingest_batch, subscription
from tests.celery_worker import Broker, celery_broker, celery_worker, wait_until

__all__ = ["automation_on"]  # the fixture, shared with test_due_work

RECEIVED = rf"Task {re.escape(CLAIM_TASK)}\[[^]]+\] received"
SUCCEEDED = rf"Task {re.escape(CLAIM_TASK)}\[[^]]+\] succeeded in [^:]+: (\d+)"


def claim_messages(broker: Broker) -> list[str]:
    """The argsrepr of every claim task waiting on the evaluation queue, taken off it."""
    client = redis.Redis.from_url(broker.url)
    found = []
    try:
        for key in client.scan_iter(match=f"{broker.key_prefix}{EVALUATION}*"):
            if client.type(key) != b"list":
                continue
            while (raw := client.lpop(key)) is not None:
                headers = json.loads(raw)["headers"]
                if headers["task"] == CLAIM_TASK:
                    found.append(headers["argsrepr"])
    finally:
        client.close()
    return sorted(found)


@pytest.mark.django_db
def test_full_claims_ask_for_helpers_up_to_the_limit_and_a_helper_gives_its_slot_back(
    automation_on: None, settings: Any
) -> None:
    settings.HERALD_AUTOMATION_BATCH_SIZE = 5
    settings.HERALD_AUTOMATION_CLAIMERS = 3
    subscription()
    with celery_broker() as broker:
        ingest_batch(40)  # in the test's transaction: its wake-up is never sent

        assert due_events_drain() == 40

        # Eight full claims, but two slots beside the claimer's own run: two helpers.
        assert claim_messages(broker) == ["(1,)", "(2,)"]
        # A helper that finds the backlog gone claims nothing and frees its slot ...
        assert claim_due_task.run(1) == 0
        ingest_batch(10, prefix="f")
        assert due_events_drain() == 10
        # ... which the next backlog's full claims take again; slot 2 is still held.
        assert claim_messages(broker) == ["(1,)"]

    assert WorkflowRun.objects.count() == 50
    assert Delivery.objects.count() == 50


@pytest.mark.django_db
def test_a_trickle_is_drained_by_one_claimer(automation_on: None, settings: Any) -> None:
    settings.HERALD_AUTOMATION_BATCH_SIZE = 5
    settings.HERALD_AUTOMATION_CLAIMERS = 3
    with celery_broker() as broker:
        ingest_batch(4)

        assert due_events_drain() == 4

        assert claim_messages(broker) == []


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_claimed_by_several_runs_of_a_real_worker_each_event_once(
    automation_on: None,
) -> None:
    endpoints = [subscription(), subscription()]
    with celery_broker() as broker:
        env = {"HERALD_AUTOMATION_BATCH_SIZE": "5", "HERALD_AUTOMATION_CLAIMERS": "3"}
        with celery_worker(broker, env=env, concurrency=4) as worker:
            event_ids = ingest_batch(300)  # committed: one wake-up
            wait_until(
                lambda: (
                    WorkflowRun.objects.count() == 300
                    and not Event.objects.filter(automation_pending=True).exists()
                ),
                timeout=120,
                what="the due work of 300 events",
            )
            # Every claimer run that started has ended (the last ones find nothing).
            log = wait_until(
                lambda: (
                    text
                    if len(re.findall(RECEIVED, text := worker.log()))
                    == len(re.findall(SUCCEEDED, text))
                    else ""
                ),
                timeout=60,
                what="the claimer runs to end",
            )

    # Claimer runs that found work (the woken one and its helpers): more than one.
    claimed = [int(n) for n in re.findall(SUCCEEDED, log)]
    assert len([n for n in claimed if n > 0]) >= 2, log
    assert sum(claimed) == 300
    assert Counter(WorkflowRun.objects.values_list("event_id", flat=True)) == Counter(
        dict.fromkeys(event_ids, 1)
    )
    pairs = Counter(Delivery.objects.values_list("event_id", "endpoint_id"))
    assert pairs == Counter({(e, ep.pk): 1 for e in event_ids for ep in endpoints})
