"""Identity and simulation in the admin, in a real browser: a marketer merges a visitor
into a known customer (preview, confirm, then undo), and simulates a workflow over past
events before switching it on.

The setup goes through the same services as the API; everything after it is clicking.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import msgspec
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from automation.workflows.models import Workflow
from automation.workflows.services import WorkflowInput, workflow_create
from customers.identity.models import CustomerMerge
from customers.models import Customer
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType
from events_app.schemas import EventCreateIn

pytestmark = pytest.mark.e2e


def ingest(customer: dict[str, str], hours_ago: int = 0) -> None:
    """One purchase through the ingestion services, `hours_ago` in the past."""
    occurred_at = timezone.now() - timedelta(hours=hours_ago)
    item = msgspec.convert(
        {
            "event": {
                "event_type": "purchase",
                "occurred_at": occurred_at.isoformat(),
                **customer,
            }
        },
        EventCreateIn,
    )
    prepared, invalid = events_prepare(items=[item])
    assert not invalid
    events_store(prepared=prepared)


def purchases_of(customer_id: str) -> int:
    return Event.objects.filter(customer_id=customer_id, event_type__key="purchase").count()


@pytest.fixture
def purchases(transactional_db: None) -> None:
    EventType.objects.create(key="purchase", name="Purchase")


def test_marketer_merges_a_visitor_into_a_customer_then_undoes_it(
    admin_login: Callable[[], Page], purchases: None
) -> None:
    ingest({"customer_external_id": "alice"})
    ingest({"anonymous_id": "visitor-7"}, hours_ago=2)
    ingest({"anonymous_id": "visitor-7"}, hours_ago=1)
    alice = Customer.objects.get(external_id="alice")
    visitor = Customer.objects.get(anonymous_id="visitor-7")

    page = admin_login()
    page.goto(f"/admin/customers/customer/{alice.pk}/change/")
    page.click("text=Merge another customer into this one")
    # The visitor is named as a person knows them: by the anonymous id.
    page.fill("#id_secondary", "visitor-7")
    page.click("input[value='Preview']")
    preview = page.locator("#merge-preview")
    expect(preview).to_contain_text("2 events")
    expect(preview).to_contain_text("anonymous: visitor-7")
    assert Customer.objects.filter(pk=visitor.pk).exists()  # a preview changes nothing

    page.click("input[name='confirm']")
    expect(page.locator(".messagelist")).to_contain_text("Merged")
    assert not Customer.objects.filter(pk=visitor.pk).exists()
    assert purchases_of(alice.pk) == 3

    page.click("#merge-undo input[type='submit'], #merge-undo button")
    expect(page.locator(".messagelist")).to_contain_text("The merge was undone.")
    assert CustomerMerge.objects.get().status == "undone"
    assert purchases_of(visitor.pk) == 2
    assert purchases_of(alice.pk) == 1


def test_marketer_simulates_a_workflow_over_last_days_before_activating_it(
    admin_login: Callable[[], Page], purchases: None
) -> None:
    for hours_ago in (30, 20, 10):
        ingest({"customer_external_id": "alice"}, hours_ago=hours_ago)
    ingest({"customer_external_id": "bob"}, hours_ago=5)
    repeat_buyer = {"count": {"event_type": "purchase", "within": "P2D"}, "op": "gte", "value": 2}
    workflow = workflow_create(
        data=WorkflowInput(
            name="Repeat buyers",
            trigger_event_types=["purchase"],
            conditions={"all": [repeat_buyer]},
            actions=[{"type": "add_tags", "tags": ["repeat"]}],
            active=False,
        )
    )

    page = admin_login()
    page.goto(f"/admin/automation/workflow/{workflow.pk}/change/")
    page.click(f"a[href='/admin/automation/workflow/{workflow.pk}/simulate/']")
    page.click("#simulate-form [type='submit']")

    expect(page.locator("#simulation")).to_have_attribute("data-status", "done")
    expect(page.locator("#events-considered")).to_have_text("4")
    # alice's second and third purchases: two purchases within two days.
    expect(page.locator("#would-run")).to_have_text("2")
    expect(page.locator("#simulation-funnel")).to_contain_text("purchase")
    assert not Workflow.objects.get(pk=workflow.pk).runs.exists()  # nothing fired
    assert Customer.objects.get(external_id="alice").tags == []
