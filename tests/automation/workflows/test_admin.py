"""Workflow admin: readable tree, validation errors in place, saves through the services,
run history per workflow and per event, outcome filter."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from automation.due import due_events_process_and_run
from automation.workflows.admin import render_tree
from automation.workflows.models import Workflow, WorkflowRun
from events_app.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


def form_data(purchase: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Admin made",
        "trigger_event_types": [purchase.pk],
        "conditions": json.dumps({"all": [{"property": "amount", "op": "gte", "value": 100}]}),
        "actions": json.dumps([{"type": "add_tags", "tags": ["big"]}]),
        "active": "on",
        "reentry": "every_event",
    }
    data.update(overrides)
    return data


def test_render_tree_reads_like_a_sentence() -> None:
    html = render_tree(
        {
            "all": [
                {"property": "amount", "op": "gte", "value": 100},
                {"not": {"customer": "tags", "op": "contains", "value": "vip"}},
                {"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 3},
                {"first": "purchase"},
            ]
        }
    )
    assert html == (
        "<strong>ALL of</strong><ul><li>property amount ≥ 100</li>"
        "<li><strong>NOT</strong><ul><li>customer tags contains &quot;vip&quot;</li></ul></li>"
        "<li>number of &#x27;purchase&#x27; events within P7D ≥ 3</li>"
        "<li>this is the customer&#x27;s first &#x27;purchase&#x27; event</li></ul>"
    )


def test_admin_creates_a_workflow_through_the_service(staff: Client, purchase: Any) -> None:
    response = staff.post("/admin/automation/workflow/add/", form_data(purchase))
    assert response.status_code == 302, response.content[:2000]
    workflow = Workflow.objects.get()
    assert (workflow.name, workflow.version) == ("Admin made", 1)
    assert [t.key for t in workflow.trigger_event_types.all()] == ["purchase"]
    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/")
    assert "<strong>ALL of</strong><ul><li>property amount ≥ 100</li></ul>" in page.content.decode()


def test_invalid_tree_is_shown_on_the_field_with_the_node_path(
    staff: Client, purchase: Any
) -> None:
    bad = json.dumps({"all": [{"property": "amount", "op": "bigger", "value": 1}]})
    response = staff.post("/admin/automation/workflow/add/", form_data(purchase, conditions=bad))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["conditions"]
    assert errors["conditions"][0].startswith("conditions.all[0].op: Unknown operator 'bigger'")
    assert Workflow.objects.count() == 0


def test_run_history_per_workflow_per_event_and_by_outcome(
    staff: Client,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    workflow = make_workflow(actions=[{"type": "add_tags", "tags": ["x"]}])
    first, second = ingest(), ingest()
    due_events_process_and_run(event_ids=[first.pk, second.pk])
    WorkflowRun.objects.filter(event=second).update(status="failed", error="boom")

    by_workflow = staff.get(f"/admin/automation/workflowrun/?workflow__id__exact={workflow.pk}")
    assert {r.event_id for r in by_workflow.context["cl"].result_list} == {first.pk, second.pk}
    by_event = staff.get(f"/admin/automation/workflowrun/?q={first.pk}")
    assert [r.event_id for r in by_event.context["cl"].result_list] == [first.pk]
    failed = staff.get("/admin/automation/workflowrun/?status__exact=failed")
    assert [r.event_id for r in failed.context["cl"].result_list] == [second.pk]
    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/").content.decode()
    assert "boom" in page
    run = WorkflowRun.objects.get(event=first)
    detail = staff.get(f"/admin/automation/workflowrun/{run.pk}/change/").content.decode()
    assert "<td>conditions</td>" not in detail  # empty tree: no leaves listed
    assert run.status == "succeeded"


def test_admin_picks_segment_triggers_from_the_segments_and_refuses_an_unknown_one(
    staff: Client, purchase: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from automation.segments.services import SegmentInput, segment_create

    with django_capture_on_commit_callbacks(execute=True):
        segment_create(data=SegmentInput(key="vip", name="VIP", condition={}))
    page = staff.get("/admin/automation/workflow/add/").content.decode()
    assert '<option value="vip:entered">Enters “VIP” (vip)</option>' in page
    assert '<option value="vip:exited">Leaves “VIP” (vip)</option>' in page

    response = staff.post(
        "/admin/automation/workflow/add/",
        form_data(purchase, trigger_event_types=[], trigger_segments=["vip:entered"]),
    )
    assert response.status_code == 302, response.content[:2000]
    workflow = Workflow.objects.get()
    assert workflow.trigger_segments == [{"segment": "vip", "on": "entered"}]
    assert list(workflow.trigger_event_types.all()) == []
    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/").content.decode()
    assert '<option value="vip:entered" selected>' in page

    response = staff.post(
        "/admin/automation/workflow/add/",
        form_data(
            purchase, name="Other", trigger_event_types=[], trigger_segments=["nope:entered"]
        ),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["trigger_segments"]
    assert "nope:entered is not one of the available choices" in errors["trigger_segments"][0]
    assert Workflow.objects.count() == 1


def test_admin_saves_a_goal_and_shows_the_stats_on_the_workflow_page(
    staff: Client,
    purchase: Any,
    login: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    goal_tree = {"property": "amount", "op": "gte", "value": 10}
    response = staff.post(
        "/admin/automation/workflow/add/",
        form_data(
            login,
            conditions="{}",
            actions=json.dumps([{"type": "wait", "duration": "P1D"}]),
            goal_event_type="purchase",
            goal_conditions=json.dumps(goal_tree),
        ),
    )
    assert response.status_code == 302, response.content[:2000]
    workflow = Workflow.objects.get()
    assert workflow.goal == {"event_type": "purchase", "conditions": goal_tree}
    due_events_process_and_run(event_ids=[ingest("login").pk])
    due_events_process_and_run(event_ids=[ingest("purchase", records={"amount": "20"}).pk])

    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/")
    form = page.context["adminform"].form
    assert (form.initial["goal_event_type"], form.initial["goal_conditions"]) == (
        "purchase",
        goal_tree,
    )
    html = page.content.decode()
    assert "<tr><th>All runs</th><td>1</td><td>1</td><td>100.0%</td></tr>" in html
    assert "<tr><th>1. wait</th><td>1</td><td>0</td><td>0</td><td>0</td><td>0</td></tr>" in html
    converted = staff.get("/admin/automation/workflowrun/?status__exact=converted")
    assert [r.workflow_id for r in converted.context["cl"].result_list] == [workflow.pk]


def test_admin_shows_a_bad_goal_condition_on_its_field(staff: Client, purchase: Any) -> None:
    bad = json.dumps({"property": "amount", "op": "bigger", "value": 1})
    response = staff.post(
        "/admin/automation/workflow/add/",
        form_data(purchase, goal_event_type="purchase", goal_conditions=bad),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["goal_conditions"]
    assert errors["goal_conditions"][0].startswith("goal.conditions.op: Unknown operator")
    assert Workflow.objects.count() == 0
