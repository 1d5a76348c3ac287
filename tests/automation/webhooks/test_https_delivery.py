"""HTTPS deliveries for real: a local TLS receiver with certificates minted by trustme.

The connection always goes to the address the outbound guard checked (here 127.0.0.1),
while SNI and the certificate check are for the URL's host; a certificate Herald cannot
verify fails the attempt with a recorded reason, and the delivery is retried as usual.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction
from standardwebhooks import Webhook

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.webhooks.sender import RETRY_SCHEDULE, deliver_one
from automation.webhooks.services import endpoint_create
from tests.celery_worker import celery_broker, celery_worker, wait_until
from tests.receiver import Receiver

HttpsReceiver = Callable[[trustme.LeafCert], Receiver]


def pinned_to_loopback(_host: str, _port: int) -> list[str]:
    """A resolver for `localhost` that answers 127.0.0.1 only (machines differ on ::1)."""
    return ["127.0.0.1"]


def send(url: str, **kwargs: Any) -> tuple[Delivery, str, str]:
    """Create an endpoint and a delivery to `url`, make one attempt; return both and the secret."""
    endpoint, secret = endpoint_create(url=url)
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"order": 7})
    outcome = deliver_one(delivery.pk, **kwargs)
    delivery.refresh_from_db()
    return delivery, outcome, secret


def self_signed_cert(ip: str) -> trustme.LeafCert:
    """A certificate for `ip` that signs itself: no CA anywhere vouches for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return trustme.LeafCert(key_pem, cert.public_bytes(serialization.Encoding.PEM), [])


def assert_rejected_and_retried(delivery: Delivery, outcome: str, error: str) -> None:
    """The attempt failed with `error` recorded, and the delivery waits for its first retry."""
    assert outcome == "failed"
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.status_code, attempt.error, attempt.outcome) == (None, error, "retry")
    assert (delivery.status, delivery.retry_step, delivery.last_error) == ("pending", 1, error)
    assert delivery.next_attempt_at is not None
    wait = delivery.next_attempt_at - attempt.started_at
    assert RETRY_SCHEDULE[0] <= wait <= RETRY_SCHEDULE[0] * 1.1 + timedelta(seconds=1)


# ---------------------------------------------------------------- trusted certificates


@pytest.mark.django_db
def test_https_delivery_to_a_certificate_of_a_trusted_ca_succeeds_and_is_signed(
    trusted_ca: trustme.CA, https_receiver: HttpsReceiver, allow_loopback: None
) -> None:
    receiver = https_receiver(trusted_ca.issue_cert("127.0.0.1"))

    delivery, outcome, secret = send(receiver.url("/orders"))

    assert (outcome, delivery.status, delivery.last_status_code) == ("succeeded", "succeeded", 200)
    (request,) = receiver.requests
    assert request.path == "/orders"
    assert request.headers["webhook-id"] == delivery.message_id
    assert Webhook(secret).verify(request.body, request.headers) == {"order": 7}
    assert receiver.server_names == [None]  # no SNI for an IP address (RFC 6066)


@pytest.mark.django_db
def test_https_to_localhost_connects_to_the_pinned_ip_and_checks_the_certificate_for_localhost(
    trusted_ca: trustme.CA, https_receiver: HttpsReceiver, settings: Any
) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    # Valid for the name only: a check against the address connected to would fail.
    receiver = https_receiver(trusted_ca.issue_cert("localhost"))

    delivery, outcome, secret = send(
        receiver.url("/orders", host="localhost"), resolver=pinned_to_loopback
    )

    assert (outcome, delivery.status) == ("succeeded", "succeeded")
    (request,) = receiver.requests  # the receiver listens on 127.0.0.1 only
    assert receiver.server_names == ["localhost"]
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert Webhook(secret).verify(request.body, request.headers) == {"order": 7}


