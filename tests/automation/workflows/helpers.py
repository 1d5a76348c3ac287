"""Builders shared by the workflow tests (plain functions, no hidden state)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from automation.workflows.engine import (
    CompiledWorkflow,
    CountKey,
    EventContext,
    Explanation,
    evaluate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def context(
    *,
    data: dict[str, Any] | None = None,
    properties: dict[str, str] | None = None,
    types: dict[str, str] | None = None,
    attributes: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    counts: dict[CountKey, int] | None = None,
    first: dict[str, bool] | None = None,
    occurred_at: datetime = NOW,
) -> EventContext:
    return EventContext(
        event={
            "event_id": "e1",
            "event_type": "purchase",
            "event_type_id": "t-purchase",
            "external_id": "ref-1",
            "secondary_external_id": None,
            "occurred_at": occurred_at,
            "created_at": NOW,
            "depth": 0,
            "data": data if data is not None else {},
        },
        customer={
            "customer_id": "c1",
            "external_id": "alice",
            "email": "alice@example.com",
            "created_at": NOW,
            "attributes": attributes if attributes is not None else {},
            "tags": tags if tags is not None else [],
        },
        properties=properties or {},
        property_types=types or {},
        counts=counts or {},
        first_of_type=first or {},
        now=NOW,
    )


def explain(tree: dict[str, Any], ctx: EventContext, **type_ids: str) -> Explanation:
    return evaluate(CompiledWorkflow(workflow_id="w", conditions=tree, type_ids=type_ids), ctx)


def matches(tree: dict[str, Any], ctx: EventContext, **type_ids: str) -> bool:
    return explain(tree, ctx, **type_ids).matched
