"""Running requests: one claim per request across workers, the sweeper, failures, and a
delete whose events span several month partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction

from automation.privacy import REDACTED_PAYLOAD
from automation.segments.models import Segment, SegmentMembership
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from customers.models import Customer
from customers.privacy import services
from customers.privacy.models import PrivacyRequest
from customers.privacy.services import (
    CLAIM_LEASE,
    SWEEP_GRACE,
    privacy_request_create,
    privacy_request_run,
    privacy_requests_sweep,
)
from events_app.models import Event, PropertyRecord
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory, PropertyRecordFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def filed(type: str = "delete", value: str = "alice") -> PrivacyRequest:
    """A request filed, its on-commit hand-over not run (a `db` test never commits)."""
    return privacy_request_create(type=type, identifier_kind="external_id", value=value)


def test_a_request_runs_once_whoever_calls_for_it():
    CustomerFactory(external_id="alice")
    request = filed()

    assert privacy_request_run(request_id=request.pk) is True
    assert privacy_request_run(request_id=request.pk) is False

    request.refresh_from_db()
    assert (request.status, request.attempts, request.identifier_value) == ("done", 1, "")
    assert request.counts["customers"] == 1


def test_a_running_request_is_left_alone_until_its_claim_lapses_then_taken_over():
    CustomerFactory(external_id="alice")
    with time_machine.travel(T0, tick=False):
        request = filed()
        PrivacyRequest.objects.filter(pk=request.pk).update(
            status="running", attempts=1, locked_until=T0 + CLAIM_LEASE
        )
        assert privacy_request_run(request_id=request.pk, now=T0) is False
        assert privacy_requests_sweep(T0) == 0

    later = T0 + CLAIM_LEASE + timedelta(seconds=1)
    assert privacy_requests_sweep(later) == 1  # handed on: inline in tests
    request.refresh_from_db()
    assert (request.status, request.attempts) == ("done", 2)
    assert Customer.objects.count() == 0


def test_the_sweeper_hands_on_a_pending_request_whose_message_was_lost():
    with time_machine.travel(T0, tick=False):
        request = filed()

    assert privacy_requests_sweep(T0 + SWEEP_GRACE - timedelta(seconds=1)) == 0
    assert PrivacyRequest.objects.get().status == "pending"
    assert privacy_requests_sweep(T0 + SWEEP_GRACE + timedelta(seconds=1)) == 1
    request.refresh_from_db()
    assert request.status == "done"
    assert privacy_requests_sweep(T0 + timedelta(days=1)) == 0


def test_a_failing_request_is_failed_with_nothing_changed_and_no_clear_identifier(
    monkeypatch: pytest.MonkeyPatch,
):
    customer = CustomerFactory(external_id="alice")
    EventFactory(customer=customer)
    request = filed()

    def boom(*, customer: Customer, erase: bool = False) -> dict[str, int]:
        Customer.objects.filter(pk=customer.pk).delete()
        raise RuntimeError("alice could not be deleted")

    monkeypatch.setattr(services, "customer_delete", boom)
    assert privacy_request_run(request_id=request.pk) is True

    request.refresh_from_db()
    assert (request.status, request.identifier_value) == ("failed", "")
    assert request.error == "RuntimeError (see the server log)"
    assert request.finished_at is not None
    assert (Customer.objects.count(), Event.objects.count()) == (1, 1)


def test_delete_reaches_events_in_every_month_partition():
    alice, bob = CustomerFactory(external_id="alice"), CustomerFactory(external_id="bob")
    login = EventTypeFactory(key="login")
    months = [datetime(2026, m, 15, tzinfo=UTC) for m in (1, 2, 3, 4)]
    for at in months:
        for customer in (alice, bob):
            event = EventFactory(customer=customer, event_type=login, created_at=at)
            PropertyRecordFactory(event=event)
    request = filed()

    privacy_request_run(request_id=request.pk)

    request.refresh_from_db()
    assert (request.counts["events"], request.counts["property_records"]) == (4, 4)
    assert set(Event.objects.values_list("customer_id", flat=True)) == {bob.pk}
    assert sorted(Event.objects.values_list("created_at", flat=True)) == months
    assert PropertyRecord.objects.count() == 4


def test_delete_ends_waiting_runs_and_stays_and_redacts_a_segment_runs_delivery():
    # A run a segment entry started (no event) waits; its earlier webhook delivery is
    # pending: the run and the stay go, the delivery stays cancelled and redacted.
    alice, bob = CustomerFactory(external_id="alice"), CustomerFactory(external_id="bob")
    segment = Segment.objects.create(key="vip", name="VIP", status="ready")
    endpoint = Endpoint.objects.create(url="https://93.184.215.14/hook", secret="whsec_x")
    workflow = Workflow.objects.create(name="welcome")
    stays = [
        SegmentMembership.objects.create(segment=segment, customer=c, entered_at=T0)
        for c in (alice, bob)
    ]
    with transaction.atomic():
        # As the run's webhook action makes it: about the run's customer.
        delivery = delivery_create(
            endpoint=endpoint, payload={"customer": {"id": alice.pk}}, customer_id=alice.pk
        )
    run = WorkflowRun.objects.create(
        workflow=workflow,
        customer=alice,
        segment_membership=stays[0],
        segment_on="entered",
        status="waiting",
        resume_at=T0 + timedelta(days=1),
        created_at=T0,
        outcomes=[{"index": 0, "type": "webhook", "detail": {"delivery_id": delivery.pk}}],
    )
    request = filed()

    privacy_request_run(request_id=request.pk)

    request.refresh_from_db()
    assert {k: v for k, v in request.counts.items() if v} == {
        "customers": 1,
        "workflow_runs": 1,
        "segment_memberships": 1,
        "deliveries_redacted": 1,
        "deliveries_cancelled": 1,
    }
    assert not WorkflowRun.objects.filter(pk=run.pk).exists()
    assert list(SegmentMembership.objects.values_list("customer_id", flat=True)) == [bob.pk]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.payload, delivery.next_attempt_at) == (
        "cancelled",
        REDACTED_PAYLOAD,
        None,
    )
