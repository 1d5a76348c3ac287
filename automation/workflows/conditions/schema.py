"""The condition tree described as data: a JSON Schema, and the rule builder's catalogue.

Both are generated from the registries (the operators' `label`, `types` and
`shape`, the subjects and fields of automation.workflows.conditions.trees), so a
new operator or field reaches the admin's builder and the schema without a second
list to keep in step. The schema states the tree's shape (groups, leaves, the
operator names, the value's shape per operator); what depends on the database
(event types, segments) and the messages by path stay with `trees.validate`, which
every write still runs.
"""

from __future__ import annotations

from typing import Any

from automation.workflows.conditions.operators import NUMERIC_OPS, REGISTRY
from automation.workflows.conditions.trees import (
    CUSTOMER_FIELDS,
    EVENT_FIELDS,
    MAX_DEPTH,
    SUBJECTS,
)

# The value type of each event and customer field, as the builder offers operators
# for it. `data` and `attributes` are objects whose paths are untyped ("any").
EVENT_FIELD_TYPES: dict[str, str] = {
    "event_id": "string",
    "event_type": "string",
    "external_id": "string",
    "secondary_external_id": "string",
    "occurred_at": "datetime",
    "created_at": "datetime",
    "depth": "number",
    "data": "object",
}
CUSTOMER_FIELD_TYPES: dict[str, str] = {
    "customer_id": "string",
    "external_id": "string",
    "email": "string",
    "created_at": "datetime",
    "tags": "list",
    "attributes": "object",
}
if set(EVENT_FIELD_TYPES) != EVENT_FIELDS or set(CUSTOMER_FIELD_TYPES) != CUSTOMER_FIELDS:
    raise ImportError("EVENT_FIELD_TYPES / CUSTOMER_FIELD_TYPES must name every field")

SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}
DURATION: dict[str, Any] = {
    "type": "string",
    "pattern": r"^P(?!$)(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$",
}
_SHAPE_SCHEMAS: dict[str, dict[str, Any]] = {
    "scalar": SCALAR,
    "pair": {"type": "array", "items": SCALAR, "minItems": 2, "maxItems": 2},
    "list": {"type": "array", "items": SCALAR, "minItems": 1, "maxItems": 1000},
    "duration": DURATION,
    "regex": {"type": "string", "maxLength": 1000},
}


def _leaf_schema(subject: str, target: dict[str, Any], ops: list[str]) -> dict[str, Any]:
    """One subject's leaves: one branch per operator, so each op carries its value's shape."""
    branches = []
    for name in ops:
        operator = REGISTRY[name]
        properties: dict[str, Any] = {subject: target, "op": {"const": name}}
        required = [subject, "op"]
        if operator.shape != "none":
            properties["value"] = _SHAPE_SCHEMAS[operator.shape]
            required.append("value")
        branches.append(
            {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            }
        )
    return {"oneOf": branches}


def condition_tree_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) of a workflow's condition tree.

    Groups nest through `$ref`; a leaf is one branch per subject and operator. The
    limits the schema cannot say (MAX_LEAVES, paths inside `data` / `attributes`,
    whether an event type or segment exists) are `trees.validate`'s and the services'.
    """
    path = {"type": "string", "minLength": 1, "maxLength": 200}
    ref = {"type": "string", "minLength": 1, "maxLength": 64}
    all_ops = list(REGISTRY)
    leaves = {
        "property": _leaf_schema("property", ref, all_ops),
        "event": _leaf_schema("event", path, all_ops),
        "customer": _leaf_schema("customer", path, all_ops),
        "count": _leaf_schema(
            "count",
            {
                "type": "object",
                "properties": {"event_type": ref, "within": DURATION},
                "required": ["event_type", "within"],
                "additionalProperties": False,
            },
            [op for op in REGISTRY if op in NUMERIC_OPS],
        ),
        "first": {
            "type": "object",
            "properties": {"first": ref, "op": {"const": "eq"}, "value": {"type": "boolean"}},
            "required": ["first"],
            "additionalProperties": False,
        },
        "segment": {
            "type": "object",
            "properties": {"segment": ref},
            "required": ["segment"],
            "additionalProperties": False,
        },
    }
    assert set(leaves) == set(SUBJECTS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://herald.example/schemas/workflow-conditions.json",
        "title": "Workflow conditions",
        "description": f"Groups nest at most {MAX_DEPTH} levels; {{}} always matches.",
        "anyOf": [{"const": {}}, {"$ref": "#/$defs/node"}],
        "$defs": {
            "node": {"anyOf": [{"$ref": "#/$defs/group"}, {"$ref": "#/$defs/leaf"}]},
            "group": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {
                            key: {
                                "type": "array",
                                "items": {"$ref": "#/$defs/node"},
                                "minItems": 1,
                            }
                        },
                        "required": [key],
                        "additionalProperties": False,
                    }
                    for key in ("all", "any")
                ]
                + [
                    {
                        "type": "object",
                        "properties": {"not": {"$ref": "#/$defs/node"}},
                        "required": ["not"],
                        "additionalProperties": False,
                    }
                ],
            },
            "leaf": {"oneOf": [{"$ref": f"#/$defs/{subject}_leaf"} for subject in SUBJECTS]},
            **{f"{subject}_leaf": schema for subject, schema in leaves.items()},
        },
    }


def operator_catalogue() -> dict[str, dict[str, Any]]:
    """Every operator as the builder offers it: its words, types and value shape."""
    return {
        name: {
            "label": operator.label,
            "types": sorted(operator.types),
            "shape": operator.shape,
            "numeric": name in NUMERIC_OPS,
        }
        for name, operator in REGISTRY.items()
    }
