"""The builder's JSON round trip in the browser: every operator and every action type.

The widget (automation/static/automation/builder.js) is rendered by its form field,
loaded into the session's Chromium without a server, and (1) loads a tree or action
list and writes back exactly the same JSON, each node in its own picker rather than a raw fallback,
and (2) makes each operator's leaf and each action type's spec from clicks and typed
values alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.admin.builder import ActionListField, ConditionTreeField
from automation.workflows.conditions.operators import REGISTRY
from events_app.models import EventType, PropertyDefinition
from tests.automation.workflows.test_builder import (
    OPERATOR_LEAVES,
    SAMPLE_ACTIONS,
    SAMPLE_TREE,
    operator_leaf,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

SCRIPT = Path(__file__).resolve().parents[2] / "automation/static/automation/builder.js"
SEGMENT_TREE = {
    "any": [
        {
            "aggregate": {"event_type": "purchase", "property": "amount", "fn": "sum"},
            "op": "gte",
            "value": 500,
        },
        {
            "aggregate": {
                "event_type": "purchase",
                "property": "amount",
                "fn": "count",
                "within": "P30D",
            },
            "op": "gt",
            "value": 2,
        },
        {"last": "purchase", "op": "more_than", "value": "P14D"},
        {"count": {"event_type": "purchase"}, "op": "eq", "value": 0},
        {"customer": "attributes.plan", "op": "eq", "value": "gold"},
        {"not": {"segment": "vip"}},
    ]
}


@pytest.fixture
def purchase(db: None) -> EventType:
    event_type = EventType.objects.create(key="purchase", name="Purchase")
    for prop, value_type in [("amount", "number"), ("paid_at", "datetime"), ("sku", "string")]:
        PropertyDefinition.objects.create(
            event_type=event_type, property_id=prop, value_type=value_type
        )
    return event_type


@pytest.fixture
def widget_page(browser: Browser, purchase: EventType) -> Iterator[Any]:
    """Render builder widgets (by their form fields) into a blank Chromium page."""
    page = browser.new_page()

    def show(*widgets: str) -> Page:
        trigger = (
            '<select id="id_trigger_event_types" multiple>'
            f'<option value="{purchase.pk}" selected>purchase</option></select>'
        )
        page.set_content(f"<!doctype html><html><body>{trigger}{''.join(widgets)}</body></html>")
        page.add_script_tag(path=str(SCRIPT))
        return page

    yield show
    page.close()


def conditions(value: Any, **field: Any) -> str:
    field.setdefault("triggers", "#id_trigger_event_types")
    name = field.get("root", "conditions")
    return ConditionTreeField(**field).widget.render(name, json.dumps(value))


def actions(value: Any) -> str:
    return ActionListField().widget.render("actions", json.dumps(value))


def model(page: Page, builder: str = "conditions") -> Any:
    return page.evaluate(
        "b => JSON.parse(document.querySelector(`[data-builder=${b}] > textarea`).value)", builder
    )


def test_every_operator_and_leaf_kind_loads_into_its_picker_and_writes_back_the_same_json(
    widget_page: Any,
) -> None:
    page = widget_page(conditions(SAMPLE_TREE))
    assert model(page) == SAMPLE_TREE
    assert page.locator('.hb-leaf[data-kind="raw"]').count() == 0
    for index, leaf in enumerate(OPERATOR_LEAVES):
        op = page.locator(f'.hb-leaf[data-path="conditions.all[{index}]"] select.hb-op')
        assert op.input_value() == leaf["op"]
    # Through the advanced view and back: still the same JSON.
    page.click('[data-builder="conditions"] button.hb-toggle')
    page.click('[data-builder="conditions"] button.hb-toggle')
    assert model(page) == SAMPLE_TREE


def test_a_segments_leaf_kinds_round_trip_in_the_segment_flavour(widget_page: Any) -> None:
    page = widget_page(conditions(SEGMENT_TREE, flavour="segment", root="condition", triggers=None))
    assert model(page) == SEGMENT_TREE
    kinds = page.locator(".hb-leaf").evaluate_all("nodes => nodes.map(n => n.dataset.kind)")
    assert kinds == ["aggregate", "aggregate", "last", "count", "customer_attribute", "segment"]


def test_every_action_type_loads_into_its_editor_and_writes_back_the_same_json(
    widget_page: Any,
) -> None:
    page = widget_page(actions(SAMPLE_ACTIONS))
    assert model(page, "actions") == SAMPLE_ACTIONS
    types = page.locator(".hb-action").evaluate_all("nodes => nodes.map(n => n.dataset.type)")
    assert types == [spec["type"] for spec in SAMPLE_ACTIONS]


def fill_value(leaf: Any, kind: str, shape: str, value: Any) -> None:
    """Type `value` into the leaf's value input(s) as a marketer would."""
    if shape == "none":
        return
    if shape in {"duration", "regex"}:
        leaf.locator("input.hb-duration, input.hb-input").last.fill(str(value))
        return
    values = value if isinstance(value, list) else [value]
    if shape == "list":
        for _ in values[1:]:
            leaf.locator("button.hb-list-add").click()
    inputs = leaf.locator(
        {"number": "input.hb-number", "datetime": "input.hb-datetime"}.get(kind, "input.hb-input")
    )
    for index, item in enumerate(values):
        text = str(item).removesuffix("Z") if kind == "datetime" else str(item)
        inputs.nth(index).fill(text)


