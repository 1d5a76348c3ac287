"""A real browser for admin tests: Playwright driving the system Chromium.

Browsers cannot be downloaded here, so Playwright launches /usr/bin/chromium
(override with HERALD_CHROMIUM). Pages run against pytest-django's
live_server, which needs a transactional database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = os.environ.get("HERALD_CHROMIUM", "/usr/bin/chromium")
STAFF_PASSWORD = "e2e-staff-pass-123"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    # Playwright's sync API runs an asyncio loop in this thread; Django refuses
    # ORM calls from a thread with a running loop unless told it is fine.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True,
        )
        yield browser
        browser.close()


def is_csp_violation(message: ConsoleMessage) -> bool:
    """Chromium reports each Content-Security-Policy violation on the console."""
    return "Content Security Policy" in message.text or message.text.startswith("Refused to")


@pytest.fixture
def page(browser: Browser, live_server, transactional_db: None) -> Iterator[Page]:
    """A browser page on the live server. Every browser test also checks that no page
    it visited broke the Content-Security-Policy (an inline script or style, say)."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if is_csp_violation(m) else None)
    yield page
    context.close()
    assert violations == [], "Content-Security-Policy violations"


@pytest.fixture
def admin_login(page: Page) -> Callable[[], Page]:
    """Create a superuser and log in through the admin login form."""

    def login() -> Page:
        get_user_model().objects.create_superuser("e2e-admin", "e2e@example.com", STAFF_PASSWORD)
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", "e2e-admin")
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        return page

    return login
