"""A marketer puts a workflow under a delivery policy in a real browser: the policy from
the dropdown, a transactional action marked exempt with its checkbox, no JSON typed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from automation.workflows.models import Workflow
from automation.workflows.policies.services import delivery_policy_create
from automation.workflows.selectors import active_workflows_forget
from events_app.models import EventType

pytestmark = pytest.mark.e2e


def test_a_workflow_takes_a_policy_and_an_exempt_action_without_json(
    admin_login: Callable[[], Page],
) -> None:
    active_workflows_forget()
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    policy = delivery_policy_create(
        data={"key": "weekly", "caps": [{"count": 3, "window": "P7D", "actions": ["add_tags"]}]}
    )
    page = admin_login()
    page.goto("/admin/automation/workflow/add/")
    page.fill("#id_name", "Receipts")
    page.select_option("#id_trigger_event_types", label=str(purchase))
    page.select_option("#id_delivery_policy", label="weekly")
    actions = page.locator(".field-actions .herald-builder")
    actions.locator("select.hb-new-action").select_option("add_tags")
    actions.locator("button.hb-add-action").click()
    card = page.locator('.hb-action[data-path="actions[0]"]')
    card.locator(".hb-list input").first.fill("receipt")
    card.locator("input.hb-exempt").check()
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    workflow = Workflow.objects.get()
    assert workflow.delivery_policy_id == policy.pk
    assert workflow.actions == [
        {"type": "add_tags", "tags": ["receipt"], "exempt_from_policy": True}
    ]
    page.goto(f"/admin/automation/workflow/{workflow.pk}/change/")
    expect(page.locator('.hb-action[data-path="actions[0]"] input.hb-exempt')).to_be_checked()
