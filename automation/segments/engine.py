"""The segment evaluator: pure, a compiled condition and a customer's facts in, an answer out.

`CompiledSegment.decide(facts, now)` says whether the customer is a member and the
next instant at which that can change with no new data, or None when it cannot: the
earliest edge of the time-dependent leaves that can turn the answer (`Node.settle`).
A leaf's edge counts only when it can change the leaf's answer (a count past `gte`
only falls as time passes, so only its window's edge counts), and a group's only
when the children holding its answer can all change (an `all` that fails on a leaf
that never changes by itself stays failed until new data comes, and needs no
check). Fewer checks mean fewer rows for a build to write and fewer re-evaluations
by the sweep; the instant is never later than the answer's first possible change.
`explain` records every leaf's value. No
database access: automation.segments.facts fetched the facts for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation.segments.conditions import CompiledLeaf, Refs, leaf_kind
from automation.segments.facts import CustomerFacts, FactKey
from automation.workflows.conditions.values import MISSING
from automation.workflows.engine import _jsonable

Settled = tuple[bool, datetime | None]


def _earliest(instants: list[datetime | None]) -> datetime | None:
    known = [i for i in instants if i is not None]
    return min(known) if known else None


class Node:
    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        raise NotImplementedError

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        """The answer now, and the earliest instant after now at which it may change
        with no new data (None: never)."""
        raise NotImplementedError

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        raise NotImplementedError


class AllNode(Node):
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return all(child.match(facts, now) for child in self.children)

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        return _settle_group([c.settle(facts, now) for c in self.children], holds_if=all)

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return all([child.explain(facts, now, out) for child in self.children])


class AnyNode(AllNode):
    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return any(child.match(facts, now) for child in self.children)

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        return _settle_group([c.settle(facts, now) for c in self.children], holds_if=any)

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return any([child.explain(facts, now, out) for child in self.children])


class NotNode(Node):
    def __init__(self, child: Node) -> None:
        self.child = child

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return not self.child.match(facts, now)

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        answer, upcoming = self.child.settle(facts, now)
        return not answer, upcoming

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return not self.child.explain(facts, now, out)


class TrueNode(Node):
    """The empty condition `{}`: every customer."""

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return True

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        return True, None

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return True


class LeafNode(Node):
    def __init__(self, leaf: CompiledLeaf) -> None:
        self.leaf = leaf

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return self.leaf.test(self.leaf.actual(facts), now)

    def settle(self, facts: CustomerFacts, now: datetime) -> Settled:
        answer = self.match(facts, now)
        try:
            upcoming = _earliest([e for e in self.leaf.changes(facts, now, answer) if e > now])
        except (OverflowError, TypeError):
            upcoming = None  # an edge past the calendar's end never comes
        return answer, upcoming

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        leaf = self.leaf
        actual = leaf.actual(facts)
        matched = leaf.test(actual, now)
        out.append(
            {
                "path": leaf.path,
                leaf.kind: leaf.target,
                "op": leaf.op,
                "expected": _jsonable(leaf.expected),
                "actual": None if actual is MISSING else _jsonable(actual),
                "missing": actual is MISSING,
                "matched": matched,
            }
        )
        return matched


def _settle_group(
    children: list[Settled], *, holds_if: Callable[[Iterable[bool]], bool]
) -> Settled:
    """`all` / `any` of settled children. The group's answer changes only when its
    children that hold it there change: all of them (an `all` that is false, an `any`
    that is true: never while one of them never changes), or any one (the others)."""
    answer = bool(holds_if(a for a, _ in children))
    if answer == (holds_if is all):  # an `all` that holds, an `any` that does not
        return answer, _earliest([u for _, u in children])
    holding = [u for a, u in children if a == answer]
    return answer, None if None in holding else _earliest(holding)


def _compile(tree: Any, path: str, refs: Refs, leaves: list[CompiledLeaf]) -> Node:
    if not tree:
        return TrueNode()
    for group, node_class in (("all", AllNode), ("any", AnyNode)):
        if group in tree:
            return node_class(
                [
                    _compile(child, f"{path}.{group}[{index}]", refs, leaves)
                    for index, child in enumerate(tree[group])
                ]
            )
    if "not" in tree:
        return NotNode(_compile(tree["not"], f"{path}.not", refs, leaves))
    leaf = leaf_kind(tree).compile(tree, path, refs)
    leaves.append(leaf)
    return LeafNode(leaf)


@dataclass(frozen=True)
class Decision:
    member: bool
    next_check_at: datetime | None


class CompiledSegment:
    """A validated condition compiled once: its nodes and the facts it reads."""

    def __init__(self, condition: Any, refs: Refs) -> None:
        self.leaves: list[CompiledLeaf] = []
        self.root = _compile(condition, "condition", refs, self.leaves)
        self.fact_keys: set[FactKey] = {key for leaf in self.leaves for key in leaf.facts()}

    def decide(self, facts: CustomerFacts, now: datetime) -> Decision:
        member, upcoming = self.root.settle(facts, now)
        return Decision(member, upcoming)

    def explain(self, facts: CustomerFacts, now: datetime) -> dict[str, Any]:
        leaves: list[dict[str, Any]] = []
        matched = self.root.explain(facts, now, leaves)
        return {"matched": matched, "leaves": leaves}
