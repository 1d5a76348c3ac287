"""A segment's condition: the workflows' tree grammar with the leaf kinds of a customer.

The groups (`all` / `any` / `not`), the operators and their typing, the limits and
the messages by path are the workflows' (automation.workflows.conditions.trees). A
segment reads a customer, not an event, so its leaves are the kinds registered in
`LEAF_KINDS` (house style 6: adding a kind is adding a class and a test):

* `customer`: the workflows' customer leaf (fields, attributes, tags);
* `count`: `{"count": {"event_type", "within"?}, "op", "value"}`;
* `aggregate`: `{"aggregate": {"event_type", "property", "fn", "within"?}, "op", "value"}`;
* `last`: `{"last": "login", "op": "more_than" | "within", "value": "P14D"}`;
* `segment`: `{"segment": "vip"}` (a member of another segment now).

`within` absent means all time. Each kind validates its node when a segment is saved
and compiles it into a `CompiledLeaf` (automation.segments.engine evaluates those).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from automation.segments.facts import (
    AggregateKey,
    CountKey,
    CustomerFacts,
    FactKey,
    FutureKey,
    LastKey,
    MemberKey,
)
from automation.workflows.conditions import trees
from automation.workflows.conditions.operators import NUMERIC_OPS, REGISTRY, Operator
from automation.workflows.conditions.values import MISSING, resolve_path, to_datetime
from automation.workflows.durations import parse_duration

AGGREGATE_FNS = ("sum", "min", "max", "avg", "count")
RECENCY_OPS = ("more_than", "within")
# Ordering operators: a number moving one way can only turn them one way.
MONOTONE_OPS = frozenset({"gt", "gte", "lt", "lte"})
# A leaf that is true up to and including an instant changes just after it.
JUST_AFTER = timedelta(microseconds=1)
# Windows reach back at most this far (so that now - window is always a date).
MAX_DURATION = timedelta(days=36500)


@dataclass(frozen=True)
class Refs:
    """What compiling needs resolved: event type keys and segment keys to ids."""

    type_ids: dict[str, str] = field(default_factory=dict)
    segment_ids: dict[str, str] = field(default_factory=dict)


class CompiledLeaf:
    """A leaf ready to evaluate against a customer's facts (never raises on data)."""

    path: str
    kind: str
    target: Any
    op: str
    expected: Any

    def facts(self) -> Iterator[FactKey]:
        """The facts this leaf reads (fetched for a whole batch of customers)."""
        return iter(())

    def actual(self, facts: CustomerFacts) -> Any:
        raise NotImplementedError

    def test(self, actual: Any, now: datetime) -> bool:
        raise NotImplementedError

    def edges(self, facts: CustomerFacts, now: datetime) -> Iterator[datetime]:
        """Instants after which this leaf's answer may change with no new data."""
        return iter(())

    def changes(self, facts: CustomerFacts, now: datetime, answer: bool) -> Iterator[datetime]:
        """The edges at which the leaf, answering `answer` now, may answer otherwise:
        `edges` less those whose change only moves the fact further the same way."""
        return self.edges(facts, now)


class LeafKind:
    """A kind of leaf: `validate` (at save, messages by path), `compile` (to evaluate)."""

    key: ClassVar[str]

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        raise NotImplementedError

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        raise NotImplementedError

    def event_types(self, node: dict[str, Any]) -> set[str]:
        """Event type refs (keys or ids) a node reads; checked to exist at save."""
        return set()


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _check_keys(
    node: dict[str, Any], allowed: set[str], path: str, errors: dict[str, list[str]]
) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        _add(errors, path, f"Unknown key(s): {', '.join(unknown)}.")


def _check_type_ref(value: Any, path: str, errors: dict[str, list[str]]) -> None:
    if not isinstance(value, str) or not value or len(value) > 64:
        _add(errors, path, "Must be an event type key or id.")


def _duration_error(value: Any) -> str | None:
    """Why `value` is not a duration a segment can use (None when it is)."""
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        return str(exc)
    if duration > MAX_DURATION:
        return f"must be at most {MAX_DURATION.days} days"
    return None


