"""Workflow condition trees: their shape and its validation.

A tree is a group `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}` or a
leaf with exactly one subject (`property`, `event`, `customer`, `count`,
`first`, `segment`), an `op` and (for most operators) a `value`. The wire format is
documented in docs/automation.md (## Workflows).

`validate` runs when a workflow is saved; each leaf's operator checks its own
value (automation.workflows.conditions.operators). Evaluating a saved tree is
automation.workflows.engine's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from automation.workflows.conditions.operators import NUMERIC_OPS, REGISTRY
from automation.workflows.durations import parse_duration

MAX_DEPTH = 10
MAX_LEAVES = 200

SUBJECTS = ("property", "event", "customer", "count", "first", "segment")
EVENT_FIELDS = frozenset(
    {
        "event_id",
        "event_type",
        "external_id",
        "secondary_external_id",
        "occurred_at",
        "created_at",
        "depth",
        "data",
    }
)
CUSTOMER_FIELDS = frozenset(
    {"customer_id", "external_id", "email", "created_at", "tags", "attributes"}
)
COUNT_KEYS = frozenset({"event_type", "within"})


class ConditionError(ValueError):
    """A tree is invalid; `errors` maps a node path to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first_path, messages = next(iter(errors.items()))
        super().__init__(f"{first_path}: {messages[0]}")
        self.errors = errors


# ---------------------------------------------------------------- validation


LeafValidator = Callable[[dict[str, Any], str, dict[str, list[str]]], None]
"""Checks one leaf (`node`, its `path`) and adds its problems to `errors` by path."""


def validate(
    tree: Any, *, root: str = "conditions", kinds: Mapping[str, LeafValidator] | None = None
) -> None:
    """Raise ConditionError listing every faulty node by path (`conditions.all[2].op`).

    An empty object `{}` is the tree that always matches. `kinds`: the leaf kinds
    this tree may use, by subject key (default `WORKFLOW_LEAVES`); another tree
    (segments) passes its own registry, sharing the groups and the built-in leaves.
    """
    errors: dict[str, list[str]] = {}
    leaves = [0]
    if tree != {}:
        _validate_node(tree, root, 0, errors, leaves, kinds or WORKFLOW_LEAVES)
    if leaves[0] > MAX_LEAVES:
        errors.setdefault(root, []).append(f"A tree may have at most {MAX_LEAVES} leaves.")
    if errors:
        raise ConditionError(errors)


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _validate_node(
    node: Any,
    path: str,
    depth: int,
    errors: dict[str, list[str]],
    leaves: list[int],
    kinds: Mapping[str, LeafValidator],
) -> None:
    if depth > MAX_DEPTH:
        _add(errors, path, f"Groups may nest at most {MAX_DEPTH} levels deep.")
        return
    if not isinstance(node, dict):
        _add(errors, path, "Must be an object: a group (all / any / not) or a leaf.")
        return
    groups = [key for key in ("all", "any", "not") if key in node]
    if groups:
        if len(node) != 1:
            _add(errors, path, f"A group has exactly one key ('{groups[0]}'), got {sorted(node)}.")
            return
        key = groups[0]
        child_path = f"{path}.{key}"
        if key == "not":
            _validate_node(node["not"], child_path, depth + 1, errors, leaves, kinds)
            return
        children = node[key]
        if not isinstance(children, list) or not children:
            _add(errors, child_path, "Must be a non-empty list of conditions.")
            return
        for index, child in enumerate(children):
            _validate_node(child, f"{child_path}[{index}]", depth + 1, errors, leaves, kinds)
        return
    leaves[0] += 1
    subjects = [key for key in (*SUBJECTS, *kinds) if key in node]
    subjects = list(dict.fromkeys(subjects))
    if len(subjects) != 1:
        found = f"got {', '.join(subjects)}" if subjects else "got none"
        _add(
            errors,
            path,
            f"A leaf has exactly one subject ({', '.join(kinds)}); "
            f"{found}. Groups are all / any / not.",
        )
        return
    validator = kinds.get(subjects[0])
    if validator is None:
        _add(errors, path, f"'{subjects[0]}' is not a leaf here; one of: {', '.join(kinds)}.")
        return
    validator(node, path, errors)


def leaf_subject(node: dict[str, Any], kinds: Mapping[str, Any]) -> str:
    """The subject key of a validated leaf."""
    return next(key for key in kinds if key in node)


