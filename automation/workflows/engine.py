"""The workflow evaluator: a pure function of a workflow and an event's context.

`evaluate(workflow, context)` touches no database. Everything it needs comes
in as plain data (`EventContext`): the event's fields, its property records
with their declared types, the customer, and the frequency / first-time facts
that automation.workflows.selectors fetched for the whole batch beforehand. It
returns an `Explanation`: whether the tree matched and, for every leaf, the
value compared, the expected value and the outcome. The same function serves
the workers and `POST /workflows/{id}/test`.

Trees are compiled once per loaded workflow (`compile_tree`) into small node
objects, so evaluating an event does no parsing, no regex compilation and no
validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from automation.workflows.conditions.operators import REGISTRY, Operator
from automation.workflows.conditions.values import MISSING, resolve_path
from automation.workflows.durations import parse_duration
from events_app.properties import PROPERTY_TYPES


@dataclass(frozen=True)
class CountKey:
    """One frequency question: events of a type within a window (shared by leaves)."""

    event_type_id: str
    within: timedelta


@dataclass
class EventContext:
    """Everything a tree can look at for one event, as plain data."""

    event: dict[str, Any]  # event_id, event_type, event_type_id, external_id, data, occurred_at…
    customer: dict[str, Any]  # customer_id, external_id, email, created_at, attributes, tags
    properties: dict[str, str] = field(default_factory=dict)  # property_id → stored text
    property_types: dict[str, str] = field(default_factory=dict)  # property_id → value type
    counts: dict[CountKey, int] = field(default_factory=dict)
    first_of_type: dict[str, bool] = field(default_factory=dict)  # event_type_id → is first
    # The ids and keys of the segments the customer is in (read when a tree has a
    # segment leaf: automation.workflows.selectors).
    segments: frozenset[str] = frozenset()
    now: datetime | None = None
    # Typed property values, parsed once per event however many leaves read them.
    parsed: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeafResult:
    path: str
    subject: str
    target: Any
    op: str
    expected: Any
    actual: Any
    matched: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            self.subject: self.target,
            "op": self.op,
            "expected": _jsonable(self.expected),
            "actual": None if self.actual is MISSING else _jsonable(self.actual),
            "missing": self.actual is MISSING,
            "matched": self.matched,
        }


@dataclass
class Explanation:
    matched: bool
    leaves: list[LeafResult]

    def as_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "leaves": [leaf.as_dict() for leaf in self.leaves]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


# ---------------------------------------------------------------- compiled nodes


class Node:
    """A compiled tree node.

    `match` answers with short cuts and records nothing (the hot path: most
    workflows do not match most events); `evaluate` visits every leaf and
    records what it compared (the explanation, built only for a match).
    """

    def match(self, ctx: EventContext, now: datetime) -> bool:
        raise NotImplementedError

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        raise NotImplementedError


class AllNode(Node):
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def match(self, ctx: EventContext, now: datetime) -> bool:
        return all(child.match(ctx, now) for child in self.children)

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        # Every child is evaluated (no short cut) so the explanation shows each leaf.
        results = [child.evaluate(ctx, now, out) for child in self.children]
        return all(results)


class AnyNode(AllNode):
    def match(self, ctx: EventContext, now: datetime) -> bool:
        return any(child.match(ctx, now) for child in self.children)

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        results = [child.evaluate(ctx, now, out) for child in self.children]
        return any(results)


class NotNode(Node):
    def __init__(self, child: Node) -> None:
        self.child = child

    def match(self, ctx: EventContext, now: datetime) -> bool:
        return not self.child.match(ctx, now)

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        return not self.child.evaluate(ctx, now, out)


class TrueNode(Node):
    """The empty tree `{}`: the trigger alone decides."""

    def match(self, ctx: EventContext, now: datetime) -> bool:
        return True

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        return True


_UNSET = object()


def _parse_property(ctx: EventContext, property_id: str) -> Any:
    text = ctx.properties.get(property_id)
    if text is None:
        return MISSING
    handler = PROPERTY_TYPES.get(ctx.property_types.get(property_id, "string"))
    try:
        return handler.parse(text) if handler else text
    except ValueError:
        return MISSING


class Leaf(Node):
    """A leaf: fetch the subject's value, hand it to the operator handler."""

    def __init__(self, path: str, node: dict[str, Any], type_ids: dict[str, str]) -> None:
        self.path = path
        self.subject = next(
            key
            for key in ("property", "event", "customer", "count", "first", "segment")
            if key in node
        )
        self.target = node[self.subject]
        self.op_name: str = node.get("op", "eq")
        self.expected: Any = node.get(
            "value", True if self.subject in {"first", "segment"} else None
        )
        self.operator: Operator = REGISTRY[self.op_name]
        self.prepared = self.operator.prepare(self.expected) if self.operator.takes_value else None
        self.segments: tuple[str, ...] = ()
        self.count_key: CountKey | None = None
        self.type_id: str | None = None
        if self.subject in {"event", "customer"}:
            self.segments = tuple(self.target.split("."))
        elif self.subject == "count":
            type_ref = self.target["event_type"]
            self.count_key = CountKey(
                type_ids.get(type_ref, type_ref), parse_duration(self.target["within"])
            )
        elif self.subject == "first":
            self.type_id = type_ids.get(self.target, self.target)

    def actual(self, ctx: EventContext) -> Any:
        if self.subject == "property":
            value = ctx.parsed.get(self.target, _UNSET)
            if value is _UNSET:
                value = ctx.parsed[self.target] = _parse_property(ctx, self.target)
            return value
        if self.subject == "event":
            return resolve_path(ctx.event, self.segments)
        if self.subject == "customer":
            return resolve_path(ctx.customer, self.segments)
        if self.subject == "count":
            assert self.count_key is not None
            return ctx.counts.get(self.count_key, MISSING)
        if self.subject == "segment":
            return self.target in ctx.segments
        assert self.type_id is not None
        return ctx.first_of_type.get(self.type_id, MISSING)

    def match(self, ctx: EventContext, now: datetime) -> bool:
        try:
            return bool(self.operator.test(self.actual(ctx), self.prepared, now))
        except Exception:
            return False

    def evaluate(self, ctx: EventContext, now: datetime, out: list[LeafResult]) -> bool:
        actual = self.actual(ctx)
        try:
            matched = bool(self.operator.test(actual, self.prepared, now))
        except Exception:
            matched = False
        out.append(
            LeafResult(
                self.path, self.subject, self.target, self.op_name, self.expected, actual, matched
            )
        )
        return matched


