"""Admin login throttling (django-axes): repeated failures lock the username out from that
address for the cool-off, the attempts are recorded and shown to staff, and API keys are
never affected."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import API, basic_auth

pytestmark = pytest.mark.django_db

PASSWORD = "right-pass-123"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff() -> None:
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)


def login(client: Client, password: str, *, address: str = "10.0.0.1") -> int:
    response = client.post(LOGIN, {"username": "ops", "password": password}, REMOTE_ADDR=address)
    return response.status_code


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_five_failures_lock_the_user_out_even_with_the_right_password(staff: None) -> None:
    client = Client()
    assert [login(client, f"wrong-{n}") for n in range(4)] == [200] * 4  # the form again
    assert login(client, "wrong-5") == 429
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == (
        "ops",
        "10.0.0.1",
        5,
    )

    assert login(client, PASSWORD) == 429
    assert not logged_in(client)


def test_the_lockout_ends_after_the_cool_off_and_binds_username_and_address(
    staff: None,
) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client = Client()
        for n in range(5):
            login(client, f"wrong-{n}")
        # Another address is not locked out for this username.
        assert login(Client(), PASSWORD, address="10.0.0.2") == 302
    with time_machine.travel(start + timedelta(minutes=14, seconds=59), tick=False):
        assert Client().get("/admin/login/", REMOTE_ADDR="10.0.0.1").status_code == 200
    with time_machine.travel(start + timedelta(minutes=15, seconds=1), tick=False):
        client = Client()
        assert login(client, PASSWORD) == 302
        assert logged_in(client)


def test_an_attempt_during_the_lockout_restarts_the_cool_off(staff: None) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for n in range(5):
            login(Client(), f"wrong-{n}")
    with time_machine.travel(start + timedelta(minutes=14), tick=False):
        assert login(Client(), PASSWORD) == 429
    with time_machine.travel(start + timedelta(minutes=16), tick=False):
        assert login(Client(), PASSWORD) == 429
    with time_machine.travel(start + timedelta(minutes=31, seconds=1), tick=False):
        assert login(Client(), PASSWORD) == 302


def test_fewer_failures_then_the_right_password_logs_in_and_is_recorded(staff: None) -> None:
    client = Client()
    for n in range(4):
        login(client, f"wrong-{n}")

    assert login(client, PASSWORD) == 302
    assert logged_in(client)
    assert AccessLog.objects.filter(username="ops").count() == 1
    assert AccessAttempt.objects.count() == 0  # reset by the success


def test_staff_see_attempts_in_the_admin(staff: None) -> None:
    for n in range(3):
        login(Client(), f"wrong-{n}", address="10.9.9.9")
    admin = Client()
    assert login(admin, PASSWORD, address="10.0.0.5") == 302

    page = admin.get("/admin/axes/accessattempt/")

    assert page.status_code == 200
    assert "10.9.9.9" in page.content.decode()


def test_api_key_failures_never_lock_anything_and_touch_no_axes_table(make_api) -> None:
    api = make_api()
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=basic_auth("ops", "wrong"))
    for _ in range(10):
        assert stranger.get(f"{API}/customers").status_code == 401

    assert api.get(f"{API}/customers").status_code == 200
    assert AccessAttempt.objects.count() == 0
