"""Who may read GET /metrics: loopback clients, and others with the bearer token only."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

TOKEN = "m" * 40
REMOTE = "203.0.113.7"


def get(client: Client, remote: str = REMOTE, **headers: str):
    return client.get("/metrics", REMOTE_ADDR=remote, **headers)


def assert_error(response, status: int, message_part: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "message", "statusCode"}
    assert body["statusCode"] == status
    assert message_part in body["message"]
    assert "herald_" not in response.content.decode()


@pytest.mark.parametrize("loopback", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_clients_read_the_metrics_without_a_token(client, loopback):
    response = get(client, loopback)

    assert response.status_code == 200
    assert b"herald_pending_work{" in response.content
    assert response["Cache-Control"] == "no-store"


def test_other_addresses_are_refused_with_403_when_no_token_is_configured(client, settings):
    settings.HERALD_METRICS_TOKEN = ""

    assert_error(get(client), 403, "loopback clients only")


def test_other_addresses_need_the_token_when_one_is_configured(client, settings):
    settings.HERALD_METRICS_TOKEN = TOKEN

    missing = get(client)
    wrong = get(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x")
    right = get(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert_error(missing, 401, "Authorization: Bearer")
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert_error(wrong, 401, "not the metrics token")
    assert right.status_code == 200
    assert b"herald_events_ingested_total" in right.content


def test_a_wrong_token_is_refused_even_from_loopback(client, settings):
    settings.HERALD_METRICS_TOKEN = TOKEN

    assert_error(get(client, "127.0.0.1", HTTP_AUTHORIZATION="Bearer nope"), 401, "not the")


def test_a_token_is_refused_when_none_is_configured(client, settings):
    settings.HERALD_METRICS_TOKEN = ""

    assert_error(get(client, HTTP_AUTHORIZATION="Bearer "), 401, "not the metrics token")


def test_loopback_can_be_required_to_send_the_token_too(client, settings):
    settings.HERALD_METRICS_ALLOW_LOOPBACK = False
    settings.HERALD_METRICS_TOKEN = TOKEN

    assert_error(get(client, "127.0.0.1"), 401, "Authorization: Bearer")
    assert get(client, "127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_x_forwarded_for_is_not_believed_without_trusted_proxies(client, settings):
    settings.HERALD_TRUSTED_PROXY_COUNT = 0

    assert_error(get(client, HTTP_X_FORWARDED_FOR="127.0.0.1"), 403, "loopback")


def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(client, settings):
    settings.HERALD_TRUSTED_PROXY_COUNT = 1

    # The proxy runs on this machine: its own address is loopback, the client's is not.
    proxied_remote = get(client, "127.0.0.1", HTTP_X_FORWARDED_FOR=REMOTE)
    proxied_local = get(client, "127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert_error(proxied_remote, 403, "loopback")
    assert proxied_local.status_code == 200


def test_only_get_and_head_are_allowed(client):
    response = client.post("/metrics", REMOTE_ADDR="127.0.0.1")

    assert_error(response, 405, "POST")
    assert response["Allow"] == "GET, HEAD"
    assert client.head("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_the_api_key_and_the_rate_limits_do_not_apply(client, settings):
    settings.HERALD_RATE_LIMIT_API = 1
    settings.HERALD_RATE_LIMIT_AUTH_FAILURES = 1

    statuses = [get(client, "127.0.0.1").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def test_openmetrics_is_served_when_the_scraper_asks_for_it(client):
    response = get(client, "127.0.0.1", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")