@pytest.mark.parametrize("op", list(REGISTRY))
def test_each_operator_is_built_by_picking_and_typing(widget_page: Any, op: str) -> None:
    expected = operator_leaf(op)
    page = widget_page(conditions({}))
    page.click("button.hb-add-leaf")
    leaf = page.locator('.hb-leaf[data-path="conditions.all[0]"]')
    if "customer" in expected:
        leaf.locator("select.hb-subject").select_option("customer_tag")
        kind = "list"
    else:
        leaf.locator("select.hb-target").select_option(expected["property"])
        kind = {"amount": "number", "sku": "string", "paid_at": "datetime"}[expected["property"]]
    leaf = page.locator('.hb-leaf[data-path="conditions.all[0]"]')
    leaf.locator("select.hb-op").select_option(op)
    fill_value(leaf, kind, REGISTRY[op].shape, expected.get("value"))
    assert model(page) == {"all": [expected]}


def test_each_action_type_is_built_by_picking_and_typing(widget_page: Any) -> None:
    page = widget_page(actions([]))
    box = page.locator('[data-builder="actions"]')

    def add(action_type: str) -> Any:
        box.locator("select.hb-new-action").select_option(action_type)
        box.locator("button.hb-add-action").click()
        return box.locator(".hb-action").last

    card = add("update_customer")
    for index, (key, value) in enumerate([("plan", "gold"), ("score", "3"), ("old", "null")]):
        if index:
            card.locator("button.hb-row-add").click()
        card.locator("input.hb-key").nth(index).fill(key)
        card.locator("input.hb-val").nth(index).fill(value)
    card = add("add_tags")
    card.locator("input.hb-input").first.fill("vip")
    card.locator("button.hb-list-add").click()
    card.locator("input.hb-input").nth(1).fill("big")
    add("remove_tags").locator("input.hb-input").fill("trial")
    card = add("emit_event")
    card.locator("select.hb-event-type").select_option("purchase")
    card.locator("button.hb-add-field", has_text="Data").click()
    data = box.locator(".hb-action").nth(3).locator("textarea.hb-json")
    data.fill('{"source": "workflow"}')
    data.dispatch_event("change")
    box.locator(".hb-action").nth(3).locator("button.hb-add-field", has_text="Property").click()
    box.locator(".hb-action").nth(3).locator("button.hb-row-add").click()
    card = box.locator(".hb-action").nth(3)
    card.locator("input.hb-key").fill("amount")
    card.locator("input.hb-val").fill("5")
    add("wait").locator("input.hb-duration").fill("P1DT2H")
    # A split's branches are edited as JSON (two even, empty branches to start from).
    branches = add("split").locator("textarea.hb-json")
    assert json.loads(branches.input_value()) == [
        {"weight": 50, "actions": []},
        {"weight": 50, "actions": []},
    ]
    split = next(spec for spec in SAMPLE_ACTIONS if spec["type"] == "split")
    branches.fill(json.dumps(split["branches"]))
    branches.dispatch_event("change")
    add("webhook").locator("input.hb-url").fill("http://127.0.0.1:8901/hook")

    expected = [{k: v for k, v in spec.items() if k != "endpoint_id"} for spec in SAMPLE_ACTIONS]
    assert model(page, "actions") == expected
    assert {spec["type"] for spec in expected} == set(ACTIONS)


def test_durations_are_echoed_in_words_and_refused_months_are_flagged(widget_page: Any) -> None:
    page = widget_page(actions([{"type": "wait", "duration": "P1W2DT3H"}]))
    echo = page.locator(".hb-duration-box .hb-echo")
    assert echo.text_content() == "= 1 week 2 days 3 hours"
    page.locator("input.hb-duration").fill("P1M")
    assert "hb-echo-bad" in (echo.get_attribute("class") or "")
