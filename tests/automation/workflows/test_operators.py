"""Every condition operator of the registry, with coercion and missing values."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from automation.workflows.conditions.operators import REGISTRY
from tests.automation.workflows.helpers import NOW, context, matches

NUMBER = {"amount": "number"}
DATETIME = {"paid_at": "datetime"}
BOOLEAN = {"gift": "boolean"}


def prop(op: str, value: Any = None, name: str = "amount") -> dict[str, Any]:
    leaf: dict[str, Any] = {"property": name, "op": op}
    if value is not None:
        leaf["value"] = value
    return leaf


@pytest.mark.parametrize(
    ("op", "value", "stored", "expected"),
    [
        ("eq", 100, "100", True),
        ("eq", "100.0", "100", True),  # numbers compare as numbers, not text
        ("eq", 100, "99", False),
        ("ne", 100, "99", True),
        ("ne", 100, "100.00", False),
        ("gt", 99, "100", True),
        ("gt", 100, "100", False),
        ("gte", 100, "100", True),
        ("gte", 101, "100", False),
        ("lt", 101, "100", True),
        ("lt", 100, "100", False),
        ("lte", 100, "100", True),
        ("lte", 99, "100", False),
        ("gt", 9, "10", True),  # as text "10" < "9"; as numbers 10 > 9
        ("between", [10, 100], "10", True),
        ("between", [10, 100], "100", True),
        ("between", [10, 100], "100.01", False),
        ("in", [1, 2, 100], "100", True),
        ("in", [1, 2], "100", False),
        ("not_in", [1, 2], "100", True),
        ("not_in", [100, 2], "100", False),
        ("gt", "not-a-number", "100", False),  # expected value that cannot coerce: no match
    ],
)
def test_number_property_operators_compare_as_numbers(
    op: str, value: Any, stored: str, expected: bool
) -> None:
    ctx = context(properties={"amount": stored}, types=NUMBER)
    assert matches(prop(op, value), ctx) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "2026-03-01T10:00:00+00:00", True),
        ("eq", "2026-03-01T11:00:00+01:00", True),  # same instant, other offset
        ("gt", "2026-03-01T09:59:59Z", True),
        ("lt", "2026-03-01T09:59:59Z", False),
        ("between", ["2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"], True),
        ("within_last", "PT2H", True),
        ("within_last", "PT1H", False),
        ("more_than_ago", "PT1H", True),
        ("more_than_ago", "PT2H", False),
    ],
)
def test_datetime_property_operators_compare_instants(op: str, value: Any, expected: bool) -> None:
    ctx = context(properties={"paid_at": "2026-03-01T10:00:00Z"}, types=DATETIME)
    assert matches(prop(op, value, "paid_at"), ctx) is expected


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [(True, "true", True), ("yes", "true", True), (False, "true", False), ("false", "0", True)],
)
def test_boolean_property_eq_compares_booleans(value: Any, stored: str, expected: bool) -> None:
    ctx = context(properties={"gift": stored}, types=BOOLEAN)
    assert matches(prop("eq", value, "gift"), ctx) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("contains", "ell", True),
        ("contains", "xyz", False),
        ("starts_with", "he", True),
        ("starts_with", "lo", False),
        ("ends_with", "lo", True),
        ("ends_with", "he", False),
        ("matches", "^h.l+o$", True),
        ("matches", "^H", False),
        ("eq", "hello", True),
        ("in", ["hi", "hello"], True),
        ("gt", "a", True),  # strings order as text
    ],
)
def test_string_operators(op: str, value: Any, expected: bool) -> None:
    ctx = context(data={"greeting": "hello"})
    assert matches({"event": "data.greeting", "op": op, "value": value}, ctx) is expected


def test_string_property_declared_as_string_compares_as_text() -> None:
    ctx = context(properties={"code": "10"}, types={"code": "string"})
    assert matches({"property": "code", "op": "gt", "value": "9"}, ctx) is False
    assert matches({"property": "code", "op": "eq", "value": 10}, ctx) is True


@pytest.mark.parametrize("op", sorted(set(REGISTRY) - {"exists", "not_exists"}))
def test_missing_value_never_matches(op: str) -> None:
    value = {
        "between": [1, 2],
        "in": [1],
        "not_in": [1],
        "within_last": "P1D",
        "more_than_ago": "P1D",
        "matches": ".*",
    }.get(op, 1)
    ctx = context(properties={}, types=NUMBER)
    assert matches(prop(op, value), ctx) is False
    assert matches({"event": "data.nope.deeper", "op": op, "value": value}, ctx) is False
    assert matches({"customer": "attributes.nope", "op": op, "value": value}, ctx) is False


def test_unparseable_stored_value_counts_as_missing() -> None:
    ctx = context(properties={"amount": "lots"}, types=NUMBER)
    assert matches(prop("gt", 1), ctx) is False
    assert matches(prop("exists"), ctx) is False
    assert matches(prop("not_exists"), ctx) is True


def test_exists_and_not_exists() -> None:
    ctx = context(data={"a": 0, "b": None}, properties={"amount": "0"}, types=NUMBER)
    assert matches({"event": "data.a", "op": "exists"}, ctx) is True
    assert matches({"event": "data.b", "op": "exists"}, ctx) is False  # null is not a value
    assert matches({"event": "data.c", "op": "not_exists"}, ctx) is True
    assert matches(prop("exists"), ctx) is True
    assert matches({"property": "other", "op": "not_exists"}, ctx) is True


def test_json_data_numbers_compare_as_numbers_and_paths_index_lists() -> None:
    ctx = context(data={"cart": {"items": [{"price": 12.5}, {"price": 3}]}})
    assert matches({"event": "data.cart.items.0.price", "op": "gt", "value": "12"}, ctx) is True
    assert matches({"event": "data.cart.items.1.price", "op": "eq", "value": 3.0}, ctx) is True
    assert matches({"event": "data.cart.items.2.price", "op": "exists"}, ctx) is False


def test_event_fields_occurred_at_and_external_id() -> None:
    ctx = context(occurred_at=NOW - timedelta(minutes=30))
    assert matches({"event": "occurred_at", "op": "within_last", "value": "PT1H"}, ctx) is True
    assert matches({"event": "occurred_at", "op": "more_than_ago", "value": "PT10M"}, ctx)
    assert matches({"event": "external_id", "op": "starts_with", "value": "ref-"}, ctx) is True
    assert matches({"event": "event_type", "op": "eq", "value": "purchase"}, ctx) is True


def test_customer_tags_and_attributes() -> None:
    ctx = context(attributes={"country": "CZ", "age": 30}, tags=["vip", "beta"])
    assert matches({"customer": "tags", "op": "contains", "value": "vip"}, ctx) is True
    assert matches({"customer": "tags", "op": "contains", "value": "churned"}, ctx) is False
    assert matches({"customer": "tags", "op": "in", "value": ["beta", "x"]}, ctx) is True
    assert matches({"customer": "tags", "op": "not_in", "value": ["x", "y"]}, ctx) is True
    assert matches({"customer": "tags", "op": "not_in", "value": ["vip"]}, ctx) is False
    assert matches({"customer": "attributes.country", "op": "in", "value": ["CZ", "SK"]}, ctx)
    assert matches({"customer": "attributes.age", "op": "between", "value": [18, 30]}, ctx)
    assert matches({"customer": "email", "op": "ends_with", "value": "@example.com"}, ctx)


def test_matches_uses_a_linear_time_engine_on_hostile_input() -> None:
    # (a+)+$ backtracks exponentially in Python's re; RE2 answers at once.
    ctx = context(data={"text": "a" * 50_000 + "!"})
    started = time.monotonic()
    assert matches({"event": "data.text", "op": "matches", "value": "(a+)+$"}, ctx) is False
    assert time.monotonic() - started < 1.0


def test_within_last_includes_the_edge_and_excludes_the_future() -> None:
    edge = context(data={"at": (NOW - timedelta(days=7)).isoformat()})
    future = context(data={"at": (NOW + timedelta(seconds=1)).isoformat()})
    leaf = {"event": "data.at", "op": "within_last", "value": "P7D"}
    assert matches(leaf, edge) is True
    assert matches(leaf, future) is False
    older = {"event": "data.at", "op": "more_than_ago", "value": "P7D"}
    assert matches(older, edge) is False  # exactly 7 days is not *more* than 7 days
