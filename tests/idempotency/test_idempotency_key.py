"""Idempotency-Key on configuration POSTs: a retry gets the first answer and creates
nothing; a reused key with another body is a 422; concurrent twins create one object."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from io import BytesIO
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from automation.schedules.models import Schedule
from automation.webhooks.models import Endpoint
from automation.workflows.models import Workflow
from customers.models import Customer
from events_app.models import EventType
from project.background import job_by_name
from project.idempotency.models import IdempotencyKey
from project.idempotency.views import _request_hash
from tests.conftest import API

HOOK = "http://127.0.0.1:8599/hook"

CASES: list[tuple[str, Callable[[int], dict[str, Any]], Any]] = [
    ("customers", lambda n: {"customer": {"external_id": f"c{n}"}}, Customer),
    ("webhooks", lambda n: {"webhook": {"url": f"{HOOK}{n}"}}, Endpoint),
    (
        "event-types",
        lambda n: {"event_type": {"key": f"type{n}", "name": "T"}},
        EventType,
    ),
    (
        "workflows",
        lambda n: {"workflow": {"name": f"w{n}", "trigger_event_types": ["purchase"]}},
        Workflow,
    ),
    (
        "schedules",
        lambda n: {
            "schedule": {
                "owner": "o@example.com",
                "end_date": (timezone.now() + timedelta(days=30)).isoformat(),
                "interval": "*/5 * * * *",
                "callback_url": f"https://93.184.215.14/hook{n}",
            }
        },
        Schedule,
    ),
]


@pytest.fixture(autouse=True)
def setup(settings: Any, db: None) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    EventType.objects.create(key="purchase", name="Purchase")


@pytest.mark.parametrize(("path", "body", "model"), CASES, ids=[c[0] for c in CASES])
def test_same_key_and_body_answers_the_first_response_and_creates_nothing(
    api: APIClient, path: str, body: Callable[[int], dict[str, Any]], model: Any
) -> None:
    payload = body(1)
    first = api.post(f"{API}/{path}", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.json()
    rows = model.objects.count()

    again = api.post(f"{API}/{path}", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (again.status_code, again.json()) == (201, first.json())
    assert again["Idempotent-Replayed"] == "true"
    assert model.objects.count() == rows
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.parametrize(("path", "body", "model"), CASES, ids=[c[0] for c in CASES])
def test_same_key_with_another_body_is_422_and_creates_nothing(
    api: APIClient, path: str, body: Callable[[int], dict[str, Any]], model: Any
) -> None:
    api.post(f"{API}/{path}", body(1), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    rows = model.objects.count()

    other = api.post(f"{API}/{path}", body(2), format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert other.status_code == 422
    assert other.json()["error"] == "Unprocessable Entity"
    assert set(other.json()["details"]) == {"Idempotency-Key"}
    assert model.objects.count() == rows


def test_without_the_header_every_post_acts(api: APIClient) -> None:
    for _ in range(2):
        assert (
            api.post(f"{API}/webhooks", {"webhook": {"url": HOOK}}, format="json").status_code
            == 201
        )
    assert Endpoint.objects.count() == 2
    assert IdempotencyKey.objects.count() == 0


def test_keys_are_per_api_client(make_api: Callable[..., APIClient]) -> None:
    payload = {"webhook": {"url": HOOK}}
    for api in (make_api(), make_api()):
        response = api.post(f"{API}/webhooks", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response
    assert Endpoint.objects.count() == 2


def test_a_refused_request_keeps_no_key_so_the_corrected_retry_acts(api: APIClient) -> None:
    bad = api.post(
        f"{API}/webhooks", {"webhook": {"url": "nope"}}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert bad.status_code == 400
    assert IdempotencyKey.objects.count() == 0

    good = api.post(
        f"{API}/webhooks", {"webhook": {"url": HOOK}}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert good.status_code == 201
    assert Endpoint.objects.count() == 1


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "é"])
def test_a_malformed_key_is_400(api: APIClient, key: str) -> None:
    response = api.post(
        f"{API}/webhooks", {"webhook": {"url": HOOK}}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"Idempotency-Key"}
    assert Endpoint.objects.count() == 0


def test_a_key_older_than_24_hours_acts_again_and_the_sweep_removes_it(api: APIClient) -> None:
    payload = {"webhook": {"url": HOOK}}
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        api.post(f"{API}/webhooks", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
    with time_machine.travel(start + timedelta(hours=24, seconds=1), tick=False):
        again = api.post(f"{API}/webhooks", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again
    assert Endpoint.objects.count() == 2
    IdempotencyKey.objects.update(created_at=start)

    removed = job_by_name("idempotency.expire").func(start + timedelta(hours=24, seconds=1))

    assert removed == 1
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_identical_requests_create_one_object(
    make_api: Callable[..., APIClient],
) -> None:
    api = make_api()
    payload = {"webhook": {"url": HOOK}}
    barrier = threading.Barrier(10)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def post() -> None:
        try:
            barrier.wait()
            response = api.post(
                f"{API}/webhooks", payload, format="json", HTTP_IDEMPOTENCY_KEY="same"
            )
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Endpoint.objects.count() == 1
    assert len(answers) == 10
    assert {status for status, _ in answers} == {201}
    assert len({body["data"]["webhook_id"] for _, body in answers}) == 1


def test_a_chunked_body_is_hashed_from_the_stream_and_left_readable_for_the_view() -> None:
    def chunked(body: bytes) -> Request:
        django_request = APIRequestFactory().post(f"{API}/webhooks")
        django_request.META.pop("CONTENT_LENGTH", None)
        django_request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
        django_request.META["wsgi.input"] = BytesIO(body)
        return Request(django_request)

    first, second = chunked(b'{"a": 1}'), chunked(b'{"a": 2}')

    assert _request_hash(first) != _request_hash(second)
    assert first._request.META["wsgi.input"].read() == b'{"a": 1}'
