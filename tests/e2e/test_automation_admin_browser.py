"""The automation admin in a real browser: workflows, schedules, webhook deliveries.

Everything after the setup is done by clicking, as a marketer would; the setup and
the event ingestion go through the same services as the API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta

import msgspec
import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from automation.schedules.models import Schedule
from automation.schedules.services import schedule_create
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.sender import deliver_one
from automation.webhooks.services import endpoint_create
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from events_app.ingestion import events_prepare, events_store
from events_app.models import EventType, PropertyDefinition
from events_app.schemas import EventCreateIn
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.e2e


def screenshot(page: Page, name: str) -> None:
    """HERALD_SCREENSHOTS=/some/dir keeps a PNG of the page (for looking at it, not asserting)."""
    if folder := os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def run_action(page: Page, row_text: str, action: str) -> None:
    """Tick the changelist row containing `row_text`, choose an action, press Go."""
    page.locator("#result_list tbody tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def delete_from_change_page(page: Page, change_url: str, counted: list[str], name: str) -> None:
    """Delete → the confirmation counts what goes (exact lines) → Yes → the success message."""
    page.goto(change_url)
    page.click("a.deletelink")
    summary = page.locator("#content")
    for line in counted:
        expect(summary).to_contain_text(line)
    screenshot(page, f"{name}-delete")
    page.click("input[type=submit][value^=Yes]")
    expect(page.locator(".messagelist")).to_contain_text("deleted successfully")


@pytest.fixture
def receiver(admin_receiver: Receiver) -> Receiver:
    return admin_receiver


def ingest(customer: str, amount: int) -> str:
    """One purchase through the ingestion services; its workflows run after commit."""
    item = msgspec.convert(
        {
            "event": {"event_type": "purchase", "customer_external_id": customer},
            "property_records": [{"property_id": "amount", "property_value": amount}],
        },
        EventCreateIn,
    )
    prepared, invalid = events_prepare(items=[item])
    assert not invalid
    return str(events_store(prepared=prepared).stored[0].id)


def test_workflow_made_in_the_admin_shows_errors_in_place_then_its_runs(
    admin_login: Callable[[], Page],
) -> None:
    active_workflows_forget()  # nothing cached from an earlier test in this process
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    page = admin_login()

    page.goto("/admin/automation/workflow/add/")
    page.fill("#id_name", "Big spenders")
    page.select_option("#id_trigger_event_types", label=str(purchase))
    # The raw JSON is the builder's "advanced" view (the builder itself: test_rule_builder_browser).
    page.click(".field-conditions button.hb-toggle")
    page.click(".field-actions button.hb-toggle")
    page.fill(
        "#id_conditions",
        json.dumps({"all": [{"property": "amount", "op": "bigger", "value": 100}]}),
    )
    page.fill("#id_actions", json.dumps([{"type": "add_tags", "tags": ["big"]}]))
    page.click("input[name=_save]")

    error = page.locator("#id_conditions_error")
    expect(error).to_contain_text("conditions.all[0].op: Unknown operator 'bigger'")
    # ... and at the node itself, in the builder.
    node = page.locator('.hb-leaf[data-path="conditions.all[0]"] .hb-errors')
    expect(node).to_contain_text("op: Unknown operator 'bigger'")
    screenshot(page, "workflow-invalid")
    assert Workflow.objects.count() == 0

    page.click(".field-conditions button.hb-toggle")
    page.fill(
        "#id_conditions", json.dumps({"all": [{"property": "amount", "op": "gte", "value": 100}]})
    )
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    workflow = Workflow.objects.get()
    assert workflow.name == "Big spenders"

    matched = ingest("alice", 150)
    ingest("bob", 20)  # below the threshold: no run
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 1

    page.goto(f"/admin/automation/workflow/{workflow.pk}/change/")
    expect(page.locator(".field-readable_conditions")).to_contain_text("property amount ≥ 100")
    history = page.locator(".field-recent_runs table")
    expect(history).to_contain_text(matched)
    expect(history).to_contain_text("succeeded")
    screenshot(page, "workflow-change")

    page.click("text=All runs of this workflow")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator(".field-readable_explanation")).to_contain_text("150")
    expect(page.locator(".field-outcomes_pretty")).to_contain_text('"type": "add_tags"')
    screenshot(page, "workflow-run")

    delete_from_change_page(
        page, f"/admin/automation/workflow/{workflow.pk}/change/", ["1 workflow runs"], "workflow"
    )
    assert (Workflow.objects.count(), WorkflowRun.objects.count()) == (0, 0)
    assert EventType.objects.filter(pk=purchase.pk).exists()  # its trigger stays


def test_schedule_is_paused_and_resumed_from_the_admin(admin_login: Callable[[], Page]) -> None:
    now = timezone.now()
    schedule = schedule_create(
        owner="owner@example.com",
        end_date=now + timedelta(days=30),
        interval="0 9 * * 1-5",
        callback_url="https://93.184.215.14/hook",  # public literal; nothing is sent in this test
        context={"campaign": "weekday"},
        tags=["newsletter"],
        now=now,
    )
    page = admin_login()

    page.goto("/admin/automation/schedule/")
    row = page.locator("#result_list tbody tr", has_text="owner@example.com")
    expect(row).to_contain_text("Inactive")
    expect(row).to_contain_text("newsletter")
    run_action(page, "owner@example.com", "pause")
    expect(page.locator(".messagelist")).to_contain_text("Paused 1 schedule(s).")
    expect(row).to_contain_text("Paused")
    screenshot(page, "schedules-paused")
    schedule.refresh_from_db()
    assert (schedule.status, schedule.next_run_at) == (Schedule.Status.PAUSED, None)

    page.locator("#changelist-filter").get_by_role("link", name="Paused").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    run_action(page, "owner@example.com", "resume")
    expect(page.locator(".messagelist")).to_contain_text("Resumed 1 schedule(s).")
    schedule.refresh_from_db()
    assert schedule.status == Schedule.Status.INACTIVE
    # From now on, not a burst of the runs missed while paused (a weekday 09:00 tick).
    assert schedule.next_run_at == schedule.next_run_after(now)

    page.goto(f"/admin/automation/schedule/{schedule.pk}/change/")
    expect(page.locator(".field-interval_description")).to_contain_text("09:00")
    screenshot(page, "schedule-change")

    delete_from_change_page(
        page,
        f"/admin/automation/schedule/{schedule.pk}/change/",
        ["0 schedule runs", "1 endpoints", "0 deliveries"],
        "schedule",
    )
    assert (Schedule.objects.count(), Endpoint.objects.count()) == (0, 0)


def test_endpoint_deliveries_show_attempts_and_one_is_redelivered(
    admin_login: Callable[[], Page], receiver: Receiver
) -> None:
    receiver.reply(Reply(status=400, body=b"bad signature"), Reply(status=200))
    endpoint, _ = endpoint_create(url=receiver.url("/orders"))
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"order": 7})
    deliver_one(delivery.pk)  # 400: a final failure
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    page = admin_login()  # lands on the dashboard

    expect(page.locator("#figure-endpoints-failing")).to_have_text("1")
    expect(page.locator("#figure-deliveries-failed")).to_have_text("1")
    screenshot(page, "dashboard")
    page.locator("#failing-endpoints").get_by_role("link", name=receiver.url("/orders")).click()
    expect(page.locator(".field-health")).to_contain_text("Failing since")
    page.locator(".field-deliveries").get_by_role("link", name="failed").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr")).to_contain_text("Failed")
    screenshot(page, "deliveries-failed")

    page.get_by_role("link", name=delivery.pk).click()
    attempts = page.locator(".inline-group")
    expect(attempts).to_contain_text("400")
    expect(attempts).to_contain_text("bad signature")
    expect(page.locator(".field-payload_pretty")).to_contain_text('"order": 7')
    screenshot(page, "delivery-attempts")

    page.go_back()
    run_action(page, delivery.pk, "redeliver")
    expect(page.locator(".messagelist")).to_contain_text("1 delivery(ies) queued again.")
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == (Delivery.Status.SUCCEEDED, 2)

    page.goto(f"/admin/automation/delivery/{delivery.pk}/change/")
    expect(page.locator(".inline-group tbody tr.has_original")).to_have_count(2)

    delete_from_change_page(
        page,
        f"/admin/automation/endpoint/{endpoint.pk}/change/",
        ["1 deliveries", "2 delivery attempts"],
        "endpoint",
    )
    assert (Endpoint.objects.count(), Delivery.objects.count()) == (0, 0)
    assert DeliveryAttempt.objects.count() == 0
