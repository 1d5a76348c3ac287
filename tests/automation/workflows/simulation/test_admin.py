"""The workflow page's "Simulate": a period, then the result with the per-leaf funnel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.simulation import services
from automation.workflows.simulation.models import Simulation
from events_app.models import Event
from tests.automation.workflows.simulation.test_simulate import REPEAT_BUYER, history

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def test_the_workflow_page_links_to_simulate(
    staff: Client, purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/").content.decode()
    assert f"/admin/automation/workflow/{workflow.pk}/simulate/" in page


def test_simulating_a_period_shows_would_run_the_funnel_and_explained_samples(
    staff: Client,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    url = f"/admin/automation/workflow/{workflow.pk}/simulate/"
    assert staff.get(url).status_code == 200

    response = staff.post(url, {"from": "2026-03-02T09:00", "to": "2026-03-05T09:00"})

    assert response.status_code == 302
    simulation = Simulation.objects.get()
    assert response["Location"].endswith(f"?simulation={simulation.pk}")
    page = staff.get(response["Location"]).content.decode()
    assert simulation.result is not None
    assert f'<strong id="would-run">{simulation.result["would_run"]}</strong>' in page
    assert '<strong id="events-considered">13</strong>' in page
    assert "number of &#x27;purchase&#x27; events within P1D ≥ 2" in page
    assert "(filters out the most)" in page
    assert page.count("<meter") == 2
    assert page.count('class="herald-simulate-sample"') == simulation.result["would_run"]
    assert "herald-why-matched" in page  # explanations rendered as on the why pages
    assert WorkflowRun.objects.count() == 0


def test_a_running_simulation_page_refreshes_itself(
    staff: Client,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(services, "SMALL_RANGE", 0)
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    url = f"/admin/automation/workflow/{workflow.pk}/simulate/"
    with django_capture_on_commit_callbacks(execute=False):
        response = staff.post(url, {"from": "2026-03-02T09:00", "to": "2026-03-05T09:00"})
    page = staff.get(response["Location"]).content.decode()
    assert '<meta http-equiv="refresh"' in page
    assert "<progress" in page


def test_a_bad_period_is_said_on_the_page_and_stores_nothing(
    staff: Client, purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow()
    url = f"/admin/automation/workflow/{workflow.pk}/simulate/"
    response = staff.post(url, {"from": "2026-03-05T09:00", "to": "2026-03-02T09:00"})
    assert response.status_code == 200
    assert "must be before" in response.content.decode()
    response = staff.post(url, {"from": "garbage\x00", "to": "2026-03-02T09:00"})
    assert response.status_code == 200
    assert Simulation.objects.count() == 0