def validate_workflow_leaf(node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
    """A built-in leaf (property, event, customer, count, first): subject, op and value."""
    subject = leaf_subject(node, WORKFLOW_LEAVES)
    unknown = sorted(set(node) - {subject, "op", "value"})
    if unknown:
        _add(errors, path, f"Unknown key(s): {', '.join(unknown)}.")
    _validate_subject(subject, node[subject], f"{path}.{subject}", errors)

    if subject == "first":
        # `{"first": "purchase"}` alone means "is the first"; eq true/false is allowed too.
        if "op" in node and node["op"] != "eq":
            _add(errors, f"{path}.op", "A 'first' leaf takes no op, or op 'eq'.")
        if "value" in node and not isinstance(node["value"], bool):
            _add(errors, f"{path}.value", "Must be true or false.")
        return
    op_name = node.get("op")
    operator = REGISTRY.get(op_name) if isinstance(op_name, str) else None
    if operator is None:
        _add(errors, f"{path}.op", f"Unknown operator {op_name!r}; one of: {', '.join(REGISTRY)}.")
        return
    if subject == "count" and op_name not in NUMERIC_OPS:
        _add(errors, f"{path}.op", f"A count compares with {', '.join(sorted(NUMERIC_OPS))}.")
        return
    if not operator.takes_value:
        if "value" in node:
            _add(errors, f"{path}.value", f"Operator '{op_name}' takes no value.")
        return
    if "value" not in node:
        _add(errors, f"{path}.value", f"Operator '{op_name}' needs a value.")
        return
    problem = operator.check(node["value"])
    if problem is None and subject == "count":
        problem = count_value_error(node["value"])
    if problem:
        _add(errors, f"{path}.value", f"{problem[0].upper()}{problem[1:]}.")


def validate_segment_leaf(node: dict[str, Any], path: str, errors: dict[str, list[str]]) -> None:
    """`{"segment": "vip"}`: the customer is a member of that segment now."""
    unknown = sorted(set(node) - {"segment"})
    if unknown:
        _add(errors, path, f"Unknown key(s): {', '.join(unknown)}.")
    ref = node["segment"]
    if not isinstance(ref, str) or not ref or len(ref) > 64:
        _add(errors, f"{path}.segment", "Must be a segment key or id.")


WORKFLOW_LEAVES: dict[str, LeafValidator] = {
    **dict.fromkeys(SUBJECTS, validate_workflow_leaf),
    "segment": validate_segment_leaf,
}


def count_value_error(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            return "a count compares with whole numbers >= 0"
    return None


def _path_error(path: Any) -> str | None:
    if not isinstance(path, str) or not path or len(path) > 200:
        return "must be a non-empty path string"
    if any(not segment for segment in path.split(".")):
        return f"'{path}' has an empty segment"
    return None


def _validate_subject(subject: str, value: Any, path: str, errors: dict[str, list[str]]) -> None:
    if subject in {"property", "first"}:
        if not isinstance(value, str) or not value or len(value) > 64:
            what = "a property id" if subject == "property" else "an event type key or id"
            _add(errors, path, f"Must be {what}.")
        return
    if subject == "count":
        if not isinstance(value, dict):
            _add(errors, path, 'Must be {"event_type": "…", "within": "P7D"}.')
            return
        unknown = sorted(set(value) - COUNT_KEYS)
        if unknown:
            _add(errors, path, f"Unknown key(s): {', '.join(unknown)}.")
        if not isinstance(value.get("event_type"), str) or not value.get("event_type"):
            _add(errors, f"{path}.event_type", "Must be an event type key or id.")
        try:
            parse_duration(value.get("within"))
        except ValueError as exc:
            _add(errors, f"{path}.within", f"Within {exc}.")
        return
    problem = _path_error(value)
    if problem:
        _add(errors, path, f"Path {problem}.")
        return
    head = value.split(".", 1)[0]
    if subject == "event":
        if head not in EVENT_FIELDS:
            _add(
                errors,
                path,
                f"Unknown event field '{head}'; one of: {', '.join(sorted(EVENT_FIELDS))} "
                "(use data.<path> for the event's data).",
            )
    elif head not in CUSTOMER_FIELDS:
        _add(
            errors,
            path,
            f"Unknown customer field '{head}'; one of: {', '.join(sorted(CUSTOMER_FIELDS))} "
            "(use attributes.<path> for attributes).",
        )


def iter_leaves(tree: Any) -> Iterator[dict[str, Any]]:
    """Every leaf of a valid tree, depth first."""
    if not isinstance(tree, dict) or not tree:
        return
    for key in ("all", "any"):
        if key in tree:
            for child in tree[key]:
                yield from iter_leaves(child)
            return
    if "not" in tree:
        yield from iter_leaves(tree["not"])
        return
    yield tree
