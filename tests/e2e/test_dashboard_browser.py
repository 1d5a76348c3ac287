"""The dashboard's trends, the live events page and the CSV export in a real browser."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from events_app.api_clients import api_client_create
from tests.conftest import API, basic_auth
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.e2e


def screenshot(page, name: str) -> None:
    if os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["HERALD_SCREENSHOTS"], name), full_page=True)


def test_marketer_sees_a_rejected_batch_item_on_the_live_page(admin_login, live_server):
    EventTypeFactory(key="purchase")
    shop, secret = api_client_create(name="shop", scopes=["write"])
    api_client_create(name="crm", scopes=["write"])
    page = admin_login()
    page.goto("/admin/live/")
    expect(page.locator("#live-status")).to_contain_text("Updated")

    response = requests.post(
        f"{live_server.url}{API}/events/batch",
        json={
            "events": [
                {"event": {"event_type": "purchase", "customer_external_id": "c-1"}},
                {"event": {"event_type": "purchse", "customer_external_id": "c-1"}},
            ]
        },
        headers={"Authorization": basic_auth(shop.name, secret)},
        timeout=10,
    )
    assert response.status_code == 200

    # The page polls once a second: both appear within two polls.
    rejected = page.locator("#live-rejections tbody tr")
    expect(rejected).to_have_count(1, timeout=2_500)
    expect(rejected).to_contain_text("Unknown event type key 'purchse'")
    expect(rejected).to_contain_text("shop")
    expect(page.locator("#live-events tbody tr")).to_have_count(1, timeout=2_500)
    expect(page.locator("#live-events tbody tr")).to_contain_text("purchase")
    screenshot(page, "live.png")

    page.select_option("#live-api-client", label="crm")
    expect(page.locator("#live-rejections tbody tr")).to_have_count(0)
    expect(page.locator("#live-events tbody tr")).to_have_count(0)
    page.select_option("#live-api-client", label="shop")
    expect(page.locator("#live-rejections tbody tr")).to_have_count(1)


def test_marketer_exports_a_filtered_events_list_as_csv(admin_login, tmp_path: Path):
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    login = EventTypeFactory(key="login", name="Login")
    alice = CustomerFactory(external_id="alice")
    bought = [
        EventFactory(event_type=purchase, customer=alice, external_id=f"o-{n}") for n in range(3)
    ]
    EventFactory.create_batch(2, event_type=login, customer=alice)
    page = admin_login()
    page.goto("/admin/events_app/event/")
    page.locator("#changelist-filter").get_by_role("link", name="purchase").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    with page.expect_download() as download:
        page.click("#herald-export-csv")
    saved = tmp_path / "events.csv"
    download.value.save_as(saved)

    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert sorted(r["id"] for r in rows) == sorted(e.id for e in bought)
    assert {r["event_type__key"] for r in rows} == {"purchase"}
    assert sorted(r["external_id"] for r in rows) == ["o-0", "o-1", "o-2"]
    assert {r["customer__external_id"] for r in rows} == {"alice"}


def test_the_dashboard_draws_its_trends_and_keeps_the_numbers_readable(admin_login):
    EventFactory.create_batch(4, event_type=EventTypeFactory(key="purchase"))
    page = admin_login()

    expect(page.locator("#chart-events")).to_have_attribute("data-drawn", "true")
    expect(page.locator("#chart-deliveries")).to_have_attribute("data-drawn", "true")
    expect(page.locator('#trend-events [data-total="purchase"]')).to_have_text("4")
    page.locator("#trend-events summary").click()
    expect(page.locator("#trend-events table")).to_be_visible()
    screenshot(page, "dashboard.png")

    page.click("#trend-30d")
    expect(page.locator("#trend-events tbody tr")).to_have_count(30)
    expect(page.locator("#chart-events")).to_have_attribute("data-drawn", "true")
