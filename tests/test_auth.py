"""API keys: Basic (client name + secret) and Bearer, revocation, read/write scopes."""

from __future__ import annotations

import base64
import re

import pytest
import time_machine
from rest_framework.test import APIClient

from customers.models import Customer
from events_app.api_clients import api_client_create, api_client_revoke
from events_app.models import ApiClient
from tests.conftest import API, basic_auth
from tests.factories import CustomerFactory
from tests.openapi_contract import ContractAPIClient, served_schema

pytestmark = pytest.mark.django_db

WWW_AUTHENTICATE = 'Basic realm="Herald", Bearer realm="Herald"'


def _client(authorization: str | None = None) -> APIClient:
    client = ContractAPIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


@pytest.fixture
def key() -> tuple[ApiClient, str]:
    return api_client_create(name="shop", scopes=["read", "write"])


def test_request_without_credentials_is_401_with_www_authenticate():
    response = _client().get(f"{API}/events")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json() == {
        "error": "Unauthorized",
        "message": "Authentication credentials were not provided.",
        "statusCode": 401,
    }


def test_write_without_credentials_is_401_and_creates_nothing():
    response = _client().post(f"{API}/customers", {"customer": {"external_id": "1"}}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert Customer.objects.count() == 0


def test_wrong_secret_is_401(key):
    client, _ = key

    response = _client(basic_auth(client.name, "hrld_wrong")).get(f"{API}/events")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json()["message"] == "Invalid API client name or secret."


def test_right_secret_with_another_clients_name_is_401(key):
    _, secret = key
    api_client_create(name="other")

    response = _client(basic_auth("other", secret)).get(f"{API}/events")

    assert response.status_code == 401


def test_basic_auth_with_name_and_secret_is_accepted(key):
    client, secret = key

    response = _client(basic_auth(client.name, secret)).get(f"{API}/events")

    assert response.status_code == 200


def test_bearer_secret_is_accepted(key):
    _, secret = key

    response = _client(f"Bearer {secret}").get(f"{API}/events")

    assert response.status_code == 200


def test_wrong_bearer_secret_is_401_naming_bearer(key):
    response = _client("Bearer hrld_nope").get(f"{API}/events")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json()["message"] == "Invalid or revoked API key."


def test_revoked_key_is_401_for_basic_and_bearer(key):
    client, secret = key
    api_client_revoke(client=client)

    basic = _client(basic_auth(client.name, secret)).get(f"{API}/events")
    bearer = _client(f"Bearer {secret}").get(f"{API}/events")

    assert (basic.status_code, bearer.status_code) == (401, 401)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic not!base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer",
        "Bearer a b",
    ],
)
def test_malformed_authorization_header_is_401_not_500(authorization):
    response = _client(authorization).get(f"{API}/events")

    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


def test_basic_password_that_is_not_utf8_is_read_as_latin1():
    secret = "s\xe9cr\xe8t"  # what ISO-8859-1 bytes b"s\xe9cr\xe8t" decode to
    ApiClient.objects.create(
        name="legacy", secret_hash=ApiClient.hash_secret(secret), secret_prefix="legacy"
    )
    token = base64.b64encode(b"legacy:s\xe9cr\xe8t").decode()

    response = _client(f"Basic {token}").get(f"{API}/events")

    assert response.status_code == 200


def test_read_only_key_gets_403_on_every_write_and_nothing_changes(make_api):
    read_only = make_api("read", contract=True)
    customer = CustomerFactory(external_id="kept")

    responses = [
        read_only.post(f"{API}/customers", {"customer": {"external_id": "1"}}, format="json"),
        read_only.patch(
            f"{API}/customers/{customer.id}", {"customer": {"email": ""}}, format="json"
        ),
        read_only.delete(f"{API}/customers/{customer.id}"),
        read_only.post(
            f"{API}/event-types", {"event_type": {"key": "a", "name": "A"}}, format="json"
        ),
        read_only.post(f"{API}/events", {"event": {}}, format="json"),
    ]

    assert [r.status_code for r in responses] == [403] * 5
    assert responses[0].json() == {
        "error": "Forbidden",
        "message": "This API key lacks the 'write' scope.",
        "statusCode": 403,
    }
    assert list(Customer.objects.values_list("external_id", "email")) == [
        ("kept", "kept@example.com")
    ]
    assert read_only.get(f"{API}/customers").status_code == 200


def test_write_only_key_gets_403_on_reads_and_can_write(make_api):
    write_only = make_api("write", contract=True)

    reads = [
        write_only.get(f"{API}/events"),
        write_only.get(f"{API}/event-types"),
        write_only.get(f"{API}/customers"),
    ]
    created = write_only.post(f"{API}/customers", {"customer": {"external_id": "1"}}, format="json")

    assert [r.status_code for r in reads] == [403, 403, 403]
    assert reads[0].json()["message"] == "This API key lacks the 'read' scope."
    assert created.status_code == 201


def test_last_used_at_is_recorded_at_most_once_a_minute(key):
    client, secret = key
    api = _client(f"Bearer {secret}")

    with time_machine.travel("2026-01-01 10:00:00+00:00", tick=False):
        api.get(f"{API}/events")
    with time_machine.travel("2026-01-01 10:00:30+00:00", tick=False):
        api.get(f"{API}/events")
    client.refresh_from_db()
    first = client.last_used_at
    with time_machine.travel("2026-01-01 10:01:30+00:00", tick=False):
        api.get(f"{API}/events")
    client.refresh_from_db()

    assert first is not None
    assert first.isoformat() == "2026-01-01T10:00:00+00:00"
    assert client.last_used_at.isoformat() == "2026-01-01T10:01:30+00:00"


def _documented_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation of the served OpenAPI document, ids filled in."""
    operations = [
        (method, re.sub(r"\{[^}]+\}", "unknown", template))
        for template, item in served_schema()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    # An empty list would turn the tests below into silent skips.
    assert len(operations) >= 15, operations
    return sorted(operations)


@pytest.mark.parametrize(("method", "path"), _documented_operations())
def test_every_documented_operation_needs_credentials(method, path):
    response = getattr(_client(), method)(path, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json()["statusCode"] == 401


@pytest.mark.parametrize(("method", "path"), _documented_operations())
def test_every_documented_operation_checks_the_scope(make_api, method, path):
    # A key with only the other scope: reads need `read`, writes need `write`.
    needed = "read" if method == "get" else "write"
    other = make_api("write" if needed == "read" else "read", contract=True)

    response = getattr(other, method)(path, {}, format="json")

    assert response.status_code == 403
    assert response.json()["message"] == f"This API key lacks the '{needed}' scope."
