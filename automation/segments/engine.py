"""The segment evaluator: pure, a compiled condition and a customer's facts in, an answer out.

`CompiledSegment.decide(facts, now)` says whether the customer is a member and the
next instant at which that can change with no new data (the earliest edge of a
time-dependent leaf after now, or None); `explain` records every leaf's value. No
database access: automation.segments.facts fetched the facts for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation.segments.conditions import CompiledLeaf, Refs, leaf_kind
from automation.segments.facts import CustomerFacts, FactKey
from automation.workflows.conditions.values import MISSING
from automation.workflows.engine import _jsonable


class Node:
    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        raise NotImplementedError

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        raise NotImplementedError


class AllNode(Node):
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return all(child.match(facts, now) for child in self.children)

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return all([child.explain(facts, now, out) for child in self.children])


class AnyNode(AllNode):
    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return any(child.match(facts, now) for child in self.children)

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return any([child.explain(facts, now, out) for child in self.children])


class NotNode(Node):
    def __init__(self, child: Node) -> None:
        self.child = child

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return not self.child.match(facts, now)

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return not self.child.explain(facts, now, out)


class TrueNode(Node):
    """The empty condition `{}`: every customer."""

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return True

    def explain(self, facts: CustomerFacts, now: datetime, out: list[dict[str, Any]]) -> bool:
        return True


class LeafNode(Node):
    def __init__(self, leaf: CompiledLeaf) -> None:
        self.leaf = leaf

    def match(self, facts: CustomerFacts, now: datetime) -> bool:
        return self.leaf.test(self.leaf.actual(facts), now)

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
        edges = []
        for leaf in self.leaves:
            try:
                edges += [e for e in leaf.edges(facts, now) if e > now]
            except (OverflowError, TypeError):
                continue  # an edge past the calendar's end never comes
        return Decision(self.root.match(facts, now), min(edges) if edges else None)

    def explain(self, facts: CustomerFacts, now: datetime) -> dict[str, Any]:
        leaves: list[dict[str, Any]] = []
        matched = self.root.explain(facts, now, leaves)
        return {"matched": matched, "leaves": leaves}