def compile_tree(
    tree: Any, *, type_ids: dict[str, str] | None = None, path: str = "conditions"
) -> Node:
    """Compile a validated tree; `type_ids` maps event type keys to ids for count/first."""
    type_ids = type_ids or {}
    if not tree:
        return TrueNode()
    if "all" in tree:
        return AllNode(
            [
                compile_tree(c, type_ids=type_ids, path=f"{path}.all[{i}]")
                for i, c in enumerate(tree["all"])
            ]
        )
    if "any" in tree:
        return AnyNode(
            [
                compile_tree(c, type_ids=type_ids, path=f"{path}.any[{i}]")
                for i, c in enumerate(tree["any"])
            ]
        )
    if "not" in tree:
        return NotNode(compile_tree(tree["not"], type_ids=type_ids, path=f"{path}.not"))
    return Leaf(path, tree, type_ids)


def leaves_of(node: Node) -> list[Leaf]:
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, AllNode):
        return [leaf for child in node.children for leaf in leaves_of(child)]
    if isinstance(node, NotNode):
        return leaves_of(node.child)
    return []


class CompiledWorkflow:
    """What the evaluator needs of a workflow: its id, compiled tree and fact needs."""

    def __init__(
        self, *, workflow_id: str, conditions: Any, type_ids: dict[str, str] | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.root = compile_tree(conditions, type_ids=type_ids)
        leaves = leaves_of(self.root)
        self.count_keys = {leaf.count_key for leaf in leaves if leaf.count_key is not None}
        self.first_types = {leaf.type_id for leaf in leaves if leaf.type_id is not None}
        self.reads_segments = any(leaf.subject == "segment" for leaf in leaves)


def evaluate(workflow: CompiledWorkflow, context: EventContext) -> Explanation:
    """Does the workflow's tree match this event? Pure: plain data in, explanation out."""
    now = context.now or context.event.get("created_at")
    assert isinstance(now, datetime), "context.now (or event.created_at) is required"
    leaves: list[LeafResult] = []
    matched = workflow.root.evaluate(context, now, leaves)
    return Explanation(matched=matched, leaves=leaves)


def matches(workflow: CompiledWorkflow, context: EventContext) -> bool:
    """The same answer as `evaluate(...).matched`, with short cuts and no explanation."""
    now = context.now or context.event.get("created_at")
    assert isinstance(now, datetime), "context.now (or event.created_at) is required"
    return workflow.root.match(context, now)