# ---------------------------------------------------------------- rejected certificates


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cert_for", "url_host", "error"),
    [
        # The URL names the address; the certificate is for the name only.
        ("localhost", "127.0.0.1", "hostname '127.0.0.1' doesn't match 'localhost'"),
        # The URL names localhost, pinned to 127.0.0.1: the certificate must be valid for
        # localhost, not for the address the connection went to.
        ("127.0.0.1", "localhost", "hostname 'localhost' doesn't match '127.0.0.1'"),
        ("example.org", "127.0.0.1", "hostname '127.0.0.1' doesn't match 'example.org'"),
    ],
)
def test_a_certificate_for_another_host_fails_the_attempt_and_is_retried(
    trusted_ca: trustme.CA,
    https_receiver: HttpsReceiver,
    settings: Any,
    cert_for: str,
    url_host: str,
    error: str,
) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    receiver = https_receiver(trusted_ca.issue_cert(cert_for))

    delivery, outcome, _ = send(receiver.url(host=url_host), resolver=pinned_to_loopback)

    assert_rejected_and_retried(delivery, outcome, f"TLS certificate rejected: {error}")
    assert receiver.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("issuer", "error"),
    [
        ("a CA nobody trusts", "unable to get local issuer certificate"),
        (
            "the private CA, without HERALD_OUTBOUND_CA_BUNDLE",
            "unable to get local issuer certificate",
        ),
        ("itself", "self-signed certificate"),
    ],
)
def test_an_untrusted_certificate_fails_the_attempt_and_is_retried(
    trusted_ca: trustme.CA,
    https_receiver: HttpsReceiver,
    allow_loopback: None,
    settings: Any,
    issuer: str,
    error: str,
) -> None:
    if issuer == "itself":
        cert = self_signed_cert("127.0.0.1")
    elif issuer == "a CA nobody trusts":
        cert = trustme.CA().issue_cert("127.0.0.1")
    else:
        cert = trusted_ca.issue_cert("127.0.0.1")
        settings.HERALD_OUTBOUND_CA_BUNDLE = ""
    receiver = https_receiver(cert)

    delivery, outcome, _ = send(receiver.url())

    assert_rejected_and_retried(delivery, outcome, f"TLS certificate rejected: {error}")
    assert receiver.requests == []


@pytest.mark.django_db
def test_an_expired_certificate_fails_the_attempt_and_is_retried(
    trusted_ca: trustme.CA, https_receiver: HttpsReceiver, allow_loopback: None
) -> None:
    now = datetime.now(UTC)
    expired = trusted_ca.issue_cert(
        "127.0.0.1", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    receiver = https_receiver(expired)

    delivery, outcome, _ = send(receiver.url())

    assert_rejected_and_retried(
        delivery, outcome, "TLS certificate rejected: certificate has expired"
    )
    assert receiver.requests == []


@pytest.mark.django_db
def test_a_rejected_certificate_is_retried_and_delivered_once_it_is_trusted(
    trusted_ca: trustme.CA, https_receiver: HttpsReceiver, allow_loopback: None, settings: Any
) -> None:
    bundle = settings.HERALD_OUTBOUND_CA_BUNDLE
    settings.HERALD_OUTBOUND_CA_BUNDLE = ""
    receiver = https_receiver(trusted_ca.issue_cert("127.0.0.1"))
    delivery, outcome, _ = send(receiver.url())
    assert outcome == "failed"

    settings.HERALD_OUTBOUND_CA_BUNDLE = bundle  # the operator adds the private CA
    assert delivery.next_attempt_at is not None
    with time_machine.travel(delivery.next_attempt_at, tick=False):
        assert deliver_one(delivery.pk) == "succeeded"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
    assert list(delivery.attempts.values_list("outcome", flat=True)) == ["retry", "succeeded"]
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_an_unreadable_ca_bundle_fails_the_attempt_with_a_clear_error(
    trusted_ca: trustme.CA,
    https_receiver: HttpsReceiver,
    allow_loopback: None,
    settings: Any,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.pem"
    settings.HERALD_OUTBOUND_CA_BUNDLE = str(missing)
    receiver = https_receiver(trusted_ca.issue_cert("127.0.0.1"))

    delivery, outcome, _ = send(receiver.url())

    assert_rejected_and_retried(
        delivery,
        outcome,
        f"HERALD_OUTBOUND_CA_BUNDLE '{missing}' cannot be loaded: "
        "[Errno 2] No such file or directory",
    )
    assert receiver.requests == []


# ---------------------------------------------------------------- the setting, end to end


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_trusts_the_ca_bundle_named_in_its_environment(
    https_receiver: HttpsReceiver, allow_loopback: None, tmp_path: Path
) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    receiver = https_receiver(ca.issue_cert("127.0.0.1"))
    endpoint, secret = endpoint_create(url=receiver.url())

    worker_env = {"HERALD_OUTBOUND_CA_BUNDLE": str(bundle)}
    with celery_broker() as broker, celery_worker(broker, env=worker_env):
        with transaction.atomic():
            delivery_create(endpoint=endpoint, payload={"order": 8})
        (request,) = receiver.wait_for(1, timeout=30)
        delivery = wait_until(
            lambda: Delivery.objects.filter(status="succeeded").first(), what="success"
        )

    assert Webhook(secret).verify(request.body, request.headers) == {"order": 8}
    assert request.headers["webhook-id"] == delivery.message_id
