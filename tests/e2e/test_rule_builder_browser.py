"""A marketer's tasks in a real browser, none of which types JSON: a workflow built with
the rule builder (a nested condition on typed properties, a webhook action), events sent
through the API, "why not" for the one that did not match; a schedule created with its
cron expression described and its next runs listed as it is typed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import time_machine
from playwright.sync_api import Locator, Page, expect

from automation.schedules.models import Schedule
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from events_app.api_clients import api_client_create
from events_app.models import Event, EventType, PropertyDefinition
from project.audit.models import AuditEntry
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

API = "/rest-api/enterprise-interface/v1.0"
EXPECTED_TREE = {
    "all": [
        {"property": "amount", "op": "gte", "value": 100},
        {
            "any": [
                {"property": "sku", "op": "starts_with", "value": "VIP"},
                {"property": "amount", "op": "gt", "value": 1000},
            ]
        },
    ]
}


def screenshot(page: Page, name: str) -> None:
    """HERALD_SCREENSHOTS=/some/dir keeps a PNG of the page (for looking at it, not asserting)."""
    if folder := os.environ.get("HERALD_SCREENSHOTS"):
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def leaf(page: Page, path: str) -> Locator:
    return page.locator(f'.hb-leaf[data-path="{path}"]')


def send_purchase(page: Page, key: str, customer: str, amount: int, sku: str) -> Event:
    response = page.request.post(
        f"{API}/events",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=json.dumps(
            {
                "event": {"event_type": "purchase", "customer_external_id": customer},
                "property_records": [
                    {"property_id": "amount", "property_value": amount},
                    {"property_id": "sku", "property_value": sku},
                ],
            }
        ),
    )
    assert response.status == 201, response.text()
    return Event.objects.get(customer__external_id=customer)


def test_workflow_built_without_json_runs_for_a_match_and_explains_the_miss(
    admin_login: Callable[[], Page], admin_receiver: Receiver
) -> None:
    active_workflows_forget()  # nothing cached from an earlier test in this process
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    PropertyDefinition.objects.create(event_type=purchase, property_id="sku", value_type="string")
    _, key = api_client_create(name="shop")
    hook = admin_receiver.url("/hook")
    page = admin_login()

    page.goto("/admin/automation/workflow/add/")
    page.fill("#id_name", "Big VIP spenders")
    page.select_option("#id_trigger_event_types", label=str(purchase))
    conditions = page.locator(".field-conditions .herald-builder")
    conditions.locator("button.hb-add-leaf").click()
    first = leaf(page, "conditions.all[0]")
    # A number property offers only the operators of numbers, with a number input.
    expect(first.locator("select.hb-target")).to_have_value("amount")
    assert "starts_with" not in first.locator("select.hb-op option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    first.locator("select.hb-op").select_option("gte")
    first.locator("input.hb-number").fill("100")

    conditions.locator('.hb-group[data-path="conditions"] > .hb-add > .hb-add-group').click()
    group = page.locator('.hb-group[data-path="conditions.all[1]"]')
    expect(group.locator("select.hb-group-kind")).to_have_value("any")
    nested = leaf(page, "conditions.all[1].any[0]")
    nested.locator("select.hb-target").select_option("sku")
    nested.locator("select.hb-op").select_option("starts_with")
    nested.locator("input.hb-input").fill("VIP")
    group.locator(":scope > .hb-add > .hb-add-leaf").click()
    second = leaf(page, "conditions.all[1].any[1]")
    second.locator("select.hb-op").select_option("gt")
    second.locator("input.hb-number").fill("1000")

    actions = page.locator(".field-actions .herald-builder")
    actions.locator("select.hb-new-action").select_option("webhook")
    actions.locator("button.hb-add-action").click()
    screenshot(page, "builder-filled")
    page.click("input[name=_save]")

    # The service refused the empty URL: the message sits at the action's URL field.
    error = page.locator('.hb-action[data-path="actions[0]"] .hb-field-url .errorlist')
    expect(error).to_contain_text("Must be an http(s) URL.")
    assert Workflow.objects.count() == 0
    # The tree came back from the POST into the builder, node for node.
    expect(leaf(page, "conditions.all[1].any[0]").locator("input.hb-input")).to_have_value("VIP")
    page.locator('.hb-action[data-path="actions[0]"] input.hb-url').fill(hook)

    # The advanced view shows the JSON the builder made, and comes back unchanged.
    conditions.locator("button.hb-toggle").click()
    assert json.loads(page.locator("#id_conditions").input_value()) == EXPECTED_TREE
    conditions.locator("button.hb-toggle").click()
    expect(leaf(page, "conditions.all[0]").locator("input.hb-number")).to_have_value("100")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    workflow = Workflow.objects.get()
    assert workflow.conditions == EXPECTED_TREE
    assert [(a["type"], a["url"]) for a in workflow.actions] == [("webhook", hook)]
    assert workflow.reentry == Workflow.EVERY_EVENT

    matching = send_purchase(page, key, "alice", 150, "VIP-7")
    missing = send_purchase(page, key, "bob", 150, "STD-1")
    assert list(WorkflowRun.objects.values_list("event_id", flat=True)) == [matching.pk]

    page.goto(f"/admin/events_app/event/{missing.pk}/change/")
    page.click("a.herald-why-link")
    answer = page.locator(f'.herald-why-answer[data-workflow="{workflow.pk}"]')
    expect(answer.locator(".herald-why-verdict")).to_have_text(
        "Not run: the conditions do not match (✘ below)."
    )
    failed = answer.locator("tr.herald-why-failed")
    expect(failed).to_have_count(2)
    expect(failed.nth(0)).to_contain_text('"STD-1"')
    expect(failed.nth(0)).to_contain_text("conditions.all[1].any[0]")
    expect(failed.nth(1)).to_contain_text("property amount > 1000")
    expect(answer.locator("tr.herald-why-matched")).to_contain_text("property amount ≥ 100")
    screenshot(page, "why-not")

    page.goto(f"/admin/automation/workflow/{workflow.pk}/why/?event={matching.pk}")
    expect(page.locator(".herald-why-verdict")).to_contain_text("It ran for this event")

    # The run is on the matching customer's story, under the event that started it.
    page.goto(f"/admin/customers/customer/{matching.customer_id}/change/")
    entry = page.locator("#story tr.herald-timeline-event", has_text="purchase")
    detail = entry.locator("li.herald-detail", has_text="workflow run")
    expect(detail).to_contain_text(f"workflow “{workflow.name}”")

    # The webhook's signing secret, revealed on purpose (recorded) and copyable.
    page.goto(f"/admin/automation/workflow/{workflow.pk}/change/")
    page.click("#reveal-secrets")
    secret = page.locator("#workflow-secrets-shown code.herald-secret")
    expect(secret).to_have_text(workflow.endpoint_links.get().endpoint.secret)
    assert AuditEntry.objects.filter(action="secret_shown", object_id=workflow.pk).count() == 1


def test_schedule_created_in_the_admin_shows_its_next_runs_as_it_is_typed(
    admin_login: Callable[[], Page], admin_receiver: Receiver
) -> None:
    page = admin_login()
    # A Monday, 08:00 UTC: the next five weekday 09:00 runs are this week's.
    with time_machine.travel(datetime(2026, 12, 7, 8, 0, tzinfo=UTC), tick=True):
        page.goto("/admin/automation/schedule/add/")
        page.fill("#id_owner", "owner@example.com")
        page.fill("#id_callback_url", admin_receiver.url("/tick"))
        page.fill("#id_interval", "61 * * * *")
        expect(page.locator("#cron-preview .hb-echo-bad")).to_be_visible()
        page.fill("#id_interval", "0 9 * * 1-5")
        preview = page.locator("#cron-preview")
        expect(preview.locator(".herald-cron-description")).to_contain_text("09:00")
        expect(preview.locator("li")).to_have_text(
            [f"2026-12-{day:02d} 09:00:00" for day in (7, 8, 9, 10, 11)]
        )
        screenshot(page, "schedule-add")
        page.fill("#id_end_date_0", "2027-01-31")
        page.fill("#id_end_date_1", "00:00:00")
        page.fill("#id_tag_text", "newsletter, weekly")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist")).to_contain_text("was added successfully")

        schedule = Schedule.objects.get()
        assert (schedule.owner, schedule.interval, schedule.tags) == (
            "owner@example.com",
            "0 9 * * 1-5",
            ["newsletter", "weekly"],
        )
        assert schedule.next_run_at == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

        page.goto(f"/admin/automation/schedule/{schedule.pk}/change/")
        page.fill("#id_interval", "30 8 * * *")
        expect(page.locator("#cron-preview li").first).to_have_text("2026-12-07 08:30:00")
        page.click("input[name=_save]")
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
        schedule.refresh_from_db()
        assert (schedule.interval, schedule.next_run_at) == (
            "30 8 * * *",
            datetime(2026, 12, 7, 8, 30, tzinfo=UTC),
        )
