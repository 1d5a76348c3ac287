"""What the shortcuts of the API's request path keep: the answer a client gets for its
Accept header, and the browser's middleware (sessions, CSRF, login, messages) kept off
API requests and on the admin's."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from events_app.models import Event
from tests.conftest import API
from tests.factories import EventTypeFactory

pytestmark = pytest.mark.django_db


def _event(event_type_id: str, ref: str) -> dict[str, object]:
    return {
        "event": {"event_type_id": event_type_id, "customer_external_id": "c1", "external_id": ref}
    }


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/*", "application/json; q=1"]
)
def test_every_accept_header_that_allows_json_is_answered_with_json(api: APIClient, accept):
    event_type = EventTypeFactory()
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = api.post(f"{API}/events", _event(event_type.id, "r1"), format="json", **headers)

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert Event.objects.count() == 1


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/*"])
def test_an_accept_header_without_json_is_406_in_the_error_shape_and_stores_nothing(
    api: APIClient, accept
):
    event_type = EventTypeFactory()

    response = api.post(
        f"{API}/events", _event(event_type.id, "r1"), format="json", HTTP_ACCEPT=accept
    )

    assert response.status_code == 406
    assert response.json()["statusCode"] == 406
    assert Event.objects.count() == 0


def test_an_api_answer_sets_no_cookie_even_for_a_logged_in_browser(api: APIClient):
    admin = User.objects.create_superuser("root", password="pw-12345678")
    browser = Client()
    browser.force_login(admin)
    api.cookies = browser.cookies  # the admin's session cookie rides along

    listed = api.get(f"{API}/events")
    logged_out = APIClient()
    logged_out.cookies = browser.cookies
    refused = logged_out.get(f"{API}/events")

    assert listed.status_code == 200
    assert not listed.cookies
    assert "Cookie" not in listed.get("Vary", "")
    # A session is never an API credential.
    assert refused.status_code == 401
    assert not refused.cookies


def test_the_admin_keeps_its_session_csrf_and_login(client: Client):
    User.objects.create_superuser("root", password="pw-12345678")

    form = client.get("/admin/login/")
    refused = Client(enforce_csrf_checks=True).post(
        "/admin/login/", {"username": "root", "password": "pw-12345678"}
    )
    logged_in = client.post(
        "/admin/login/",
        {
            "username": "root",
            "password": "pw-12345678",
            "csrfmiddlewaretoken": form.cookies["csrftoken"].value,
        },
    )
    index = client.get("/admin/")

    assert refused.status_code == 403
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    assert index.status_code == 200
    assert index.wsgi_request.user.username == "root"
