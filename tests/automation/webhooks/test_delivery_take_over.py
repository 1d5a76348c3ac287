"""A send task whose delivery another worker's follow-on sent already takes the
endpoint's next due delivery instead of ending idle (automation.webhooks.sender)."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one

pytestmark = pytest.mark.django_db


def _delivery(endpoint: Endpoint, n: int) -> Delivery:
    with transaction.atomic():
        return delivery_create(endpoint=endpoint, payload={"n": n})


def test_the_task_of_a_delivery_sent_by_a_follow_on_sends_the_endpoints_next_ones(
    make_endpoint, receiver
):
    endpoint, _ = make_endpoint()
    first, second, third = (_delivery(endpoint, n) for n in range(3))
    Delivery.objects.filter(pk=first.pk).update(status="succeeded", completed_at=timezone.now())

    assert deliver_one(first.pk) == "succeeded"  # the outcome of the one it took

    assert [r.headers["webhook-id"] for r in receiver.requests] == [
        second.message_id,
        third.message_id,
    ]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_the_task_of_a_cancelled_delivery_sends_nothing_else(make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    first, second = _delivery(endpoint, 0), _delivery(endpoint, 1)
    Delivery.objects.filter(pk=first.pk).update(status="cancelled", next_attempt_at=None)

    assert deliver_one(first.pk) == "not-due"

    assert receiver.requests == []
    assert Delivery.objects.get(pk=second.pk).status == "pending"


def test_the_task_of_a_sent_delivery_with_nothing_else_due_ends(make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    only = _delivery(endpoint, 0)
    assert deliver_one(only.pk) == "succeeded"

    assert deliver_one(only.pk) == "not-due"

    assert len(receiver.requests) == 1
