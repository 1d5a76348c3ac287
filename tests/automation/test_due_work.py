"""Due work of ingested events: flagged by the insert, claimed set-based exactly once.

The claimer (automation.due) evaluates the workflows and fans out the webhook
deliveries of the events it claims, in one transaction; these tests drive it directly,
from several threads at once, and through the periodic job that covers a lost wake-up.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from django.db import connection, transaction

from automation.due import due_events_drain, due_events_process
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one
from automation.webhooks.services import endpoint_create
from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.ingestion import events_ingest_batch
from events_app.models import Event
from events_app.schemas import EventCreateIn
from project import background
from tests.conftest import API
from tests.factories import EventTypeFactory
from tests.receiver import Receiver, Reply, local_receiver


def subscription() -> Endpoint:
    """An active subscription to every event type (never sent to in these tests)."""
    return Endpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_x")


def ingest_batch(n: int, prefix: str = "e") -> list[str]:
    """Store `n` purchase events (one customer each) through ingestion; their ids."""
    items = [
        msgspec.convert(
            {"event": {"event_type": "purchase", "customer_external_id": f"{prefix}{i}"}},
            EventCreateIn,
        )
        for i in range(n)
    ]
    return [e.id for e in events_ingest_batch(items=items).stored]


@pytest.fixture
def lost_wake_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wake-up is lost: only explicit claims (and the periodic job) do the work."""
    monkeypatch.setattr(background, "wake", lambda task_name: None)


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with local_receiver() as r:
        yield r


@pytest.fixture
def automation_on(db: None) -> None:
    EventTypeFactory(key="purchase")
    workflow_create(
        data=WorkflowInput(
            name="every purchase", trigger_event_types=["purchase"], conditions={}, actions=[]
        )
    )
    active_workflows_forget()


@pytest.mark.django_db
def test_the_insert_flags_the_events_and_the_claim_creates_runs_and_deliveries_once(
    automation_on: None,
) -> None:
    first, second = subscription(), subscription()
    event_ids = ingest_batch(3)
    assert Delivery.objects.count() == 0
    assert set(Event.objects.values_list("automation_pending", "is_delivered")) == {(True, False)}

    outcome = due_events_process()
    again = due_events_process()

    assert (outcome.claimed, again.claimed) == (3, 0)
    assert sorted(WorkflowRun.objects.values_list("event_id", flat=True)) == sorted(event_ids)
    pairs = Counter(Delivery.objects.values_list("event_id", "endpoint_id"))
    assert pairs == Counter({(e, ep.pk): 1 for e in event_ids for ep in (first, second)})
    assert not Event.objects.filter(automation_pending=True).exists()
    assert set(Event.objects.values_list("is_delivered", flat=True)) == {False}


@pytest.mark.django_db
def test_an_event_marked_delivered_before_its_claim_gets_no_delivery(
    automation_on: None, api: Any
) -> None:
    subscription()
    (event_id,) = ingest_batch(1)
    patched = api.patch(f"{API}/events/{event_id}", {"is_delivered": True}, format="json")
    assert patched.status_code == 200

    assert due_events_process().claimed == 1
    assert Delivery.objects.count() == 0
    assert Event.objects.get(pk=event_id).is_delivered is True
    assert WorkflowRun.objects.filter(event_id=event_id).count() == 1


@pytest.mark.django_db
def test_a_subscription_deactivated_before_the_claim_leaves_the_event_delivered(
    automation_on: None,
) -> None:
    endpoint = subscription()
    (event_id,) = ingest_batch(1)
    Endpoint.objects.filter(pk=endpoint.pk).update(active=False)

    due_events_process()

    assert Delivery.objects.count() == 0
    assert Event.objects.get(pk=event_id).is_delivered is True


@pytest.mark.django_db
def test_an_event_no_subscription_took_at_ingest_gets_none_from_one_created_later(
    automation_on: None,
) -> None:
    (event_id,) = ingest_batch(1)  # flagged for its workflow only
    subscription()

    due_events_process()

    assert WorkflowRun.objects.filter(event_id=event_id).count() == 1
    assert Delivery.objects.count() == 0
    assert Event.objects.get(pk=event_id).is_delivered is True


@pytest.mark.django_db
def test_a_claim_rolled_back_leaves_the_events_pending_and_creates_nothing(
    automation_on: None,
) -> None:
    subscription()
    ingest_batch(2)

    def claim_then_die() -> None:
        with transaction.atomic():
            assert due_events_process().claimed == 2
            raise RuntimeError("the worker died before commit")

    with pytest.raises(RuntimeError):
        claim_then_die()

    assert Event.objects.filter(automation_pending=True).count() == 2
    assert (Delivery.objects.count(), WorkflowRun.objects.count()) == (0, 0)
    assert due_events_process().claimed == 2
    assert (Delivery.objects.count(), WorkflowRun.objects.count()) == (2, 2)


@pytest.mark.django_db
def test_the_webhook_id_made_by_the_claim_is_the_same_on_every_attempt(
    automation_on: None, receiver: Receiver
) -> None:
    receiver.reply(Reply(status=503), Reply(status=200))
    endpoint_create(url=receiver.url())
    (event_id,) = ingest_batch(1)
    due_events_process()
    due_events_process()  # a repeated claim makes no second message
    delivery = Delivery.objects.get(event_id=event_id)

    assert deliver_one(delivery.pk) == "failed"
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
    assert deliver_one(delivery.pk) == "succeeded"

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert Delivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_take_every_event_exactly_once(
    automation_on: None, lost_wake_ups: None, settings: Any
) -> None:
    settings.HERALD_AUTOMATION_BATCH_SIZE = 7  # many small claims racing for the same rows
    endpoints = [subscription(), subscription()]
    event_ids = ingest_batch(120)
    assert Event.objects.filter(automation_pending=True).count() == 120

    claimed: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer() -> None:
        try:
            start.wait(timeout=30)
            claimed.append(due_events_drain())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sum(claimed) == 120
    assert Counter(WorkflowRun.objects.values_list("event_id", flat=True)) == Counter(
        dict.fromkeys(event_ids, 1)
    )
    pairs = Counter(Delivery.objects.values_list("event_id", "endpoint_id"))
    assert pairs == Counter({(e, ep.pk): 1 for e in event_ids for ep in endpoints})
    assert len(set(Delivery.objects.values_list("message_id", flat=True))) == 240
    assert not Event.objects.filter(automation_pending=True).exists()


@pytest.mark.django_db
def test_the_periodic_job_claims_what_a_lost_wake_up_left(
    automation_on: None, lost_wake_ups: None
) -> None:
    subscription()
    event_ids = ingest_batch(3)
    assert Event.objects.filter(automation_pending=True).count() == 3

    assert background.run_job("due.claim") == 3

    assert sorted(Delivery.objects.values_list("event_id", flat=True)) == sorted(event_ids)
    assert background.run_job("due.claim") == 0
