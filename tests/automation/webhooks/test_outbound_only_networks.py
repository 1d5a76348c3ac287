"""HERALD_OUTBOUND_ONLY_NETWORKS: outbound calls go to the listed networks only, on top of
the SSRF guard, at save time and at every attempt."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from automation.webhooks import guard
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import DeliveryAttempt, Endpoint
from automation.webhooks.sender import GUARD_REFUSED, deliver_one
from tests.conftest import API
from tests.receiver import Receiver

PUBLIC = "93.184.215.14"
LOOPBACK = ["127.0.0.0/8", "::1/128"]


def resolving_to(*addresses: str) -> guard.Resolver:
    return lambda host, port: list(addresses)


@pytest.fixture
def loopback_only(settings: Any) -> None:
    """What a fuzzed or load-tested instance runs with: loopback and nothing else."""
    settings.HERALD_OUTBOUND_ONLY_NETWORKS = LOOPBACK
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = LOOPBACK


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://127.9.9.9/", "http://[::1]:9000/"]
)
def test_loopback_passes_when_both_settings_list_it(loopback_only: None, url: str) -> None:
    assert guard.check_url(url).port in {80, 8080, 9000}


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC}/",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",  # embeds loopback, but is not a listed address
        "http://[64:ff9b::7f00:1]/",
    ],
)
def test_everything_outside_loopback_is_refused(loopback_only: None, url: str) -> None:
    with pytest.raises(guard.OutboundRefused):
        guard.check_url(url)


def test_a_public_host_name_is_refused_with_the_reason(loopback_only: None) -> None:
    with pytest.raises(guard.OutboundRefused) as refused:
        guard.check_url("https://example.com/hook", resolver=resolving_to(PUBLIC))
    assert str(refused.value) == (
        f"example.com resolves to a forbidden address: {PUBLIC} is outside the networks "
        "outbound calls are restricted to (HERALD_OUTBOUND_ONLY_NETWORKS)."
    )


def test_a_host_with_one_address_outside_the_networks_is_refused(loopback_only: None) -> None:
    with pytest.raises(guard.OutboundRefused, match=PUBLIC):
        guard.check_url("http://mixed.example/", resolver=resolving_to("127.0.0.1", PUBLIC))


def test_a_listed_private_network_stays_refused_unless_the_guard_lifts_it(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ONLY_NETWORKS = ["10.0.0.0/8"]
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(guard.OutboundRefused, match="non-public IPv4 range"):
        guard.check_url("http://10.1.2.3/")

    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    assert guard.check_url("http://10.1.2.3/").ip == "10.1.2.3"
    with pytest.raises(guard.OutboundRefused, match="non-public IPv4 range"):
        guard.check_url("http://10.2.0.1/")


def test_a_listed_public_network_restricts_public_calls_to_it(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ONLY_NETWORKS = ["93.184.0.0/16"]
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    assert guard.check_url("https://example.com/", resolver=resolving_to(PUBLIC)).ip == PUBLIC
    with pytest.raises(guard.OutboundRefused, match="HERALD_OUTBOUND_ONLY_NETWORKS"):
        guard.check_url("https://example.org/", resolver=resolving_to("8.8.8.8"))


def test_unset_means_no_restriction_beyond_the_guard(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ONLY_NETWORKS = []
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    assert guard.check_url("https://example.org/", resolver=resolving_to("8.8.8.8")).ip == "8.8.8.8"


@pytest.mark.django_db
def test_a_public_webhook_url_is_refused_at_save_and_nothing_is_stored(
    api: Any, loopback_only: None
) -> None:
    response = api.post(
        f"{API}/webhooks", {"webhook": {"url": f"https://{PUBLIC}/hook"}}, format="json"
    )

    assert response.status_code == 400
    assert "HERALD_OUTBOUND_ONLY_NETWORKS" in response.json()["message"]
    assert Endpoint.objects.count() == 0


@pytest.mark.django_db
def test_an_attempt_outside_the_networks_is_recorded_as_a_guard_refusal(
    make_endpoint: Any, receiver: Receiver, settings: Any
) -> None:
    endpoint, _ = make_endpoint()
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"a": 1})
    settings.HERALD_OUTBOUND_ONLY_NETWORKS = ["192.0.2.0/24"]  # loopback no longer listed

    assert deliver_one(delivery.pk) == "failed"

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None
    assert attempt.error.startswith(GUARD_REFUSED)
    assert "HERALD_OUTBOUND_ONLY_NETWORKS" in attempt.error
    assert receiver.requests == []


@pytest.mark.django_db
def test_an_attempt_inside_the_networks_is_sent(
    make_endpoint: Any, receiver: Receiver, loopback_only: None
) -> None:
    endpoint, _ = make_endpoint()
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"a": 1})

    assert deliver_one(delivery.pk) == "succeeded"

    assert len(receiver.requests) == 1
