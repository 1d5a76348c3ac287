"""The admin in a real browser: what a marketer does on a normal day."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from customers.models import Customer
from events_app.api_clients import api_client_authenticate
from events_app.models import ApiClient, Event, PropertyRecord
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory, PropertyRecordFactory

pytestmark = pytest.mark.e2e


def test_marketer_finds_an_event_and_reads_its_property_records(admin_login):
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    login = EventTypeFactory(key="login", name="Login")
    customer = CustomerFactory(external_id="157613")
    wanted = EventFactory(
        event_type=purchase, customer=customer, external_id="aaabbbccc", data={"cart": 2}
    )
    PropertyRecordFactory(event=wanted, property_id="amount", property_value="42.5")
    EventFactory(event_type=purchase, external_id="other-purchase")
    EventFactory(event_type=login, external_id="a-login")
    page = admin_login()

    expect(page.locator("#site-name")).to_have_text("Herald")
    expect(page.locator("#figure-events-24h")).to_have_text("3")
    page.click("text=events in total")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    page.locator("#changelist-filter").get_by_role("link", name="purchase").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    expect(page.locator("#result_list")).not_to_contain_text("a-login")

    page.fill("#searchbar", "aaabbbccc")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    if os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["HERALD_SCREENSHOTS"], "events.png"))

    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator("#content h1")).to_have_text("View event")
    records = page.locator(".inline-group")
    expect(records).to_contain_text("amount")
    expect(records).to_contain_text("42.5")
    expect(page.locator("pre.herald-json")).to_contain_text('"cart": 2')
    if os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(
            path=os.path.join(os.environ["HERALD_SCREENSHOTS"], "event.png"), full_page=True
        )


def test_marketer_creates_an_api_key_sees_the_secret_once_and_revokes_it(admin_login):
    page = admin_login()

    page.goto("/admin/events_app/apiclient/add/")
    page.fill("#id_name", "crm-sync")
    page.uncheck("input[name=scope_choices][value=write]")
    page.click("input[name=_save]")

    secret = page.locator("#api-secret").inner_text()
    client = ApiClient.objects.get(name="crm-sync")
    assert client.scopes == "read"
    assert api_client_authenticate(secret=secret, name="crm-sync") == client
    if os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["HERALD_SCREENSHOTS"], "secret.png"))

    page.click("text=Done, back to API clients")
    expect(page.locator("#result_list")).to_contain_text("crm-sync")
    assert secret not in page.content()

    page.click("#result_list >> text=crm-sync")
    assert secret not in page.content()
    page.click("#revoke-api-key")
    expect(page.locator(".messagelist")).to_contain_text("revoked")
    client.refresh_from_db()
    assert client.revoked_at is not None
    assert api_client_authenticate(secret=secret, name="crm-sync") is None


def test_marketer_deletes_a_customer_after_seeing_counts_of_what_goes(admin_login):
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    alice = CustomerFactory(external_id="alice-erase")
    for n in range(3):
        event = EventFactory(event_type=purchase, customer=alice)
        PropertyRecordFactory(event=event, property_id="amount", property_value=str(n))
    kept = EventFactory(event_type=purchase, customer=CustomerFactory(external_id="bob-keep"))
    page = admin_login()

    page.goto("/admin/customers/customer/")
    page.fill("#searchbar", "alice-erase")
    page.press("#searchbar", "Enter")
    page.click("#result_list >> text=alice-erase")
    page.click("a.deletelink")
    summary = page.locator("#content")
    for line in ("3 events", "3 property records", "0 deliveries", "0 workflow runs"):
        expect(summary).to_contain_text(line)
    if os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["HERALD_SCREENSHOTS"], "customer-delete.png"))
    page.click("input[type=submit][value^=Yes]")

    expect(page.locator(".messagelist")).to_contain_text("deleted successfully")
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["bob-keep"]
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk]
    assert PropertyRecord.objects.count() == 0
