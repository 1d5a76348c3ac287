"""Content-Security-Policy in a real browser: every admin page (the dashboard, each
changelist, add form and change form) and the API docs load without one violation.

A violation shows in two places, both watched: the console ("Refused to ...") and the
page's `securitypolicyviolation` events (recorded by a script Playwright injects before
the page's own, which the policy does not govern)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page

from automation.schedules.services import schedule_create
from automation.webhooks.services import endpoint_create, endpoint_ping
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.api_clients import api_client_create
from project.audit.models import AuditEntry
from tests.conftest import API
from tests.e2e.conftest import is_csp_violation
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory, PropertyRecordFactory
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def one_of_everything(receiver: Receiver) -> None:
    """A row for every admin page: change forms need an object to show."""
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    customer = CustomerFactory(external_id="csp-1")
    event = EventFactory(event_type=purchase, customer=customer, data={"cart": 2})
    PropertyRecordFactory(event=event, property_id="amount", property_value="42.5")
    api_client_create(name="csp-key")
    endpoint, _ = endpoint_create(url=receiver.url("/hook"), event_types=["purchase"])
    endpoint_ping(endpoint=endpoint)
    now = timezone.now()
    schedule_create(
        owner="o@example.com",
        end_date=now + timedelta(days=30),
        interval="*/5 * * * *",
        callback_url=receiver.url("/cb"),
    )
    workflow_create(
        data=WorkflowInput(
            name="csp",
            trigger_event_types=["purchase"],
            conditions={"all": [{"property": "amount", "op": "gt", "value": 10}]},
            actions=[{"type": "webhook", "url": receiver.url("/wf")}],
        )
    )


def admin_pages() -> list[str]:
    pages = ["/admin/"]
    for model in admin.site._registry:
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        try:
            pages.append(reverse(f"{base}_changelist"))
            pages.append(reverse(f"{base}_add"))
        except NoReverseMatch:
            continue
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            pages.append(reverse(f"{base}_change", args=[first.pk]))
    return pages


@pytest.fixture
def violations(page: Page) -> Callable[[], list[str]]:
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if is_csp_violation(message):
            refused.append(message.text)

    page.on("console", on_console)
    page.context.add_init_script(RECORD_VIOLATIONS)

    def collected() -> list[str]:
        found = list(refused) + list(page.evaluate("window.__csp || []"))
        refused.clear()
        return found

    return collected


def visit(page: Page, url: str, violations: Callable[[], list[str]]) -> tuple[int, list[str]]:
    response = page.goto(url)
    assert response is not None
    page.wait_for_load_state("networkidle")
    return response.status, violations()


def test_every_admin_page_and_the_api_docs_load_without_a_csp_violation(
    admin_login: Callable[[], Page],
    admin_receiver: Receiver,
    violations: Callable[[], list[str]],
) -> None:
    one_of_everything(admin_receiver)
    page = admin_login()
    AuditEntry.objects.create(
        actor_kind="system", action="updated", object_type="thing", object_id="1", after={}
    )
    pages = admin_pages()
    assert len(pages) > 40  # every registered model, not just a few

    problems: dict[str, Any] = {}
    for url in [*pages, f"{API}/docs/"]:
        status, found = visit(page, url, violations)
        if status >= 500 or found:
            problems[url] = (status, found)

    assert problems == {}
    header = page.goto("/admin/")
    assert header is not None
    policy = header.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


def test_the_swagger_ui_renders_the_operations_under_the_policy(
    page: Page, violations: Callable[[], list[str]]
) -> None:
    status, found = visit(page, f"{API}/docs/", violations)

    assert (status, found) == (200, [])
    assert page.locator(".opblock").count() > 20
