"""Sending: signatures, the retry schedule, Retry-After, final statuses, endpoint health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.sender import (
    RESPONSE_EXCERPT_CHARS,
    RETRY_SCHEDULE,
    deliver_one,
    dispatch_due_deliveries,
    parse_retry_after,
)
from automation.webhooks.services import endpoint_rotate_secret
from tests.factories import EventFactory
from tests.receiver import Reply

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _delivery(endpoint: Endpoint, payload: dict | None = None, **kwargs) -> Delivery:
    with transaction.atomic():
        return delivery_create(endpoint=endpoint, payload=payload or {"n": 1}, **kwargs)


def test_delivery_is_signed_so_standardwebhooks_verifies_it(make_endpoint, receiver):
    endpoint, secret = make_endpoint()
    delivery = _delivery(endpoint, {"hello": "wörld"})

    assert deliver_one(delivery.pk) == "succeeded"

    request = receiver.requests[0]
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    assert Webhook(secret).verify(request.body, request.headers) == {"hello": "wörld"}
    tampered = bytearray(request.body)
    tampered[2] ^= 0x01
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(bytes(tampered), request.headers)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == (
        "succeeded",
        1,
        200,
    )


def test_rotation_signs_with_both_secrets_for_24_hours(make_endpoint, receiver):
    with time_machine.travel(T0, tick=False):
        endpoint, old = make_endpoint()
        new = endpoint_rotate_secret(endpoint=endpoint)
        deliver_one(_delivery(endpoint).pk)
    with time_machine.travel(T0 + timedelta(hours=24, seconds=1), tick=False):
        deliver_one(_delivery(endpoint).pk)

    during, after = receiver.requests
    assert new != old
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    with time_machine.travel(T0, tick=False):
        Webhook(old).verify(during.body, during.headers)
        Webhook(new).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    with time_machine.travel(T0 + timedelta(hours=24, seconds=1), tick=False):
        Webhook(new).verify(after.body, after.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(after.body, after.headers)


def test_failing_delivery_follows_the_retry_schedule_then_fails(make_endpoint, receiver):
    receiver.reply(Reply(status=503))
    event = EventFactory()
    with time_machine.travel(T0, tick=False) as clock:
        endpoint, _ = make_endpoint()
        delivery = _delivery(endpoint, event=event)
        deliver_one(delivery.pk)
        for step, wait in enumerate(RETRY_SCHEDULE):
            delivery.refresh_from_db()
            now = datetime.now(tz=UTC)
            assert delivery.status == "pending"
            assert delivery.retry_step == step + 1
            assert now + wait <= delivery.next_attempt_at <= now + wait * 1.1
            # Not due a second early: nothing is sent.
            clock.move_to(delivery.next_attempt_at - timedelta(seconds=1))
            assert deliver_one(delivery.pk) == "not-due"
            clock.move_to(delivery.next_attempt_at)
            assert dispatch_due_deliveries() == 1
        delivery.refresh_from_db()

    assert len(receiver.requests) == 10
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}
    assert delivery.status == "failed"
    assert delivery.next_attempt_at is None
    assert delivery.attempt_count == 10
    outcomes = list(delivery.attempts.values_list("outcome", flat=True))
    assert outcomes == ["retry"] * 9 + ["failed"]
    assert sum(RETRY_SCHEDULE, timedelta()) == timedelta(hours=61, minutes=35, seconds=5)
    event.refresh_from_db()
    assert event.is_delivered is False


def test_retry_after_header_postpones_the_next_attempt(make_endpoint, receiver):
    receiver.reply(Reply(status=429, headers={"Retry-After": "3600"}))
    with time_machine.travel(T0, tick=False):
        endpoint, _ = make_endpoint()
        delivery = _delivery(endpoint)
        deliver_one(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.next_attempt_at == T0 + timedelta(seconds=3600)


def test_retry_after_as_http_date_is_understood():
    assert parse_retry_after("Mon, 02 Mar 2026 13:00:00 GMT", T0) == timedelta(hours=1)
    assert parse_retry_after("soon", T0) is None


@pytest.mark.parametrize("status", [408, 500, 502])
def test_retryable_statuses_schedule_another_attempt(make_endpoint, receiver, status):
    receiver.reply(Reply(status=status))
    endpoint, _ = make_endpoint()
    delivery = _delivery(endpoint)
    deliver_one(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.retry_step, delivery.last_status_code) == (
        "pending",
        1,
        status,
    )


@pytest.mark.parametrize("status", [301, 302, 400, 401, 404, 422])
def test_redirects_and_other_client_errors_are_final(make_endpoint, receiver, status):
    receiver.reply(Reply(status=status, headers={"Location": "http://127.0.0.1:1/x"}))
    endpoint, _ = make_endpoint()
    delivery = _delivery(endpoint)
    deliver_one(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code, delivery.next_attempt_at) == (
        "failed",
        status,
        None,
    )
    assert len(receiver.requests) == 1  # the redirect was not followed
    endpoint.refresh_from_db()
    assert endpoint.active is True


def test_410_gone_disables_the_endpoint_and_fails_its_other_pending_deliveries(
    make_endpoint, receiver
):
    receiver.reply(Reply(status=410))
    endpoint, _ = make_endpoint()
    first, second = _delivery(endpoint), _delivery(endpoint)

    deliver_one(first.pk)

    endpoint.refresh_from_db()
    assert endpoint.active is False
    assert endpoint.disabled_reason == "The endpoint answered 410 Gone."
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("failed", "failed")
    assert deliver_one(second.pk) == "not-due"
    assert len(receiver.requests) == 1


def test_endpoint_failing_for_five_days_without_success_is_disabled(make_endpoint, receiver):
    receiver.reply(Reply(status=500))
    with time_machine.travel(T0, tick=False) as clock:
        endpoint, _ = make_endpoint()
        deliver_one(_delivery(endpoint).pk)
        endpoint.refresh_from_db()
        assert endpoint.first_failure_at == T0
        clock.move_to(T0 + timedelta(days=4, hours=23))
        deliver_one(_delivery(endpoint).pk)
        endpoint.refresh_from_db()
        assert endpoint.active is True
        clock.move_to(T0 + timedelta(days=5))
        deliver_one(_delivery(endpoint).pk)
    endpoint.refresh_from_db()
    assert endpoint.active is False
    assert endpoint.disabled_reason == (
        "No successful delivery for 5 days (failing since 2026-03-02T12:00:00+00:00)."
    )


def test_a_success_resets_the_five_day_failure_clock(make_endpoint, receiver):
    receiver.reply(Reply(status=500), Reply(status=200))
    with time_machine.travel(T0, tick=False):
        endpoint, _ = make_endpoint()
        deliver_one(_delivery(endpoint).pk)
        deliver_one(_delivery(endpoint).pk)
    endpoint.refresh_from_db()
    assert (endpoint.first_failure_at, endpoint.last_success_at) == (None, T0)


def test_give_up_at_ends_retries_before_the_next_scheduled_attempt(make_endpoint, receiver):
    receiver.reply(Reply(status=500))
    with time_machine.travel(T0, tick=False):
        endpoint, _ = make_endpoint(kind=Endpoint.Kind.SCHEDULE)
        delivery = _delivery(endpoint, give_up_at=T0 + timedelta(seconds=3))
        deliver_one(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("failed", 1)


def test_an_attempt_is_logged_with_status_duration_and_capped_excerpt(make_endpoint, receiver):
    receiver.reply(Reply(status=500, body=b"e" * 10_000))
    endpoint, _ = make_endpoint()
    delivery = _delivery(endpoint)
    deliver_one(delivery.pk)
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.number, attempt.status_code, attempt.error, attempt.outcome) == (
        1,
        500,
        "HTTP 500",
        "retry",
    )
    assert attempt.response_excerpt == "e" * RESPONSE_EXCERPT_CHARS
    assert attempt.duration_ms < 15_000


def test_an_unreachable_endpoint_is_a_retryable_network_error(make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    Endpoint.objects.filter(pk=endpoint.pk).update(url="http://127.0.0.1:1/closed")
    delivery = _delivery(endpoint)
    assert deliver_one(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("pending", None)
    assert "Connection refused" in delivery.last_error
