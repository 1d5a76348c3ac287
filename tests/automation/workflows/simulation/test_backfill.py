"""Backfill: a saved workflow over past events, once per (workflow, event), resumable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import workflow_set_active
from automation.workflows.simulation import backfill as backfills
from automation.workflows.simulation import services
from automation.workflows.simulation.models import Simulation, WorkflowBackfill
from automation.workflows.simulation.replay import PAGE_SIZE
from events_app.models import Event
from tests.automation.workflows.simulation.test_simulate import REPEAT_BUYER, T0, history, iso
from tests.conftest import API

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(days=4)


def backfill(api: APIClient, workflow: Workflow, capture: Any, **body: Any) -> dict[str, Any]:
    with time_machine.travel(NOW, tick=False), capture(execute=True):
        response = api.post(
            f"{API}/workflows/{workflow.pk}/backfill",
            {"from": iso(T0), **body},
            format="json",
        )
    assert response.status_code in (200, 202), response.json()
    return dict(response.json()["data"])


def test_backfill_twice_stores_each_run_once_marked_backfill(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow(
        conditions=REPEAT_BUYER, actions=[{"type": "add_tags", "tags": ["repeat"]}]
    )
    events = history(ingest)
    simulated = services.simulation_create(start=T0, end=NOW, workflow_id=workflow.pk).result
    assert simulated is not None

    first = backfill(api, workflow, django_capture_on_commit_callbacks)
    second = backfill(api, workflow, django_capture_on_commit_callbacks)

    runs = WorkflowRun.objects.filter(workflow=workflow)
    assert runs.count() == simulated["would_run"] > 0
    assert {r.event_id for r in runs} == {s["event_id"] for s in simulated["samples"]}
    assert set(runs.values_list("source", flat=True)) == {"backfill"}
    listed = api.get(f"{API}/workflows/{workflow.pk}/runs").json()["data"]["workflow_runs"]
    assert {run["source"] for run in listed} == {"backfill"}
    # The actions ran (they are real): the runs finished and tagged their customers.
    assert set(runs.values_list("status", flat=True)) == {"succeeded"}
    done = [WorkflowBackfill.objects.get(pk=b["backfill_id"]) for b in (first, second)]
    assert [(b.status, b.runs_created) for b in done] == [
        ("done", simulated["would_run"]),
        ("done", 0),
    ]
    assert all(e.pk for e in events)


def test_live_evaluation_after_a_backfill_never_takes_the_same_event_twice(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    events = history(ingest)
    backfill(api, workflow, django_capture_on_commit_callbacks)
    backfilled = WorkflowRun.objects.filter(workflow=workflow).count()

    # The pending flags of the same events are claimed by live evaluation afterwards.
    due_events_process(event_ids=[e.pk for e in events], now=NOW)

    runs = WorkflowRun.objects.filter(workflow=workflow)
    assert runs.count() == backfilled
    assert set(runs.values_list("source", flat=True)) == {"backfill"}


def test_an_event_ingested_after_the_watermark_is_left_to_live_evaluation(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow()
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        late = ingest(customer="dave", occurred_at=T0 + timedelta(hours=2))
    backfill(api, workflow, django_capture_on_commit_callbacks)
    assert not WorkflowRun.objects.filter(event=late).exists()


def test_a_crashed_backfill_resumes_from_its_cursor(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from automation.workflows.simulation import replay

    monkeypatch.setattr(replay, "PAGE_SIZE", 3)
    workflow = make_workflow()  # every purchase runs
    history(ingest)

    class Killed(BaseException):
        """The worker's process dies (not an error the task could record)."""

    real_page = backfills._backfill_page
    pages = []

    def dying(*args: Any, **kwargs: Any) -> None:
        if len(pages) == 2:
            raise Killed
        pages.append(1)
        real_page(*args, **kwargs)

    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=False):
        job = backfills.backfill_create(workflow=workflow, start=T0)
    monkeypatch.setattr(backfills, "_backfill_page", dying)
    with (
        time_machine.travel(NOW, tick=False),
        django_capture_on_commit_callbacks(execute=False),
        pytest.raises(Killed),
    ):
        backfills.backfill_run(backfill_id=job.pk)
    job.refresh_from_db()
    assert (job.status, WorkflowRun.objects.count()) == ("running", 6)
    assert job.cursor_event_id

    monkeypatch.setattr(backfills, "_backfill_page", real_page)
    later = NOW + services.STALE_AFTER * 2
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=False):
        assert services.simulations_resume_stale(later) == 1

    job.refresh_from_db()
    assert job.status == "done"
    assert WorkflowRun.objects.count() == 13
    assert job.runs_created == 13
    assert PAGE_SIZE > 3  # the module's own value is untouched outside this test


def test_dry_run_answers_the_simulation_and_stores_no_run(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    data = backfill(api, workflow, django_capture_on_commit_callbacks, dry_run=True)
    assert data["status"] == "done"
    assert data["result"]["would_run"] > 0
    assert WorkflowRun.objects.count() == 0
    assert WorkflowBackfill.objects.count() == 0
    assert Simulation.objects.count() == 1


def test_backfill_of_an_inactive_workflow_answers_409_and_a_running_one_too(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow()
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(
            f"{API}/workflows/{workflow.pk}/backfill", {"from": iso(T0)}, format="json"
        )
        assert response.status_code == 202
        again = api.post(
            f"{API}/workflows/{workflow.pk}/backfill", {"from": iso(T0)}, format="json"
        )
    assert again.status_code == 409
    workflow_set_active(workflow=workflow, active=False)
    response = api.post(f"{API}/workflows/{workflow.pk}/backfill", {"from": iso(T0)}, format="json")
    assert response.status_code == 409
    assert WorkflowBackfill.objects.count() == 1


def test_backfill_with_a_bad_from_answers_400_and_writes_nothing(
    api: APIClient, purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow()
    for value in ("2026-03-02T00:00:00", "2999-01-01T00:00:00Z", "yesterday", 5):
        response = api.post(
            f"{API}/workflows/{workflow.pk}/backfill", {"from": value}, format="json"
        )
        assert response.status_code == 400, (value, response.json())
        assert "from" in response.json()["details"]
    assert WorkflowBackfill.objects.count() == 0


def test_a_backfill_is_read_back_under_its_own_workflow_only(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow()
    other = make_workflow(name="Other")
    history(ingest)
    started = backfill(api, workflow, django_capture_on_commit_callbacks)

    url = f"{API}/workflows/{workflow.pk}/backfills/{started['backfill_id']}"
    data = api.get(url).json()["data"]
    assert (data["status"], data["runs_created"], data["progress"]) == ("done", 13, 1.0)
    assert data["watermark"].startswith(NOW.isoformat()[:19])
    wrong = f"{API}/workflows/{other.pk}/backfills/{started['backfill_id']}"
    assert api.get(wrong).status_code == 404
