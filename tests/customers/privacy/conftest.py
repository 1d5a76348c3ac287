"""Privacy requests filed through the API and run by the real background path (the
in-process one other tests use: after commit, inline)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.privacy.models import PrivacyRequest
from tests.conftest import API
from tests.receiver import Receiver, local_receiver

PRIVACY = f"{API}/privacy-requests"

File = Callable[..., dict[str, Any]]


@pytest.fixture
def file_request(api: APIClient, django_capture_on_commit_callbacks: Any) -> File:
    """file(type, **identifier): POST it, let its background run happen (the on-commit
    work, inline), and return the request as GET /privacy-requests/{id} shows it."""

    def file(type: str, **identifier: str) -> dict[str, Any]:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(PRIVACY, {"type": type, "customer": identifier}, format="json")
        assert response.status_code == 202, response.json()
        filed = response.json()["data"]
        assert filed["status"] == "pending"
        detail = api.get(f"{PRIVACY}/{filed['request_id']}")
        assert detail.status_code == 200
        data: dict[str, Any] = detail.json()["data"]
        return data

    return file


def stored_text(table: str) -> str:
    """Every row of a table as PostgreSQL's JSON text: what a grep of the table sees."""
    sql = f"SELECT coalesce(string_agg(row_to_json(t)::text, ' '), '') FROM {table} t"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return str(cursor.fetchone()[0])


def privacy_request_text() -> str:
    return stored_text(PrivacyRequest._meta.db_table)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with local_receiver() as r:
        yield r


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def api(contract_api: APIClient) -> APIClient:
    """Every answer of these tests is also checked against the OpenAPI document."""
    return contract_api
