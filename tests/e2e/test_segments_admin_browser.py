"""A segment in the admin, in a real browser: a marketer opens it, reads its members over
time, previews a changed condition without saving it, and exports the members as CSV.

The setup goes through the same services as the API (events ingested, the segment
created and built after commit); everything after it is done by clicking.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from datetime import timedelta

import msgspec
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from automation.segments.models import Segment, SegmentMembership
from automation.segments.selectors import loaded_segments_forget
from automation.segments.services import SegmentInput, segment_create
from customers.models import Customer
from events_app.ingestion import events_prepare, events_store
from events_app.models import EventType
from events_app.schemas import EventCreateIn

pytestmark = pytest.mark.e2e

BUYERS = {"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 1}
LOGGED_IN = '{"count": {"event_type": "login"}, "op": "gte", "value": 1}'


def screenshot(page: Page, name: str) -> None:
    """HERALD_SCREENSHOTS=/some/dir keeps a PNG of the page (for looking at it, not asserting)."""
    if folder := os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def ingest(event_type: str, customer: str) -> None:
    """One event through the ingestion services; its segments refresh after commit."""
    item = msgspec.convert(
        {"event": {"event_type": event_type, "customer_external_id": customer}}, EventCreateIn
    )
    prepared, invalid = events_prepare(items=[item])
    assert not invalid
    events_store(prepared=prepared)


@pytest.fixture
def buyers(transactional_db: None) -> Segment:
    """Buyers: alice (in for 3 days), bob (in since yesterday); dave came and went."""
    loaded_segments_forget()
    EventType.objects.create(key="purchase", name="Purchase")
    EventType.objects.create(key="login", name="Login")
    segment = segment_create(data=SegmentInput(key="buyers", name="Buyers", condition=BUYERS))
    for customer in ("alice", "bob"):
        ingest("purchase", customer)
    ingest("login", "carol")
    Customer.objects.filter(external_id="alice").update(email="alice@shop.example")
    now = timezone.now()
    members = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
    assert sorted(members.values_list("customer__external_id", flat=True)) == ["alice", "bob"]
    members.filter(customer__external_id="alice").update(entered_at=now - timedelta(days=3))
    members.filter(customer__external_id="bob").update(entered_at=now - timedelta(days=1))
    dave = Customer.objects.create(external_id="dave")
    SegmentMembership.objects.create(
        segment=segment,
        customer=dave,
        entered_at=now - timedelta(days=5),
        exited_at=now - timedelta(days=2),
    )
    return segment


def day(offset: int) -> str:
    return (timezone.localdate() - timedelta(days=offset)).isoformat()


def test_marketer_reads_the_trend_previews_a_condition_and_exports_the_members(
    admin_login: Callable[[], Page], buyers: Segment, tmp_path: os.PathLike[str]
) -> None:
    page = admin_login()
    page.goto("/admin/automation/segment/")
    row = page.locator("#result_list tbody tr", has_text="buyers")
    expect(row.locator("td.field-members")).to_contain_text("2")
    row.locator("a", has_text="buyers").click()

    # The chart is drawn, and its numbers are readable in the table under it.
    expect(page.locator("#segment-trend-chart")).to_have_attribute("data-points", "30")
    assert page.evaluate("window.Chart.getChart('segment-trend-chart') !== undefined")
    numbers = page.locator("#segment-trend tbody tr")
    expect(numbers).to_have_count(30)
    expected = {0: "2 0 0", 1: "2 1 0", 2: "1 0 1", 3: "2 1 0", 5: "1 1 0", 6: "0 0 0"}
    for offset, figures in expected.items():
        cells = page.locator(f"#segment-trend tr[data-day='{day(offset)}'] td")
        expect(cells).to_have_text([day(offset), *figures.split()])
    screenshot(page, "segment-trend")

    # Preview a changed condition: a count and a sample, nothing saved. The raw JSON is
    # the builder's "advanced" view (the builder itself: test_rule_builder_browser).
    page.click(".field-condition button.hb-toggle")
    condition = page.locator("#id_condition")
    condition.fill(LOGGED_IN)
    page.click("#segment-preview-button")
    expect(page.locator("#segment-preview-count")).to_have_text("1")
    expect(page.locator(".herald-segment-preview-sample")).to_have_text("carol")
    condition.fill('{"all": [{"last": "purchase", "op": "soon", "value": "P1D"}]}')
    page.click("#segment-preview-button")
    expect(page.locator("#segment-preview-result .errorlist")).to_have_text(
        "condition.all[0].op: Must be one of: more_than, within."
    )
    screenshot(page, "segment-preview")
    buyers.refresh_from_db()
    assert buyers.condition == BUYERS

    # Export the members as CSV and read the file.
    with page.expect_download() as download_info:
        page.click("#segment-export-link")
    download = download_info.value
    assert download.suggested_filename.startswith("segment-buyers-members-")
    target = os.path.join(tmp_path, "members.csv")
    download.save_as(target)
    with open(target, newline="") as file:
        rows = list(csv.reader(file))
    alice, bob = (Customer.objects.get(external_id=name) for name in ("alice", "bob"))
    assert [row[:3] for row in rows] == [
        ["customer_id", "external_id", "email"],
        [alice.pk, "alice", "alice@shop.example"],
        [bob.pk, "bob", ""],
    ]

    # The members list: search by the start of an email, export what it found.
    page.click("#segment-members-link")
    page.fill("#searchbar", "alice@")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr")).to_contain_text("alice")
    expect(page.locator("#segment-export-link")).to_have_attribute(
        "href", f"/admin/automation/segment/{buyers.pk}/members.csv?q=alice%40"
    )
