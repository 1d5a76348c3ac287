"""The set-based replay: a tree of frequency leaves answered by PostgreSQL in one pass.

When every leaf of a workflow's tree counts events ("did T at least N times within
W": numeric comparisons of a count), nothing of an event but its customer and time
is read, so the replay (automation.workflows.simulation.replay) can be one statement:
window functions give each triggered event its counts as of its time, the leaves and
the tree are SQL conditions over them, and the funnel is counted in the database.
Only the matched events come back to Python, for the re-entry policy and the samples.

Each count has the replay's meaning exactly: the events of T of the customer up to
this one in (occurred_at, id) order, minus those with occurred_at <= t - W --

    count(*) FILTER (WHERE type = T) OVER (… ORDER BY occurred_at, id ROWS UNBOUNDED PRECEDING)
  - count(*) FILTER (WHERE type = T) OVER (… ORDER BY occurred_at
                                            RANGE BETWEEN UNBOUNDED PRECEDING AND W PRECEDING)

(the tests run both replays against live evaluation). Speed that costs readability
lives here alone, and pays for itself in bench/simulate.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Max

from automation.workflows.conditions.values import MISSING, coerce_like
from automation.workflows.engine import (
    AllNode,
    AnyNode,
    CountKey,
    EventContext,
    Leaf,
    Node,
    NotNode,
    TrueNode,
    evaluate,
    leaves_of,
)
from automation.workflows.evaluation import EVALUATION_ERROR
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.simulation.replay import MAX_SAMPLES, ReplaySpec
from events_app.models import Event

_COMPARISONS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
FETCH = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(span: timedelta) -> int:
    return (span.days * 86400 + span.seconds) * 1_000_000 + span.microseconds


class NotSetBased(Exception):
    """The tree reads something besides counts: the streaming replay answers it."""


def applicable(spec: ReplaySpec) -> bool:
    """Can this replay be set-based? (PostgreSQL, counts only, no caps, no watermark.)"""
    if connection.vendor != "postgresql" or spec.created_before is not None:
        return False
    if spec.policy is not None and spec.policy.caps:
        return False
    try:
        _condition(spec.workflow.compiled.root, {}, [])
    except NotSetBased:
        return False
    return True


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    coerced = coerce_like(0, value)
    return None if coerced is MISSING or not isinstance(coerced, Decimal) else coerced


def _leaf(leaf: Leaf, columns: dict[CountKey, str], params: list[Any]) -> str:
    if leaf.subject != "count" or leaf.count_key is None:
        raise NotSetBased(leaf.path)
    column = columns.setdefault(leaf.count_key, f"c{len(columns)}")
    if leaf.op_name in _COMPARISONS or leaf.op_name == "ne":
        expected = _number(leaf.expected)
        if expected is None:
            if isinstance(leaf.expected, list | dict):
                raise NotSetBased(leaf.path)
            return "TRUE" if leaf.op_name == "ne" else "FALSE"
        params.append(expected)
        if leaf.op_name == "ne":
            return f"({column} <> %s)"
        return f"({column} {_COMPARISONS[leaf.op_name]} %s)"
    if leaf.op_name == "between" and isinstance(leaf.expected, list):
        low, high = (_number(v) for v in leaf.expected)
        if low is None or high is None:
            return "FALSE"
        params.extend([low, high])
        return f"({column} BETWEEN %s AND %s)"
    if leaf.op_name == "exists":
        return "TRUE"
    if leaf.op_name == "not_exists":
        return "FALSE"
    raise NotSetBased(leaf.path)


def _condition(node: Node, columns: dict[CountKey, str], params: list[Any]) -> str:
    if isinstance(node, Leaf):
        return _leaf(node, columns, params)
    if isinstance(node, AnyNode):
        return "(" + " OR ".join(_condition(c, columns, params) for c in node.children) + ")"
    if isinstance(node, AllNode):
        return "(" + " AND ".join(_condition(c, columns, params) for c in node.children) + ")"
    if isinstance(node, NotNode):
        return f"(NOT {_condition(node.child, columns, params)})"
    if isinstance(node, TrueNode):
        return "TRUE"
    raise NotSetBased(type(node).__name__)


def _statement(spec: ReplaySpec, start: datetime, end: datetime) -> tuple[str, list[Any], int]:
    """The one statement: a first row of aggregates, then the matched events.

    Returns (sql, params, number of count columns)."""
    root = spec.workflow.compiled.root
    columns: dict[CountKey, str] = {}
    leaf_params: list[Any] = []
    leaf_sql = [_leaf(leaf, columns, leaf_params) for leaf in leaves_of(root)]
    tree_params: list[Any] = []
    tree_sql = _condition(root, columns, tree_params)
    keys = list(columns)
    lookback = max((k.within for k in keys), default=timedelta(0))
    table = connection.ops.quote_name(Event._meta.db_table)
    count_params: list[Any] = []
    count_sql = []
    for key in keys:
        count_sql.append(
            "count(*) FILTER (WHERE e.event_type_id = %s) OVER running"
            " - count(*) FILTER (WHERE e.event_type_id = %s) OVER (PARTITION BY e.customer_id"
            " ORDER BY e.occurred_at RANGE BETWEEN UNBOUNDED PRECEDING AND %s PRECEDING)"
            f" AS {columns[key]}"
        )
        count_params += [key.event_type_id, key.event_type_id, key.within]
    stream_types = sorted(spec.trigger_type_ids | {k.event_type_id for k in keys})
    counts_array = "ARRAY[" + ", ".join(columns[k] for k in keys) + "]::bigint[]"
    if not keys:
        counts_array = "ARRAY[]::bigint[]"
    selected = ", ".join(["e.id", "e.customer_id", "e.occurred_at", "e.event_type_id", *count_sql])
    every_event = spec.workflow.reentry == Workflow.EVERY_EVENT
    counted = ["count(*)", *[f"count(*) FILTER (WHERE {sql})" for sql in leaf_sql]]
    aggregate_params = list(leaf_params)
    if every_event:
        # Every match runs: the database counts the runs and picks the first samples.
        counted.append(f"count(*) FILTER (WHERE {tree_sql})")
        aggregate_params += tree_params
    # The time as integer microseconds since the epoch: parsing a timestamp per matched
    # row cost more than the rest of Python's share of the replay.
    matched = (
        f"SELECT 1, {counts_array}, id, customer_id, "  # noqa: S608
        f"(extract(epoch FROM occurred_at) * 1000000)::bigint FROM s WHERE {tree_sql}"
    )
    once = spec.workflow.reentry == Workflow.ONCE_PER_CUSTOMER
    if every_event:
        matched = f"({matched} ORDER BY occurred_at, id LIMIT {MAX_SAMPLES})"
    elif once:
        # Only a customer's first match can run (if no run came before the period).
        matched = matched.replace("SELECT 1,", "SELECT DISTINCT ON (customer_id) 1,", 1)
        matched = f"({matched} ORDER BY customer_id, occurred_at, id)"
    sql = (
        f"WITH s AS MATERIALIZED (SELECT * FROM (SELECT {selected} FROM {table} AS e"  # noqa: S608
        " WHERE e.event_type_id = ANY(%s) AND e.occurred_at >= %s AND e.occurred_at < %s"
        " WINDOW running AS (PARTITION BY e.customer_id ORDER BY e.occurred_at, e.id"
        " ROWS UNBOUNDED PRECEDING)) AS w"
        " WHERE w.event_type_id = ANY(%s) AND w.occurred_at >= %s)"
        f" SELECT 0, ARRAY[{', '.join(counted)}]::bigint[], NULL, NULL, NULL::bigint FROM s"
        f" UNION ALL {matched}"
    )
    if not every_event and not once:
        # Re-entry is a customer's own history: each customer's matches in time order.
        sql = f"SELECT * FROM ({sql}) AS r ORDER BY 1, 4, 5, 3"  # noqa: S608
    params = [
        *count_params,
        stream_types,
        start - lookback,
        end,
        sorted(spec.trigger_type_ids),
        start,
        *aggregate_params,
        *tree_params,
    ]
    return sql, params, len(keys)


def _stream(sql: str, params: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Rows through a server-side cursor: constant memory whatever the period."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH):
            yield from rows


def _last_runs(spec: ReplaySpec, start: datetime) -> dict[str, datetime]:
    """A saved workflow's last run per customer before the period (re-entry's seed)."""
    if spec.saved_workflow_id is None:
        return {}
    return dict(
        WorkflowRun.objects.filter(
            workflow_id=spec.saved_workflow_id, broadcast__isnull=True, created_at__lt=start
        )
        .exclude(explanation__has_key=EVALUATION_ERROR)
        .order_by()
        .values("customer_id")
        .annotate(last=Max("created_at"))
        .values_list("customer_id", "last")
    )


def set_based_result(spec: ReplaySpec, *, start: datetime, end: datetime) -> dict[str, Any]:
    """The simulation's result (without notes), set-based; see `applicable`."""
    sql, params, _ = _statement(spec, start, end)
    workflow = spec.workflow
    keys: list[CountKey] = []
    seen: set[CountKey] = set()
    for leaf in leaves_of(workflow.compiled.root):
        if leaf.count_key is not None and leaf.count_key not in seen:
            seen.add(leaf.count_key)
            keys.append(leaf.count_key)
    limited = workflow.reentry != Workflow.EVERY_EVENT
    period = (
        _micros(timedelta(seconds=workflow.period_seconds))
        if workflow.period_seconds is not None
        else None
    )
    last_run: dict[str, int | None] = (
        {customer: _micros(last - EPOCH) for customer, last in _last_runs(spec, start).items()}
        if limited
        else {}
    )
    aggregates: list[int] = []
    would_run = 0
    samples: list[_Neg] = []  # the earliest MAX_SAMPLES runs, the latest on top
    for kind, numbers, event_id, customer_id, occurred_at in _stream(sql, params):
        # occurred_at: microseconds since the epoch (see _statement).
        if kind == 0:
            aggregates = list(numbers)
            continue
        if limited:
            previous = last_run.get(customer_id)
            if previous is not None and (period is None or previous > occurred_at - period):
                continue
            last_run[customer_id] = occurred_at
        would_run += 1
        item = _Neg((occurred_at, event_id, customer_id, numbers))
        if len(samples) < MAX_SAMPLES:
            heapq.heappush(samples, item)
        elif samples[0] < item:
            heapq.heapreplace(samples, item)
    chosen = sorted((s.item for s in samples), key=lambda item: item[:2])
    leaves = leaves_of(workflow.compiled.root)
    considered = aggregates[0] if aggregates else 0
    if not limited:
        would_run = aggregates[-1] if aggregates else 0
    funnel = [
        {
            "path": leaf.path,
            "evaluated": considered,
            "matched": aggregates[i + 1] if aggregates else 0,
        }
        for i, leaf in enumerate(leaves)
    ]
    return {
        "events_considered": considered,
        "would_run": would_run,
        "leaves": funnel,
        "samples": [_sample(spec, keys, item) for item in chosen],
    }


class _Neg:
    """Reverses the order of a sample candidate (heapq keeps the smallest on top)."""

    __slots__ = ("item",)

    def __init__(self, item: tuple[int, str, str, list[int]]) -> None:
        self.item = item

    def __lt__(self, other: _Neg) -> bool:
        return self.item[:2] > other.item[:2]


def _sample(
    spec: ReplaySpec, keys: list[CountKey], item: tuple[int, str, str, list[int]]
) -> dict[str, Any]:
    micros, event_id, customer_id, numbers = item
    occurred_at = EPOCH + timedelta(microseconds=micros)
    context = EventContext(
        event={"event_id": event_id, "occurred_at": occurred_at},
        customer={"customer_id": customer_id},
        counts=dict(zip(keys, numbers, strict=True)),
        now=occurred_at,
    )
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "capped": None,
        "explanation": evaluate(spec.workflow.compiled, context).as_dict(),
    }
