"""Segment conditions: the workflows' grammar with the customer leaf kinds, validated
with messages by node path; references and cycles checked at save."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation.segments.conditions import LEAF_KINDS, Refs, validate
from automation.segments.engine import CompiledSegment
from automation.segments.facts import AggregateKey, CountKey, CustomerFacts, FutureKey, LastKey
from automation.segments.models import Segment
from automation.segments.services import SegmentInput, segment_create, segment_update
from automation.workflows.conditions.trees import ConditionError
from events_app.models import EventType
from project.errors import ValidationFailed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def errors_of(condition: Any) -> dict[str, list[str]]:
    with pytest.raises(ConditionError) as caught:
        validate(condition)
    return caught.value.errors


def test_every_leaf_kind_validates() -> None:
    assert set(LEAF_KINDS) == {"customer", "count", "aggregate", "last", "segment"}
    validate(
        {
            "all": [
                {"customer": "attributes.country", "op": "in", "value": ["CZ", "SK"]},
                {"count": {"event_type": "purchase", "within": "P30D"}, "op": "eq", "value": 0},
                {"count": {"event_type": "purchase"}, "op": "gte", "value": 3},
                {
                    "aggregate": {
                        "event_type": "purchase",
                        "property": "amount",
                        "fn": "avg",
                        "within": "P90D",
                    },
                    "op": "between",
                    "value": [10, 99.5],
                },
                {"last": "login", "op": "more_than", "value": "P14D"},
                {"not": {"segment": "vip"}},
            ]
        }
    )


@pytest.mark.parametrize(
    ("condition", "path", "fragment"),
    [
        ({"property": "amount", "op": "eq", "value": 1}, "condition", "'property' is not a leaf"),
        ({"all": [{"event": "data.x", "op": "exists"}]}, "condition.all[0]", "not a leaf here"),
        (
            {
                "any": [
                    {
                        "aggregate": {"event_type": "p", "property": "a", "fn": "median"},
                        "op": "gte",
                        "value": 1,
                    }
                ]
            },
            "condition.any[0].aggregate.fn",
            "sum, min, max, avg, count",
        ),
        (
            {
                "aggregate": {"event_type": "p", "property": "a", "fn": "sum"},
                "op": "gte",
                "value": "x",
            },
            "condition.value",
            "numbers",
        ),
        (
            {
                "aggregate": {"event_type": "p", "property": "a", "fn": "sum"},
                "op": "contains",
                "value": 1,
            },
            "condition.op",
            "Compares with",
        ),
        (
            {"count": {"event_type": "p"}, "op": "gte", "value": -1},
            "condition.value",
            "whole numbers",
        ),
        (
            {"count": {"event_type": "p", "within": "P1M"}, "op": "gte", "value": 1},
            "condition.count.within",
            "months",
        ),
        (
            {"count": {"event_type": "p", "extra": 1}, "op": "gte", "value": 1},
            "condition.count",
            "Unknown key",
        ),
        ({"last": "login", "op": "before", "value": "P1D"}, "condition.op", "more_than, within"),
        ({"last": "login", "op": "within", "value": "soon"}, "condition.value", "ISO 8601"),
        ({"last": "", "op": "within", "value": "P1D"}, "condition.last", "event type"),
        ({"not": {"segment": 7}}, "condition.not.segment", "segment key or id"),
        ({"segment": "vip", "op": "eq"}, "condition", "Unknown key"),
        ({"customer": "birthday", "op": "exists"}, "condition.customer", "Unknown customer field"),
    ],
)
def test_invalid_leaves_are_refused_at_their_path(condition: Any, path: str, fragment: str) -> None:
    errors = errors_of(condition)
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors


def test_more_than_counts_a_customer_who_never_did_it() -> None:
    compiled = CompiledSegment({"last": "login", "op": "more_than", "value": "P14D"}, Refs())
    never = CustomerFacts(customer={}, values={LastKey("login"): None, FutureKey("login"): None})
    recent = CustomerFacts(
        customer={}, values={LastKey("login"): NOW - timedelta(days=1), FutureKey("login"): None}
    )
    assert compiled.decide(never, NOW).member is True
    assert compiled.decide(never, NOW).next_check_at is None
    assert compiled.decide(recent, NOW).member is False
    # It changes just after the 14 days since the last login have passed.
    assert compiled.decide(recent, NOW).next_check_at == NOW + timedelta(days=13, microseconds=1)


def test_the_next_check_is_the_earliest_change_of_the_leaves_holding_the_answer() -> None:
    compiled = CompiledSegment(
        {
            "any": [
                {"count": {"event_type": "t", "within": "P7D"}, "op": "gte", "value": 1},
                {
                    "aggregate": {"event_type": "t", "property": "a", "fn": "sum", "within": "P2D"},
                    "op": "gte",
                    "value": 10,
                },
                {"customer": "attributes.trial_ends", "op": "more_than_ago", "value": "P1D"},
            ]
        },
        Refs(),
    )
    facts = CustomerFacts(
        customer={"attributes": {"trial_ends": (NOW + timedelta(hours=1)).isoformat()}},
        values={
            CountKey("t", timedelta(days=7)): (1, NOW - timedelta(days=6)),
            AggregateKey("t", "a", "sum", timedelta(days=2)): (
                12,
                NOW - timedelta(days=1, hours=12),
            ),
            FutureKey("t"): None,
        },
    )
    decision = compiled.decide(facts, NOW)
    assert decision.member is True
    # The `any` holds while either window's leaf does: the trial's end (an hour away)
    # cannot turn it, the sum's window edge (12 hours away) is the first that can.
    assert decision.next_check_at == NOW + timedelta(hours=12)


def test_an_all_failing_on_a_leaf_that_time_cannot_turn_needs_no_check() -> None:
    compiled = CompiledSegment(
        {
            "all": [
                {"count": {"event_type": "t", "within": "P7D"}, "op": "gte", "value": 2},
                {"last": "login", "op": "within", "value": "P1D"},
            ]
        },
        Refs(),
    )
    week = CountKey("t", timedelta(days=7))

    def facts(count: int, last_login: datetime | None) -> CustomerFacts:
        return CustomerFacts(
            customer={},
            values={
                week: (count, NOW - timedelta(days=6) if count else None),
                FutureKey("t"): None,
                LastKey("login"): last_login,
                FutureKey("login"): None,
            },
        )

    # Two purchases but no login for days: only a new login can let them in.
    assert compiled.decide(facts(2, NOW - timedelta(days=5)), NOW).next_check_at is None
    # One purchase and a login: time only takes purchases away.
    assert compiled.decide(facts(1, NOW - timedelta(hours=1)), NOW).next_check_at is None
    # A member: the first of the week's edge and the login's day passing.
    member = compiled.decide(facts(2, NOW - timedelta(hours=1)), NOW)
    assert member.member is True
    assert member.next_check_at == NOW + timedelta(hours=23, microseconds=1)


@pytest.fixture
def make(db: None) -> Callable[..., Segment]:
    EventType.objects.create(key="purchase", name="Purchase")

    def create(key: str, condition: dict[str, Any]) -> Segment:
        return segment_create(data=SegmentInput(key=key, name=key, condition=condition))

    return create


def test_unknown_event_types_and_segments_are_refused(make: Callable[..., Segment]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        make("a", {"all": [{"last": "nope", "op": "within", "value": "P1D"}, {"segment": "ghost"}]})
    assert caught.value.details == {
        "condition.all[1].segment": ["Unknown segment 'ghost'."],
        "condition": ["Unknown event type(s): nope."],
    }
    assert not Segment.objects.exists()


def test_a_cycle_is_refused_at_the_node_that_closes_it(make: Callable[..., Segment]) -> None:
    a = make("a", {"count": {"event_type": "purchase"}, "op": "gte", "value": 1})
    make("b", {"segment": "a"})
    make("c", {"any": [{"segment": "b"}]})
    with pytest.raises(ValidationFailed) as caught:
        segment_update(segment=a, data=SegmentInput(condition={"not": {"segment": "c"}}))
    assert list(caught.value.details or {}) == ["condition.not.segment"]
    assert "cycle" in (caught.value.details or {})["condition.not.segment"][0]
    with pytest.raises(ValidationFailed) as itself:
        segment_update(segment=a, data=SegmentInput(condition={"segment": "a"}))
    assert (itself.value.details or {})["condition.segment"] == ["A segment cannot contain itself."]
    a.refresh_from_db()
    assert a.condition == {"count": {"event_type": "purchase"}, "op": "gte", "value": 1}