def _check_within(spec: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
    problem = _duration_error(spec["within"]) if "within" in spec else None
    if problem:
        _add(errors, f"{path}.within", f"Within {problem}.")


def _check_numeric_op(
    node: dict[str, Any], path: str, errors: dict[str, list[str]], *, whole: bool
) -> None:
    op = node.get("op")
    if op not in NUMERIC_OPS:
        _add(errors, f"{path}.op", f"Compares with one of: {', '.join(sorted(NUMERIC_OPS))}.")
        return
    if "value" not in node:
        _add(errors, f"{path}.value", f"Operator '{op}' needs a value.")
        return
    problem = REGISTRY[op].check(node["value"])
    if problem is None:
        values = node["value"] if isinstance(node["value"], list) else [node["value"]]
        if whole:
            problem = trees.count_value_error(node["value"])
        elif any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            problem = "an aggregate compares with numbers"
    if problem:
        _add(errors, f"{path}.value", f"{problem[0].upper()}{problem[1:]}.")


def _window(spec: dict[str, Any]) -> timedelta | None:
    return parse_duration(spec["within"]) if "within" in spec else None


class _NumericLeaf(CompiledLeaf):
    """A number compared with a numeric operator (count and aggregate leaves)."""

    def __init__(self, path: str, kind: str, node: dict[str, Any]) -> None:
        self.path, self.kind, self.target = path, kind, node[kind]
        self.op, self.expected = node["op"], node["value"]
        self.operator: Operator = REGISTRY[self.op]
        self.prepared = self.operator.prepare(self.expected)

    def test(self, actual: Any, now: datetime) -> bool:
        try:
            return bool(self.operator.test(actual, self.prepared, now))
        except Exception:
            return False


class _WindowedLeaf(_NumericLeaf):
    """A fact over a type's events in (now - within, now]: it changes when the oldest
    event in the window leaves it, or when a future-dated event's time comes."""

    key: CountKey | AggregateKey
    future: FutureKey

    def facts(self) -> Iterator[FactKey]:
        yield self.key
        yield self.future

    def actual(self, facts: CustomerFacts) -> Any:
        return facts.values.get(self.key, (MISSING, None))[0]

    def edges(self, facts: CustomerFacts, now: datetime) -> Iterator[datetime]:
        oldest = facts.values.get(self.key, (None, None))[1]
        if self.key.within is not None and oldest is not None:
            yield oldest + self.key.within
        upcoming = facts.values.get(self.future)
        if upcoming is not None:
            yield upcoming

    def changes(self, facts: CustomerFacts, now: datetime, answer: bool) -> Iterator[datetime]:
        # A count only falls as events leave the window and only rises as future-dated
        # ones come: for an ordering operator one of the two cannot change the answer.
        counted = self.kind == "count" or getattr(self.key, "fn", None) == "count"
        if not counted or self.op not in MONOTONE_OPS:
            yield from self.edges(facts, now)
            return
        falling_matters = answer == (self.op in {"gt", "gte"})
        oldest = facts.values.get(self.key, (None, None))[1]
        if falling_matters and self.key.within is not None and oldest is not None:
            yield oldest + self.key.within
        upcoming = facts.values.get(self.future)
        if not falling_matters and upcoming is not None:
            yield upcoming


class CountLeaf(LeafKind):
    key = "count"

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        _check_keys(node, {"count", "op", "value"}, path, errors)
        spec = node["count"]
        if not isinstance(spec, dict):
            _add(errors, f"{path}.count", 'Must be {"event_type": "…", "within": "P7D"?}.')
            return
        _check_keys(spec, {"event_type", "within"}, f"{path}.count", errors)
        _check_type_ref(spec.get("event_type"), f"{path}.count.event_type", errors)
        _check_within(spec, f"{path}.count", errors)
        _check_numeric_op(node, path, errors, whole=True)

    def event_types(self, node: dict[str, Any]) -> set[str]:
        return {node["count"]["event_type"]}

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        leaf = _WindowedLeaf(path, self.key, node)
        spec = node["count"]
        type_id = refs.type_ids.get(spec["event_type"], spec["event_type"])
        leaf.key, leaf.future = CountKey(type_id, _window(spec)), FutureKey(type_id)
        return leaf


class AggregateLeaf(LeafKind):
    key = "aggregate"

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        _check_keys(node, {"aggregate", "op", "value"}, path, errors)
        spec = node["aggregate"]
        here = f"{path}.aggregate"
        if not isinstance(spec, dict):
            _add(errors, here, 'Must be {"event_type", "property", "fn", "within"?}.')
            return
        _check_keys(spec, {"event_type", "property", "fn", "within"}, here, errors)
        _check_type_ref(spec.get("event_type"), f"{here}.event_type", errors)
        prop = spec.get("property")
        if not isinstance(prop, str) or not prop or len(prop) > 64:
            _add(errors, f"{here}.property", "Must be a property id.")
        if spec.get("fn") not in AGGREGATE_FNS:
            _add(errors, f"{here}.fn", f"Must be one of: {', '.join(AGGREGATE_FNS)}.")
        _check_within(spec, here, errors)
        _check_numeric_op(node, path, errors, whole=spec.get("fn") == "count")

    def event_types(self, node: dict[str, Any]) -> set[str]:
        return {node["aggregate"]["event_type"]}

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        leaf = _WindowedLeaf(path, self.key, node)
        spec = node["aggregate"]
        type_id = refs.type_ids.get(spec["event_type"], spec["event_type"])
        leaf.key = AggregateKey(type_id, spec["property"], spec["fn"], _window(spec))
        leaf.future = FutureKey(type_id)
        return leaf


class _RecencyLeaf(CompiledLeaf):
    def __init__(self, path: str, node: dict[str, Any], type_id: str) -> None:
        self.path, self.kind, self.target = path, "last", node["last"]
        self.op, self.expected = node["op"], node["value"]
        self.duration = parse_duration(node["value"])
        self.key, self.future = LastKey(type_id), FutureKey(type_id)

    def facts(self) -> Iterator[FactKey]:
        yield self.key
        yield self.future

    def actual(self, facts: CustomerFacts) -> Any:
        last = facts.values.get(self.key)
        return MISSING if last is None else last

    def test(self, actual: Any, now: datetime) -> bool:
        if actual is MISSING:
            return self.op == "more_than"  # never done counts as "longer ago than"
        within = bool(actual >= now - self.duration)
        return within if self.op == "within" else not within

    def edges(self, facts: CustomerFacts, now: datetime) -> Iterator[datetime]:
        last = facts.values.get(self.key)
        if last is not None:
            yield last + self.duration + JUST_AFTER
        upcoming = facts.values.get(self.future)
        if upcoming is not None:
            yield upcoming

    def changes(self, facts: CustomerFacts, now: datetime, answer: bool) -> Iterator[datetime]:
        # A future-dated event coming makes the last one recent: that changes "more than"
        # when it holds and "within" when it does not, never the other two answers.
        last = facts.values.get(self.key)
        if last is not None:
            yield last + self.duration + JUST_AFTER
        upcoming = facts.values.get(self.future)
        if (self.op == "within") != answer and upcoming is not None:
            yield upcoming


class LastLeaf(LeafKind):
    key = "last"

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        _check_keys(node, {"last", "op", "value"}, path, errors)
        _check_type_ref(node["last"], f"{path}.last", errors)
        if node.get("op") not in RECENCY_OPS:
            _add(errors, f"{path}.op", f"Must be one of: {', '.join(RECENCY_OPS)}.")
        problem = _duration_error(node.get("value"))
        if problem:
            _add(errors, f"{path}.value", f"Value {problem}.")

    def event_types(self, node: dict[str, Any]) -> set[str]:
        return {node["last"]}

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        return _RecencyLeaf(path, node, refs.type_ids.get(node["last"], node["last"]))


class _MemberLeaf(CompiledLeaf):
    def __init__(self, path: str, ref: str, segment_id: str) -> None:
        self.path, self.kind, self.target = path, "segment", ref
        self.op, self.expected = "eq", True
        self.key = MemberKey(segment_id)

    def facts(self) -> Iterator[FactKey]:
        yield self.key

    def actual(self, facts: CustomerFacts) -> Any:
        return bool(facts.values.get(self.key, False))

    def test(self, actual: Any, now: datetime) -> bool:
        return actual is True


class SegmentLeaf(LeafKind):
    """A member of another segment now; cycles are refused at save (services)."""

    key = "segment"

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        trees.validate_segment_leaf(node, path, errors)

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        ref = node["segment"]
        return _MemberLeaf(path, ref, refs.segment_ids.get(ref, ref))


class _CustomerFieldLeaf(CompiledLeaf):
    """The workflows' customer leaf; a datetime compared with within_last /
    more_than_ago changes as time passes (when it comes of age, and after)."""

    TIMED = frozenset({"within_last", "more_than_ago"})

    def __init__(self, path: str, node: dict[str, Any]) -> None:
        self.path, self.kind, self.target = path, "customer", node["customer"]
        self.op = node["op"]
        self.operator: Operator = REGISTRY[self.op]
        self.expected = node.get("value")
        self.prepared = self.operator.prepare(self.expected) if self.operator.takes_value else None
        self.segments = tuple(self.target.split("."))

    def actual(self, facts: CustomerFacts) -> Any:
        return resolve_path(facts.customer, self.segments)

    def test(self, actual: Any, now: datetime) -> bool:
        try:
            return bool(self.operator.test(actual, self.prepared, now))
        except Exception:
            return False

    def edges(self, facts: CustomerFacts, now: datetime) -> Iterator[datetime]:
        if self.op not in self.TIMED:
            return
        moment = to_datetime(self.actual(facts))
        if moment is not MISSING:
            yield moment
            yield moment + self.prepared + JUST_AFTER


class CustomerLeaf(LeafKind):
    key = "customer"

    def validate(self, node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
        trees.validate_workflow_leaf(node, path, errors)

    def compile(self, node: dict[str, Any], path: str, refs: Refs) -> CompiledLeaf:
        return _CustomerFieldLeaf(path, node)


LEAF_KINDS: dict[str, LeafKind] = {
    kind.key: kind
    for kind in (CustomerLeaf(), CountLeaf(), AggregateLeaf(), LastLeaf(), SegmentLeaf())
}
_VALIDATORS: dict[str, trees.LeafValidator] = {k: v.validate for k, v in LEAF_KINDS.items()}


def validate(condition: Any, *, root: str = "condition") -> None:
    """Raise trees.ConditionError listing every faulty node by path."""
    trees.validate(condition, root=root, kinds=_VALIDATORS)


def leaf_kind(node: dict[str, Any]) -> LeafKind:
    return LEAF_KINDS[trees.leaf_subject(node, LEAF_KINDS)]


def leaves_with_paths(tree: Any, path: str = "condition") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every leaf of a valid tree with its path, depth first."""
    if not isinstance(tree, dict) or not tree:
        return
    for group in ("all", "any"):
        if group in tree:
            for index, child in enumerate(tree[group]):
                yield from leaves_with_paths(child, f"{path}.{group}[{index}]")
            return
    if "not" in tree:
        yield from leaves_with_paths(tree["not"], f"{path}.not")
        return
    yield path, tree


def customer_fields_read(tree: Any) -> set[str]:
    """The customer fields (external_id, email, attributes, tags…) a tree reads."""
    return {
        leaf["customer"].split(".", 1)[0]
        for _, leaf in leaves_with_paths(tree)
        if "customer" in leaf
    }


def event_types_read(tree: Any) -> set[str]:
    """The event type refs (keys or ids) a tree reads."""
    return {ref for _, leaf in leaves_with_paths(tree) for ref in leaf_kind(leaf).event_types(leaf)}


def segments_read(tree: Any) -> list[tuple[str, str]]:
    """(path, segment ref) of every membership leaf of a tree."""
    return [(path, leaf["segment"]) for path, leaf in leaves_with_paths(tree) if "segment" in leaf]
