"""Finding things in the admin in a real browser: a customer by the start of their email,
their story with the workflow run an event started, and lists that fit a 1280 px window.

The setup goes through the same services as the API (events run their workflows after
commit, in process, as in the embedded default); everything after it is clicking.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import msgspec
import pytest
from playwright.sync_api import Page, expect

from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.ingestion import events_prepare, events_store
from events_app.models import EventType, PropertyDefinition
from events_app.schemas import EventCreateIn
from tests.factories import CustomerFactory, EventFactory, PropertyRecordFactory

pytestmark = pytest.mark.e2e

WIDTH = 1280


def screenshot(page: Page, name: str) -> None:
    """HERALD_SCREENSHOTS=/some/dir keeps a PNG of the page (for looking at it, not asserting)."""
    if folder := os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def ingest(customer: str, records: dict[str, str]) -> str:
    item = msgspec.convert(
        {
            "event": {"event_type": "purchase", "customer_external_id": customer},
            "property_records": [
                {"property_id": k, "property_value": v} for k, v in records.items()
            ],
        },
        EventCreateIn,
    )
    prepared, invalid = events_prepare(items=[item])
    assert not invalid
    return str(events_store(prepared=prepared).stored[0].id)


def overflow(page: Page) -> int:
    """How far the page is wider than the window (0: no horizontal scrolling)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth")) - WIDTH


def hidden_overflow(page: Page) -> list[str]:
    """Elements of the content wider than their box and scrollable or clipped there."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('#content *')]
              .filter(e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0
                      && ['auto', 'scroll', 'hidden'].includes(getComputedStyle(e).overflowX))
              .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)"""
        )
    )


def test_marketer_finds_a_customer_by_email_prefix_and_reads_the_run_on_their_story(
    admin_login: Callable[[], Page],
) -> None:
    active_workflows_forget()  # nothing cached from an earlier test in this process
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(event_type=purchase, property_id="amount")
    workflow = workflow_create(
        data=WorkflowInput(
            name="Tag buyers",
            trigger_event_types=["purchase"],
            conditions={},
            actions=[{"type": "add_tags", "tags": ["buyer"]}],
        )
    )
    matched = ingest("customer_001", {"amount": "150"})
    Customer.objects.filter(external_id="customer_001").update(email="Ann.Smith@shop.example")
    CustomerFactory(external_id="customer_002", email="bob@shop.example")
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == WorkflowRun.Status.SUCCEEDED
    page = admin_login()

    page.goto("/admin/customers/customer/")
    page.fill("#searchbar", "ann.sm")
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("customer_001")
    screenshot(page, "find-customer")

    rows.locator("th a").click()
    story = page.locator("#story")
    entry = story.locator("tr.herald-timeline-event", has_text="purchase")
    expect(entry).to_contain_text("amount = 150")
    detail = entry.locator("li.herald-detail", has_text="workflow run")
    expect(detail).to_contain_text("workflow “Tag buyers”: add_tags succeeded")
    expect(detail.locator(".herald-status")).to_have_text("succeeded")
    screenshot(page, "customer-story")

    detail.get_by_role("link", name="workflow run").click()
    page.wait_for_url(f"**/admin/automation/workflowrun/{run.pk}/change/")
    expect(page.locator("#content")).to_contain_text(matched)


def test_lists_and_a_customer_page_fit_a_1280_pixel_window(
    admin_login: Callable[[], Page],
) -> None:
    # What a busy shop's rows look like; one value without spaces, longer than any column.
    customer = CustomerFactory(
        external_id="customer_000123",
        email="ann.smith@shop.example.com",
        tags=["newsletter", "vip", "black-friday-2026"],
        attributes={"plan": "gold", "unbroken": "x" * 200},
    )
    for n in range(5):
        event = EventFactory(customer=customer, external_id=f"order-2026-11-{n:06d}")
        for prop, value in (("amount", "149.90"), ("currency", "EUR"), ("sku", "SKU-" + "9" * 60)):
            PropertyRecordFactory(event=event, property_id=prop, property_value=value)
    page = admin_login()
    page.set_viewport_size({"width": WIDTH, "height": 900})

    widths = {}
    for url in [
        "/admin/events_app/event/",
        "/admin/events_app/event/?created=24h&state__exact=1",
        "/admin/customers/customer/",
        f"/admin/customers/customer/{customer.pk}/change/",
    ]:
        page.goto(url)
        # The page, and any box inside it that would scroll sideways (a cut-off table).
        widths[url] = (overflow(page), hidden_overflow(page))
        screenshot(page, "width-" + url.strip("/").replace("/", "-").replace("?", "-"))

    assert widths == dict.fromkeys(widths, (0, [])), widths
    expect(page.locator("#story tr.herald-timeline-event")).to_have_count(5)
