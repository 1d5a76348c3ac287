from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from events_app.api_clients import api_client_create
from events_app.ingest_single import kept_references_forget
from events_app.models import ApiClient
from events_app.partitions.ondemand import months_known_clear
from tests.celery_worker import sweep_redis_keys
from tests.openapi_contract import ContractAPIClient
from tests.receiver import Receiver, local_receiver

API = "/rest-api/enterprise-interface/v1.0"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Delete the Redis keys this checkout's tests created (queues, bindings, reserved
    messages of killed workers), once, after every xdist worker has finished: in the
    controlling process, which has no `workerinput`. The test databases are dropped by
    pytest-django itself (unless --reuse-db)."""
    if not hasattr(session.config, "workerinput"):
        sweep_redis_keys()


@pytest.fixture(autouse=True)
def _partition_months_looked_up_again() -> None:
    """Tests drop and rebuild partitions (retention, the partition migration, flushed
    databases), which a running server never sees: each test starts with no month
    remembered as existing (events_app.partitions.ondemand)."""
    months_known_clear()


@pytest.fixture(autouse=True)
def _ingest_references_read_again() -> None:
    """Each test starts with no event type kept for the one-statement single POST
    (events_app.ingest_single): an entry kept from a rolled-back test is refused by its
    check, but would add statements to the tests that count them."""
    kept_references_forget()


@pytest.fixture(autouse=True)
def _rate_limits_off(settings: Any) -> None:
    """Rate limits count every request (without Redis, one statement in the database);
    tests that are not about them run with them off (0), as an operator may run Herald,
    so that statement counts and "nothing changed" snapshots stay about their subject.
    The rate-limit tests turn them on."""
    settings.HERALD_RATE_LIMIT_INGEST = 0
    settings.HERALD_RATE_LIMIT_API = 0
    settings.HERALD_RATE_LIMIT_AUTH_FAILURES = 0


def basic_auth(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


@pytest.fixture
def make_api(db: None) -> Callable[..., APIClient]:
    """An APIClient authenticated with a fresh key of the given scopes."""

    def make(
        scopes: str = "read,write", *, bearer: bool = False, contract: bool = False
    ) -> APIClient:
        """`contract=True`: every response is also checked against the OpenAPI schema."""
        client, secret = api_client_create(
            name=f"test-{ApiClient.objects.count()}-{scopes}", scopes=scopes.split(",")
        )
        api = ContractAPIClient() if contract else APIClient()
        api.credentials(
            HTTP_AUTHORIZATION=f"Bearer {secret}" if bearer else basic_auth(client.name, secret)
        )
        return api

    return make


@pytest.fixture
def api(make_api: Callable[..., APIClient]) -> APIClient:
    return make_api()


@pytest.fixture
def contract_api(make_api: Callable[..., APIClient]) -> APIClient:
    """Like `api`, and every response must match the served OpenAPI document."""
    return make_api(contract=True)


@pytest.fixture
def admin_receiver(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A local HTTP receiver for the admin tests (ports 8901-8949); the outbound guard
    lets loopback through for this test only."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    monkeypatch.setenv("HERALD_TEST_PORTS", "8901-8949")
    with local_receiver() as receiver:
        yield receiver
