"""Condition trees: validation messages by path, nested groups, the explanation,
and hypothesis properties (the validator rejects malformed trees; the evaluator
never raises on a valid tree and any event)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.workflows.conditions.operators import REGISTRY
from automation.workflows.conditions.trees import ConditionError, validate
from automation.workflows.engine import CompiledWorkflow, CountKey, EventContext
from automation.workflows.engine import matches as engine_matches
from tests.automation.workflows.helpers import NOW, context, explain, matches


def errors_of(tree: Any) -> dict[str, list[str]]:
    with pytest.raises(ConditionError) as caught:
        validate(tree)
    return caught.value.errors


def test_valid_tree_with_every_subject_passes() -> None:
    validate(
        {
            "all": [
                {"property": "amount", "op": "gte", "value": 100},
                {"event": "data.channel", "op": "eq", "value": "web"},
                {"customer": "attributes.country", "op": "in", "value": ["CZ", "SK"]},
                {"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 3},
                {"first": "purchase"},
                {"not": {"any": [{"customer": "tags", "op": "contains", "value": "vip"}]}},
            ]
        }
    )
    validate({})  # the empty tree: the trigger alone decides


@pytest.mark.parametrize(
    ("tree", "path", "fragment"),
    [
        (
            {"all": [{"property": "a", "op": "eq", "value": 1}, {"property": "b", "op": "zz"}]},
            "conditions.all[1].op",
            "Unknown operator 'zz'",
        ),
        ({"any": []}, "conditions.any", "non-empty list"),
        ({"all": {"property": "a"}}, "conditions.all", "non-empty list"),
        ({"all": [1]}, "conditions.all[0]", "Must be an object"),
        (
            {"property": "a", "event": "b", "op": "eq", "value": 1},
            "conditions",
            "exactly one subject",
        ),
        ({"op": "eq", "value": 1}, "conditions", "exactly one subject"),
        ({"property": "a", "op": "eq"}, "conditions.value", "needs a value"),
        ({"property": "a", "op": "exists", "value": 1}, "conditions.value", "takes no value"),
        ({"property": "a", "op": "between", "value": [1]}, "conditions.value", "exactly 2"),
        ({"property": "a", "op": "in", "value": 3}, "conditions.value", "Must be a list"),
        (
            {"property": "a", "op": "eq", "value": [1]},
            "conditions.value",
            "Must be a string, number",
        ),
        ({"property": "a", "op": "matches", "value": "(unclosed"}, "conditions.value", "RE2"),
        (
            {"event": "data.x", "op": "within_last", "value": "P1M"},
            "conditions.value",
            "not months",
        ),
        (
            {"event": "data.x", "op": "within_last", "value": "soon"},
            "conditions.value",
            "not an ISO 8601 duration",
        ),
        ({"event": "colour", "op": "exists"}, "conditions.event", "Unknown event field"),
        (
            {"customer": "shoe_size", "op": "exists"},
            "conditions.customer",
            "Unknown customer field",
        ),
        ({"event": "data..x", "op": "exists"}, "conditions.event", "empty segment"),
        (
            {"count": {"event_type": "p"}, "op": "gte", "value": 1},
            "conditions.count.within",
            "duration",
        ),
        (
            {"count": {"event_type": "p", "within": "P1D"}, "op": "contains", "value": 1},
            "conditions.op",
            "A count compares",
        ),
        (
            {"count": {"event_type": "p", "within": "P1D"}, "op": "gte", "value": 1.5},
            "conditions.value",
            "whole numbers",
        ),
        ({"first": "p", "op": "gt"}, "conditions.op", "no op"),
        ({"property": "a", "op": "eq", "value": 1, "colour": 2}, "conditions", "Unknown key"),
        (
            {"all": [{"property": "a", "op": "eq", "value": 1}], "any": []},
            "conditions",
            "exactly one key",
        ),
        (
            {"not": {"not": {"all": [{"any": [{"property": "a", "op": "nope"}]}]}}},
            "conditions.not.not.all[0].any[0].op",
            "Unknown operator",
        ),
    ],
)
def test_invalid_tree_is_reported_at_the_faulty_node(tree: Any, path: str, fragment: str) -> None:
    errors = errors_of(tree)
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors[path]


def test_every_faulty_node_is_reported_not_only_the_first() -> None:
    errors = errors_of({"all": [{"property": "a", "op": "zz"}, {"event": "nope", "op": "exists"}]})
    assert sorted(errors) == ["conditions.all[0].op", "conditions.all[1].event"]


def test_nested_groups_combine_all_any_not() -> None:
    tree = {
        "all": [
            {"property": "amount", "op": "gte", "value": 100},
            {
                "any": [
                    {"customer": "attributes.country", "op": "eq", "value": "CZ"},
                    {"not": {"customer": "tags", "op": "contains", "value": "blocked"}},
                ]
            },
        ]
    }
    types = {"amount": "number"}
    cz = context(
        properties={"amount": "150"}, types=types, attributes={"country": "CZ"}, tags=["blocked"]
    )
    de_blocked = context(
        properties={"amount": "150"}, types=types, attributes={"country": "DE"}, tags=["blocked"]
    )
    de_free = context(properties={"amount": "150"}, types=types, attributes={"country": "DE"})
    small = context(properties={"amount": "50"}, types=types, attributes={"country": "CZ"})
    assert [matches(tree, c) for c in (cz, de_blocked, de_free, small)] == [
        True,
        False,
        True,
        False,
    ]


def test_explanation_lists_every_leaf_with_values_compared() -> None:
    ctx = context(
        properties={"amount": "150.5"},
        types={"amount": "number"},
        data={"channel": "web"},
        counts={CountKey("t-purchase", __import__("datetime").timedelta(days=7)): 2},
        first={"t-purchase": False},
    )
    tree = {
        "all": [
            {"property": "amount", "op": "gte", "value": 100},
            {"event": "data.channel", "op": "eq", "value": "app"},
            {"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 3},
            {"first": "purchase"},
            {"customer": "attributes.missing", "op": "exists"},
        ]
    }
    result = explain(tree, ctx, purchase="t-purchase").as_dict()
    assert result == {
        "matched": False,
        "leaves": [
            {
                "path": "conditions.all[0]",
                "property": "amount",
                "op": "gte",
                "expected": 100,
                "actual": 150.5,
                "missing": False,
                "matched": True,
            },
            {
                "path": "conditions.all[1]",
                "event": "data.channel",
                "op": "eq",
                "expected": "app",
                "actual": "web",
                "missing": False,
                "matched": False,
            },
            {
                "path": "conditions.all[2]",
                "count": {"event_type": "purchase", "within": "P7D"},
                "op": "gte",
                "expected": 3,
                "actual": 2,
                "missing": False,
                "matched": False,
            },
            {
                "path": "conditions.all[3]",
                "first": "purchase",
                "op": "eq",
                "expected": True,
                "actual": False,
                "missing": False,
                "matched": False,
            },
            {
                "path": "conditions.all[4]",
                "customer": "attributes.missing",
                "op": "exists",
                "expected": None,
                "actual": None,
                "missing": True,
                "matched": False,
            },
        ],
    }


def test_empty_tree_matches_with_no_leaves() -> None:
    result = explain({}, context()).as_dict()
    assert result == {"matched": True, "leaves": []}


# ---------------------------------------------------------------- hypothesis

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
subjects = st.one_of(
    st.builds(lambda p: {"property": p}, st.sampled_from(["amount", "paid_at", "gift", "code"])),
    st.builds(
        lambda p: {"event": p},
        st.sampled_from(
            [
                "data.a",
                "data.a.b",
                "data.list.0",
                "occurred_at",
                "external_id",
                "created_at",
                "depth",
            ]
        ),
    ),
    st.builds(
        lambda p: {"customer": p},
        st.sampled_from(["tags", "attributes.a", "email", "created_at", "attributes.a.b"]),
    ),
)
op_values = {
    "between": st.lists(scalars.filter(lambda v: v is not None), min_size=2, max_size=2),
    "in": st.lists(scalars.filter(lambda v: v is not None), min_size=1, max_size=4),
    "not_in": st.lists(scalars.filter(lambda v: v is not None), min_size=1, max_size=4),
    "matches": st.sampled_from(["^a", "b+", "(x|y)*z", "[0-9]{2}", "(a+)+$"]),
    "within_last": st.sampled_from(["PT1H", "P7D", "PT30S", "P2W"]),
    "more_than_ago": st.sampled_from(["PT1H", "P7D", "PT30S"]),
}


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    leaf = dict(draw(subjects))
    op = draw(st.sampled_from(sorted(REGISTRY)))
    leaf["op"] = op
    if REGISTRY[op].takes_value:
        leaf["value"] = draw(op_values.get(op, scalars.filter(lambda v: v is not None)))
    return leaf


valid_trees = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)


@st.composite
def contexts(draw: st.DrawFn) -> EventContext:
    stored = st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            ["100", "1e3", "-0.5", "NaN", "Infinity", "2026-03-01T10:00:00Z", "true", "no"]
        ),
    )
    return context(
        data=draw(st.dictionaries(st.sampled_from(["a", "list", "b"]), json_values, max_size=3)),
        properties=draw(
            st.dictionaries(
                st.sampled_from(["amount", "paid_at", "gift", "code"]), stored, max_size=4
            )
        ),
        types={"amount": "number", "paid_at": "datetime", "gift": "boolean", "code": "string"},
        attributes=draw(st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2)),
        tags=draw(st.one_of(st.lists(st.text(max_size=5), max_size=3))),
        occurred_at=draw(
            st.datetimes(
                min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
                max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                timezones=st.just(UTC),
            )
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=valid_trees, ctx=contexts())
def test_evaluator_never_raises_on_a_valid_tree_and_any_event(
    tree: dict[str, Any], ctx: EventContext
) -> None:
    validate(tree)
    result = explain(tree, ctx).as_dict()
    assert isinstance(result["matched"], bool)
    assert len(result["leaves"]) >= 1
    # The workers' short-cut path answers exactly like the explaining one.
    compiled = CompiledWorkflow(workflow_id="w", conditions=tree)
    assert engine_matches(compiled, ctx) is result["matched"]


malformed_nodes = st.one_of(
    st.builds(
        lambda v: v,
        st.one_of(
            st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.none()
        ),
    ),
    st.just({}),
    st.just({"all": []}),
    st.builds(lambda c: {"any": c}, st.one_of(st.integers(), st.text(max_size=3), st.none())),
    st.builds(
        lambda op: {"property": "a", "op": op, "value": 1},
        st.text(max_size=8).filter(lambda s: s not in REGISTRY),
    ),
    st.builds(
        lambda s: {s: "x", "op": "eq", "value": 1},
        st.text(max_size=8).filter(
            lambda s: (
                s not in {"property", "event", "customer", "count", "first", "all", "any", "not"}
            )
        ),
    ),
    st.just({"property": "a", "event": "data.a", "op": "eq", "value": 1}),
    st.just({"property": "a", "op": "between", "value": 1}),
    st.just({"property": "a", "op": "eq"}),
)


@settings(max_examples=300, deadline=None)
@given(
    bad=malformed_nodes,
    good=st.lists(leaves(), max_size=3),
    position=st.integers(0, 3),
    group=st.sampled_from(["all", "any"]),
)
def test_validator_rejects_a_tree_with_any_malformed_node(
    bad: Any, good: list[dict[str, Any]], position: int, group: str
) -> None:
    children = list(good)
    index = min(position, len(children))
    children.insert(index, bad)
    with pytest.raises(ConditionError) as caught:
        validate({group: children})
    assert any(path.startswith(f"conditions.{group}[{index}]") for path in caught.value.errors), (
        caught.value.errors
    )


def test_hypothesis_contexts_are_evaluated_at_a_fixed_now() -> None:
    # Guard for the properties above: they rely on the helper's frozen `now`.
    assert context().now == NOW


@pytest.mark.parametrize("duration", ["P9999999999W", "PT99999999999999H"])
def test_a_duration_longer_than_any_date_range_is_refused_at_its_path(duration: str) -> None:
    errors = errors_of(
        {"count": {"event_type": "purchase", "within": duration}, "op": "gte", "value": 1}
    )
    assert errors == {
        "conditions.count.within": [f"Within '{duration}' is longer than any date range."]
    }
