"""The in-process API-key cache: revocation is bounded by API_KEY_CACHE_SECONDS."""

from __future__ import annotations

import pytest
from django.utils import timezone

from events_app.api_clients import api_client_create, api_client_revoke, api_key_cache
from events_app.models import ApiClient
from tests.conftest import API, basic_auth
from tests.openapi_contract import ContractAPIClient

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings) -> FakeClock:
    settings.API_KEY_CACHE_SECONDS = 1
    fake = FakeClock()
    monkeypatch.setattr(api_key_cache, "clock", fake)
    return fake


def _get(authorization: str) -> int:
    client = ContractAPIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(f"{API}/events").status_code


def _revoke_elsewhere(client: ApiClient) -> None:
    """Revoke as another worker process would: the row changes, this cache does not."""
    ApiClient.objects.filter(pk=client.pk).update(revoked_at=timezone.now())


def test_key_revoked_by_another_process_is_refused_once_the_ttl_has_passed(clock):
    client, secret = api_client_create(name="shop")
    assert _get(f"Bearer {secret}") == 200

    _revoke_elsewhere(client)
    clock.now += 0.9
    still_cached = _get(f"Bearer {secret}")
    clock.now += 0.1
    after_ttl = _get(f"Bearer {secret}")

    assert (still_cached, after_ttl) == (200, 401)


def test_key_revoked_in_this_process_is_refused_on_the_next_request(clock):
    client, secret = api_client_create(name="shop")
    assert _get(basic_auth(client.name, secret)) == 200

    api_client_revoke(client=client)

    assert _get(basic_auth(client.name, secret)) == 401
    assert _get(f"Bearer {secret}") == 401


def test_cached_secret_with_another_clients_name_is_401(clock):
    client, secret = api_client_create(name="shop")
    api_client_create(name="other")
    assert _get(basic_auth(client.name, secret)) == 200

    assert _get(basic_auth("other", secret)) == 401


def test_new_key_works_at_once_after_a_failed_attempt_with_it(clock):
    client, secret = api_client_create(name="shop")
    wrong = secret + "x"
    assert _get(f"Bearer {wrong}") == 401

    # A wrong secret is never remembered as "unknown": the next attempt asks again.
    ApiClient.objects.filter(pk=client.pk).update(secret_hash=ApiClient.hash_secret(wrong))

    assert _get(f"Bearer {wrong}") == 200


def test_zero_ttl_reads_the_key_on_every_request(clock, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    client, secret = api_client_create(name="shop")
    assert _get(f"Bearer {secret}") == 200

    _revoke_elsewhere(client)

    assert _get(f"Bearer {secret}") == 401
