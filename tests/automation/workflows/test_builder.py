"""The rule builder's server side: its catalogue comes from the registries, the JSON
Schema agrees with the validator, the form round-trips a tree and an action list, the
re-entry choice, errors at their node, and the admin's secret and schedule endpoints.

The JavaScript half of the round trip (every operator, every action type, through the
widget in Chromium) is tests/e2e/test_rule_builder_roundtrip_browser.py; SAMPLE_TREE and
SAMPLE_ACTIONS below are shared with it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.test import Client

from automation.schedules.models import Schedule
from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.admin.builder import (
    ACTION_FIELD_KINDS,
    ReentryField,
    actions_catalogue,
    conditions_catalogue,
)
from automation.workflows.conditions import trees
from automation.workflows.conditions.operators import NUMERIC_OPS, REGISTRY
from automation.workflows.conditions.schema import condition_tree_schema
from automation.workflows.models import Workflow
from project.audit.models import AuditEntry
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

# A value of each operator's shape, on a subject of a type the operator is offered for.
SUBJECT_OF_TYPE = {
    "number": {"property": "amount"},
    "string": {"property": "sku"},
    "datetime": {"property": "paid_at"},
    "list": {"customer": "tags"},
}
VALUE_OF_SHAPE: dict[str, dict[str, Any]] = {
    "number": {"scalar": 100, "pair": [10, 20], "list": [1, 2, 3]},
    "string": {"scalar": "VIP", "list": ["a", "b"], "regex": "^VIP-[0-9]+$"},
    "datetime": {
        "scalar": "2026-01-31T09:00:00Z",
        "pair": ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"],
        "duration": "P7D",
    },
    "list": {"scalar": "gold"},
}


def operator_leaf(op: str) -> dict[str, Any]:
    """A leaf using `op` on the first subject type it is offered for (number, string, …)."""
    operator = REGISTRY[op]
    for kind, subject in SUBJECT_OF_TYPE.items():
        if kind not in operator.types:
            continue
        if operator.shape == "none":
            return {**subject, "op": op}
        if operator.shape in VALUE_OF_SHAPE[kind]:
            return {**subject, "op": op, "value": VALUE_OF_SHAPE[kind][operator.shape]}
    raise AssertionError(f"no sample subject for operator {op}")


# Every operator, and every leaf kind of a workflow, in nested groups.
OPERATOR_LEAVES = [operator_leaf(op) for op in REGISTRY]
SUBJECT_LEAVES = [
    {"event": "occurred_at", "op": "within_last", "value": "PT2H"},
    {"event": "data.cart.size", "op": "gt", "value": 2},
    {"customer": "email", "op": "ends_with", "value": "@example.com"},
    {"customer": "attributes.plan", "op": "in", "value": ["gold", "silver"]},
    {"customer": "tags", "op": "not_exists"},
    {"count": {"event_type": "purchase", "within": "P30D"}, "op": "between", "value": [2, 5]},
    {"first": "purchase"},
    {"first": "purchase", "value": False},
    {"first": "purchase", "op": "eq", "value": True},
    {"segment": "vip"},
]
SAMPLE_TREE: dict[str, Any] = {
    "all": [
        *OPERATOR_LEAVES,
        {"any": SUBJECT_LEAVES},
        {"not": {"all": [{"property": "amount", "op": "lt", "value": 5}]}},
    ]
}
SAMPLE_ACTIONS: list[dict[str, Any]] = [
    {"type": "update_customer", "attributes": {"plan": "gold", "score": 3, "old": None}},
    {"type": "add_tags", "tags": ["vip", "big"]},
    {"type": "remove_tags", "tags": ["trial"]},
    {
        "type": "emit_event",
        "event_type": "purchase",
        "data": {"source": "workflow"},
        "property_records": [{"property_id": "amount", "property_value": 5}],
    },
    {"type": "wait", "duration": "P1DT2H"},
    {
        "type": "split",
        "branches": [
            {"weight": 30, "actions": [{"type": "add_tags", "tags": ["a"]}]},
            {"weight": 70, "actions": []},
        ],
    },
    {"type": "webhook", "url": "http://127.0.0.1:8901/hook", "endpoint_id": "01abc"},
]


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw-tests-only"))
    return client


def test_the_samples_cover_every_operator_and_action_type_and_are_valid(purchase: Any) -> None:
    assert {leaf["op"] for leaf in OPERATOR_LEAVES} == set(REGISTRY)
    assert {spec["type"] for spec in SAMPLE_ACTIONS} == set(ACTIONS)
    trees.validate(SAMPLE_TREE)


def test_catalogue_is_generated_from_the_operator_registry(purchase: Any) -> None:
    catalogue = conditions_catalogue()
    assert list(catalogue["operators"]) == list(REGISTRY)
    for name, operator in REGISTRY.items():
        assert catalogue["operators"][name] == {
            "label": operator.label,
            "types": sorted(operator.types),
            "shape": operator.shape,
            "numeric": name in NUMERIC_OPS,
        }
    assert catalogue["count_ops"] == [op for op in REGISTRY if op in NUMERIC_OPS]
    (declared,) = [t for t in catalogue["event_types"] if t["key"] == "purchase"]
    assert declared["properties"] == [
        {"id": "amount", "name": "", "type": "number"},
        {"id": "paid_at", "name": "", "type": "datetime"},
        {"id": "sku", "name": "", "type": "string"},
    ]
    assert [s["kind"] for s in catalogue["subjects"]][-1] == "segment"
    assert [s["kind"] for s in conditions_catalogue("segment")["subjects"]] == [
        "customer",
        "customer_attribute",
        "customer_tag",
        "count",
        "aggregate",
        "last",
        "segment",
    ]


def test_every_field_of_every_action_type_has_an_editor(purchase: Any) -> None:
    catalogue = actions_catalogue()
    assert [a["type"] for a in catalogue["actions"]] == list(ACTIONS)
    for entry in catalogue["actions"]:
        handler = ACTIONS[entry["type"]]
        assert {f["name"] for f in entry["fields"]} == set(handler.fields)
        assert {f["name"] for f in entry["fields"] if f["required"]} == set(handler.required)
        assert all(f["kind"] == ACTION_FIELD_KINDS[f["name"]] for f in entry["fields"])


def test_json_schema_accepts_what_the_validator_accepts_and_refuses_what_it_refuses() -> None:
    schema = condition_tree_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator(schema)
    for tree in [{}, SAMPLE_TREE, *OPERATOR_LEAVES, *SUBJECT_LEAVES]:
        assert checker.is_valid(tree), tree
    refused = [
        {"all": []},
        {"all": [{"segment": "vip"}], "any": [{"segment": "vip"}]},
        {"property": "amount", "op": "bigger", "value": 1},
        {"property": "amount", "op": "exists", "value": 1},
        {"property": "amount", "op": "between", "value": [1]},
        {"count": {"event_type": "purchase", "within": "P1M"}, "op": "gt", "value": 1},
        {"count": {"event_type": "purchase", "within": "P7D"}, "op": "contains", "value": 1},
        {"first": "purchase", "op": "gt", "value": True},
    ]
    for tree in refused:
        assert not checker.is_valid(tree), tree
        with pytest.raises(trees.ConditionError):
            trees.validate(tree)


def test_admin_form_round_trips_the_tree_and_the_actions(
    staff: Client, purchase: Any, receiver: Receiver
) -> None:
    tree = {"all": [*OPERATOR_LEAVES, {"any": SUBJECT_LEAVES[:6]}]}
    actions = [{**s} for s in SAMPLE_ACTIONS[:-1]] + [
        {"type": "webhook", "url": receiver.url("/h")}
    ]
    response = staff.post(
        "/admin/automation/workflow/add/",
        {
            "name": "Round trip",
            "trigger_event_types": [purchase.pk],
            "conditions": json.dumps(tree),
            "actions": json.dumps(actions),
            "active": "on",
            "reentry_0": "per",
            "reentry_1": "P7D",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    workflow = Workflow.objects.get()
    assert workflow.conditions == tree
    assert workflow.reentry == "once_per_customer_per:P7D"
    assert [{k: v for k, v in a.items() if k != "endpoint_id"} for a in workflow.actions] == actions

    page = staff.get(f"/admin/automation/workflow/{workflow.pk}/change/").content.decode()
    shown = re.search(r'<textarea name="conditions"[^>]*>(.*?)</textarea>', page, re.S)
    assert shown is not None
    assert json.loads(shown.group(1).replace("&quot;", '"')) == tree
    assert 'data-builder="conditions"' in page
    assert 'data-builder="actions"' in page
    assert 'id="conditions-builder-catalogue" type="application/json"' in page
    assert '<option value="per" selected>Once per customer per period</option>' in page


def test_errors_are_handed_to_the_builder_by_node_path(staff: Client, purchase: Any) -> None:
    bad = {"all": [{"segment": "vip"}, {"property": "amount", "op": "between", "value": [1]}]}
    response = staff.post(
        "/admin/automation/workflow/add/",
        {
            "name": "Bad",
            "trigger_event_types": [purchase.pk],
            "conditions": json.dumps(bad),
            "actions": json.dumps([{"type": "wait", "duration": "P1M"}]),
            "reentry": "every_event",
        },
    )
    assert response.status_code == 200
    node_errors = json.loads(
        re.search(
            r'<script id="conditions-builder-errors" type="application/json">(.*?)</script>',
            response.content.decode(),
            re.S,
        ).group(1)
    )
    assert node_errors == {
        "conditions.all[1].value": ["Must be a list of exactly 2 values."],
    }
    # The next form starts clean: node errors belong to one request's form.
    fresh = staff.get("/admin/automation/workflow/add/").content.decode()
    assert '<script id="conditions-builder-errors" type="application/json">{}</script>' in fresh
    errors = response.context["adminform"].form.errors
    assert errors["actions"] == [
        "actions[0].duration: Duration 'P1M': use weeks, days, hours, minutes or seconds, "
        "not months/years."
    ]
    assert Workflow.objects.count() == 0


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("every_event", ["every", ""]),
        ("once_per_customer", ["once", ""]),
        ("once_per_customer_per:P14D", ["per", "P14D"]),
    ],
)
def test_reentry_is_a_choice_plus_a_period_that_compresses_back(
    stored: str, shown: list[str]
) -> None:
    field = ReentryField()
    assert field.widget.decompress(stored) == shown
    assert field.clean(shown) == stored


def test_why_page_gives_the_dry_runs_explanation(
    staff: Client, purchase: Any, make_workflow: Any, ingest: Any
) -> None:
    workflow = make_workflow(conditions={"property": "amount", "op": "gte", "value": 100})
    event = ingest(records={"amount": "40"})
    page = staff.get(f"/admin/automation/workflow/why/?event={event.pk}").content.decode()
    assert "Not run: the conditions do not match" in page
    assert "<td>40</td>" in page
    assert "✘ did not match" in page
    one = staff.get(f"/admin/automation/workflow/{workflow.pk}/why/?event={event.pk}")
    assert "property amount ≥ 100" in one.content.decode()
    missing = staff.get(f"/admin/automation/workflow/{workflow.pk}/why/?event=nope")
    assert "No event with id" in missing.content.decode()


def test_secrets_are_revealed_only_on_post_with_the_endpoint_permission_and_recorded(
    client: Client, purchase: Any, make_workflow: Any, receiver: Receiver
) -> None:
    workflow = make_workflow(actions=[{"type": "webhook", "url": receiver.url("/s")}])
    secret = workflow.endpoint_links.get().endpoint.secret
    marketer = User.objects.create_user("m", "m@example.com", "pw-tests-only", is_staff=True)
    marketer.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client.force_login(marketer)
    url = f"/admin/automation/workflow/{workflow.pk}/secrets/reveal/"
    assert client.post(url).status_code == 403
    marketer.user_permissions.add(Permission.objects.get(codename="change_endpoint"))
    client.force_login(User.objects.get(pk=marketer.pk))
    assert client.get(url).status_code == 405
    assert AuditEntry.objects.filter(action="secret_shown").count() == 0
    shown = client.post(url)
    assert secret in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    (entry,) = AuditEntry.objects.filter(action="secret_shown")
    assert (entry.object_id, entry.actor_name) == (workflow.pk, "m")
    assert secret not in json.dumps(entry.after)


def test_endpoint_secret_is_revealed_and_rotated_from_its_page(
    staff: Client, receiver: Receiver
) -> None:
    from automation.webhooks.services import endpoint_create

    endpoint, secret = endpoint_create(url=receiver.url("/e"))
    shown = staff.post(f"/admin/automation/endpoint/{endpoint.pk}/secret/reveal/")
    assert secret in shown.content.decode()
    assert AuditEntry.objects.filter(action="secret_shown", object_id=endpoint.pk).count() == 1
    rotated = staff.post(f"/admin/automation/endpoint/{endpoint.pk}/secret/rotate/")
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == secret
    assert endpoint.secret in rotated.content.decode()


def test_schedule_preview_describes_the_expression_and_lists_five_runs(staff: Client) -> None:
    with time_machine.travel(datetime(2026, 12, 7, 8, 0, tzinfo=UTC), tick=False):
        answer = staff.get(
            "/admin/automation/schedule/preview/", {"interval": "0 9 * * 1-5", "timezone": ""}
        )
        assert answer.json() == {
            "interval_description": "At 09:00, Monday through Friday",
            "next_runs": [f"2026-12-{day:02d}T09:00:00Z" for day in (7, 8, 9, 10, 11)],
        }
        paris = staff.get(
            "/admin/automation/schedule/preview/",
            {"interval": "0 9 * * *", "timezone": "Europe/Paris"},
        )
        assert paris.json()["next_runs"][0] == "2026-12-08T08:00:00Z"
        bad = staff.get("/admin/automation/schedule/preview/", {"interval": "61 * * * *"})
        assert bad.status_code == 400
        assert "error" in bad.json()


def test_schedule_added_in_the_admin_is_created_by_the_service(
    staff: Client, receiver: Receiver
) -> None:
    end = datetime.now(UTC) + timedelta(days=30)
    response = staff.post(
        "/admin/automation/schedule/add/",
        {
            "owner": "owner@example.com",
            "callback_url": receiver.url("/tick"),
            "interval": "*/15 * * * *",
            "timezone": "",
            "end_date_0": end.strftime("%Y-%m-%d"),
            "end_date_1": end.strftime("%H:%M:%S"),
            "context": '{"campaign": "spring"}',
            "tag_text": "a, b",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    schedule = Schedule.objects.get()
    assert (schedule.context, schedule.tags, schedule.status) == (
        {"campaign": "spring"},
        ["a", "b"],
        "INACTIVE",
    )
    assert schedule.endpoint is not None
    assert AuditEntry.objects.filter(object_type="schedule", action="created").count() == 1

    refused = staff.post(
        "/admin/automation/schedule/add/",
        {
            "owner": "owner@example.com",
            "callback_url": receiver.url("/tick"),
            "interval": "* * * * * *",
            "end_date_0": end.strftime("%Y-%m-%d"),
            "end_date_1": "00:00:00",
        },
    )
    assert refused.status_code == 200
    assert "minimum interval" in str(refused.context["adminform"].form.errors["interval"])
    assert Schedule.objects.count() == 1


def test_hostile_input_to_the_builder_and_previews_is_refused_without_writing(
    staff: Client, purchase: Any
) -> None:
    nul = json.dumps({"property": "sku", "op": "eq", "value": "a\u0000b"})
    deep = "[" * 100_000 + "]" * 100_000
    for conditions in (nul, deep, '{"property": "sku", "op": "eq", "value": "\\ud800"}'):
        response = staff.post(
            "/admin/automation/workflow/add/",
            {
                "name": "Hostile",
                "trigger_event_types": [purchase.pk],
                "conditions": conditions,
                "actions": "[]",
                "reentry": "every_event",
            },
        )
        assert response.status_code == 200
        assert "conditions" in response.context["adminform"].form.errors
    assert Workflow.objects.count() == 0
    for interval in ("0 9 * * *\u0000", "1" * 10_000):
        answer = staff.get("/admin/automation/schedule/preview/", {"interval": interval})
        assert answer.status_code == 400
    for event_id in ("a\u0000b", "x" * 500):
        page = staff.get("/admin/automation/workflow/why/", {"event": event_id})
        assert page.status_code == 200
        assert "No event" in page.content.decode()
