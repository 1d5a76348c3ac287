"""A segment's full build evaluated inside PostgreSQL, a range of customers per statement.

Why this module exists: the general path (automation.segments.membership) fetches the
facts of a batch of customers, decides each one in Python and writes each row through
the ORM. That is right for the incremental path (a handful of customers per event) but
a build from scratch reads every customer: per-customer work in Python and a probe of
every monthly partition per batch of ids dominate. Here the condition tree is compiled
to one SQL statement that, for every customer whose id lies in a key range, aggregates
the facts of each event type (and each aggregated property), decides membership and the
next instant the answer can change, and writes the entries, exits and checks with
`INSERT … SELECT` / `UPDATE … FROM` in data-modifying CTEs. Ranges of ids (keyset,
`id > after AND id <= upto`) make the event reads index range scans instead of one
probe per id, and property records are joined on (event_id, created_at), their
partition key, so each event meets only its own month's records.

The semantics are the Python engine's, leaf by leaf (tests/automation/segments/
test_sql_build.py compares both on random data):

* `count`: events of the type with `now - within < occurred_at <= now` (`within`
  absent: all time); none counts 0.
* `aggregate`: over the property's values that read as plain decimal numbers
  (facts.NUMERIC_TEXT) in that window; sum and count of nothing are 0, min / max / avg
  of nothing are missing, and a missing value matches no operator (nor `ne`/`not_in`).
* numbers compare as decimals: the expected value is the Decimal of its text, as
  automation.workflows.conditions.values.to_decimal makes it.
* `last`: the latest event at or before now; none is "more than" any duration.
* `segment`: a current membership of the other segment.
* the next check: the earliest instant after now at which a leaf's answer can change
  alone (the oldest event in a window leaving it, a recency passing, a future-dated
  event coming), over every leaf, matched or not; instants past the calendar's end
  (Python's datetime.max) never come.

`customer` leaves (typed comparisons on JSON attributes, tags, RE2 patterns) are not
compiled: a segment with one is built by the general path (`compile_segment` answers
None and `segment_build` falls back).
"""

# Statements are assembled from table names (model metadata), column aliases and
# operators of this module; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from automation.segments.conditions import CompiledLeaf, _MemberLeaf, _RecencyLeaf, _WindowedLeaf
from automation.segments.engine import AllNode, AnyNode, LeafNode, Node, NotNode, TrueNode
from automation.segments.facts import NUMERIC_TEXT, AggregateKey, CountKey
from automation.segments.hooks import ENTERED, EXITED, Transition, transitions_made
from automation.segments.models import SegmentCheck, SegmentMembership
from automation.segments.selectors import LoadedSegment
from automation.workflows.conditions.values import to_decimal
from customers.models import Customer
from events_app.models import Event, PropertyRecord

logger = logging.getLogger(__name__)

# Customers per statement: large enough that the per-statement costs (planning, the
# scans' start-up, the transaction) vanish, small enough that one statement's lock and
# work stay short next to the incremental refreshes waiting on those customers.
RANGE_SIZE = 50_000
# datetime.max: an edge after it is one the Python engine drops (OverflowError).
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
_AGGREGATES = {"sum": "sum", "min": "min", "max": "max", "avg": "avg", "count": "count"}
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@dataclass
class _Query:
    """What a condition needs from the database, gathered while compiling its tree."""

    params: dict[str, Any] = field(default_factory=dict)
    # event type id -> (column alias -> aggregate expression over that type's events)
    event_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    # (event type id, property id) -> (column alias -> aggregate expression)
    property_columns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def _alias(self, columns: dict[str, str], prefix: str, expression: str) -> str:
        for alias, existing in columns.items():
            if existing == expression:
                return alias
        alias = f"{prefix}{len(columns)}"
        columns[alias] = expression
        return alias

    def event_column(self, type_id: str, expression: str) -> str:
        table = self._table(self.event_columns, type_id, "t")
        return f"{table}.{self._alias(self.event_columns[type_id], 'c', expression)}"

    def property_column(self, type_id: str, property_id: str, expression: str) -> str:
        table = self._table(self.property_columns, (type_id, property_id), "a")
        alias = self._alias(self.property_columns[(type_id, property_id)], "c", expression)
        return f"{table}.{alias}"

    def _table(self, tables: dict[Any, dict[str, str]], key: Any, prefix: str) -> str:
        tables.setdefault(key, {})
        return f"{prefix}{list(tables).index(key)}"

    def edge(self, expression: str) -> None:
        self.edges.append(expression)


class NotCompilable(Exception):
    """A leaf this module does not express in SQL (its segment takes the general path)."""


def _window(query: _Query, within: timedelta | None, now: datetime, column: str) -> str:
    sql = f"{column} <= %(now)s"
    if within is not None:
        sql += f" AND {column} > {query.param(now - within)}"
    return sql


def _numeric_test(query: _Query, value: str, leaf: CompiledLeaf) -> str:
    """The leaf's operator on `value` (NULL: missing), as the Python operators decide."""

    def number(expected: Any) -> str | None:
        decimal = to_decimal(expected)
        return None if not isinstance(decimal, Decimal) else query.param(decimal)

    op, expected = leaf.op, leaf.expected
    if op in _COMPARE:
        literal = number(expected)
        return "FALSE" if literal is None else f"COALESCE({value} {_COMPARE[op]} {literal}, FALSE)"
    if op == "between":
        low, high = number(expected[0]), number(expected[1])
        if low is None or high is None:
            return "FALSE"
        return f"COALESCE({value} BETWEEN {low} AND {high}, FALSE)"
    if op in {"in", "not_in"}:
        options = [o for o in (number(e) for e in expected) if o is not None]
        inside = f"{value} IN ({', '.join(options)})" if options else "FALSE"
        if op == "in":
            return f"COALESCE({inside}, FALSE)"
        return f"({value} IS NOT NULL AND NOT COALESCE({inside}, FALSE))"
    raise NotCompilable(f"{leaf.path}: operator {op}")


def _count_leaf(query: _Query, leaf: _WindowedLeaf, now: datetime) -> str:
    key = leaf.key
    assert isinstance(key, CountKey)
    window = _window(query, key.within, now, "occurred_at")
    count = query.event_column(key.event_type_id, f"count(*) FILTER (WHERE {window})")
    oldest = query.event_column(key.event_type_id, f"min(occurred_at) FILTER (WHERE {window})")
    if key.within is not None:
        query.edge(f"{oldest} + {query.param(key.within)}")
    _future_edge(query, key.event_type_id)
    return _numeric_test(query, f"COALESCE({count}, 0)", leaf)


def _aggregate_leaf(query: _Query, leaf: _WindowedLeaf, now: datetime) -> str:
    key = leaf.key
    assert isinstance(key, AggregateKey)
    numeric = f"r.property_value ~ {query.param(NUMERIC_TEXT)}"
    counted = f"{_window(query, key.within, now, 'e.occurred_at')} AND {numeric}"
    number = f"CASE WHEN {numeric} THEN CAST(r.property_value AS NUMERIC) END"
    value = query.property_column(
        key.event_type_id,
        key.property_id,
        f"{_AGGREGATES[key.fn]}({number}) FILTER (WHERE {counted})",
    )
    oldest = query.property_column(
        key.event_type_id, key.property_id, f"min(e.occurred_at) FILTER (WHERE {counted})"
    )
    if key.within is not None:
        query.edge(f"{oldest} + {query.param(key.within)}")
    _future_edge(query, key.event_type_id)
    if key.fn in {"sum", "count"}:
        value = f"COALESCE({value}, 0)"
    return _numeric_test(query, value, leaf)


def _last_leaf(query: _Query, leaf: _RecencyLeaf, now: datetime) -> str:
    type_id = leaf.key.event_type_id
    last = query.event_column(type_id, "max(occurred_at) FILTER (WHERE occurred_at <= %(now)s)")
    query.edge(f"{last} + {query.param(leaf.duration + timedelta(microseconds=1))}")
    _future_edge(query, type_id)
    since = query.param(now - leaf.duration)
    if leaf.op == "within":
        return f"COALESCE({last} >= {since}, FALSE)"
    return f"COALESCE({last} < {since}, TRUE)"  # never done counts as "longer ago than"


def _future_edge(query: _Query, type_id: str) -> None:
    query.edge(query.event_column(type_id, "min(occurred_at) FILTER (WHERE occurred_at > %(now)s)"))


def _member_leaf(query: _Query, leaf: _MemberLeaf) -> str:
    table = _q(SegmentMembership._meta.db_table)
    return (
        f"EXISTS (SELECT 1 FROM {table} m WHERE m.segment_id = "
        f"{query.param(leaf.key.segment_id)} AND m.customer_id = c.id AND m.exited_at IS NULL)"
    )


def _node(query: _Query, node: Node, now: datetime) -> str:
    if isinstance(node, TrueNode):
        return "TRUE"
    if isinstance(node, NotNode):
        return f"NOT ({_node(query, node.child, now)})"
    if isinstance(node, AllNode):  # AnyNode too
        joiner, empty = (" OR ", "FALSE") if isinstance(node, AnyNode) else (" AND ", "TRUE")
        parts = [f"({_node(query, child, now)})" for child in node.children]
        return joiner.join(parts) if parts else empty
    assert isinstance(node, LeafNode)
    leaf = node.leaf
    if isinstance(leaf, _WindowedLeaf) and leaf.kind == "count":
        return _count_leaf(query, leaf, now)
    if isinstance(leaf, _WindowedLeaf) and leaf.kind == "aggregate":
        return _aggregate_leaf(query, leaf, now)
    if isinstance(leaf, _RecencyLeaf):
        return _last_leaf(query, leaf, now)
    if isinstance(leaf, _MemberLeaf):
        return _member_leaf(query, leaf)
    raise NotCompilable(f"{leaf.path}: a {leaf.kind} leaf")


def _decisions_sql(query: _Query, member: str) -> str:
    """`d`: every customer of the range, whether a member, and their next check."""
    events = _q(Event._meta.db_table)
    records = _q(PropertyRecord._meta.db_table)
    ctes = [f"c AS (SELECT id FROM {_q(Customer._meta.db_table)} WHERE {_RANGE.format('id')})"]
    joins = []
    for index, (type_id, columns) in enumerate(query.event_columns.items()):
        selected = ", ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
        ctes.append(
            f"t{index} AS (SELECT customer_id, {selected} FROM {events} "
            f"WHERE event_type_id = {query.param(type_id)} AND {_RANGE.format('customer_id')} "
            "GROUP BY customer_id)"
        )
        joins.append(f"LEFT JOIN t{index} ON t{index}.customer_id = c.id")
    for index, ((type_id, prop), columns) in enumerate(query.property_columns.items()):
        selected = ", ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
        ctes.append(
            f"a{index} AS (SELECT e.customer_id, {selected} FROM {events} e "
            f"JOIN {records} r ON r.event_id = e.id AND r.created_at = e.created_at "
            f"WHERE e.event_type_id = {query.param(type_id)} "
            f"AND r.property_id = {query.param(prop)} AND {_RANGE.format('e.customer_id')} "
            "GROUP BY e.customer_id)"
        )
        joins.append(f"LEFT JOIN a{index} ON a{index}.customer_id = c.id")
    edges = [
        f"CASE WHEN {edge} > %(now)s AND {edge} <= %(last_instant)s THEN {edge} END"
        for edge in query.edges
    ]
    next_check = f"LEAST({', '.join(edges)})" if edges else "NULL::timestamptz"
    ctes.append(
        f"d AS MATERIALIZED (SELECT c.id, COALESCE({member}, FALSE) AS member, "
        f"{next_check} AS next_check FROM c {' '.join(joins)})"
    )
    return ",\n".join(ctes)


_RANGE = "{0} > %(after)s AND {0} <= %(upto)s"


@dataclass(frozen=True)
class CompiledBuild:
    """A segment's build statement; run once per range of customers."""

    segment: LoadedSegment
    sql: str
    params: dict[str, Any]


def compile_segment(segment: LoadedSegment, now: datetime) -> CompiledBuild | None:
    """The build statement of `segment` as of `now`, or None when it cannot be
    compiled (not PostgreSQL, or a leaf this module does not express)."""
    if connection.vendor != "postgresql":
        return None
    query = _Query(params={"now": now, "last_instant": LAST_INSTANT, "segment": segment.id})
    try:
        member = _node(query, segment.compiled.root, now)
    except NotCompilable as exc:
        logger.info("segment %s is built by the general path: %s", segment.key, exc)
        return None
    memberships = _q(SegmentMembership._meta.db_table)
    checks = _q(SegmentCheck._meta.db_table)
    sql = f"""WITH {_decisions_sql(query, member)},
entered AS (
    INSERT INTO {memberships} (segment_id, customer_id, entered_at)
    SELECT %(segment)s, d.id, %(now)s FROM d
    WHERE d.member AND NOT EXISTS (
        SELECT 1 FROM {memberships} m
        WHERE m.segment_id = %(segment)s AND m.customer_id = d.id AND m.exited_at IS NULL)
    ON CONFLICT (segment_id, customer_id) WHERE exited_at IS NULL DO NOTHING
    RETURNING customer_id, id),
exited AS (
    UPDATE {memberships} m SET exited_at = %(now)s FROM d
    WHERE m.segment_id = %(segment)s AND m.customer_id = d.id AND m.exited_at IS NULL
      AND NOT d.member
    RETURNING m.customer_id, m.id),
checked AS (
    INSERT INTO {checks} (segment_id, customer_id, next_check_at)
    SELECT %(segment)s, d.id, d.next_check FROM d WHERE d.next_check IS NOT NULL
    ON CONFLICT (segment_id, customer_id) DO UPDATE SET next_check_at = EXCLUDED.next_check_at),
unchecked AS (
    DELETE FROM {checks} k USING d
    WHERE k.segment_id = %(segment)s AND k.customer_id = d.id AND d.next_check IS NULL)
SELECT 'entered', customer_id, id FROM entered
UNION ALL SELECT 'exited', customer_id, id FROM exited"""
    return CompiledBuild(segment, sql, query.params)


def _lock_range(after: str, size: int) -> tuple[str | None, int]:
    """Lock the next `size` customers after `after` (id order, as the general path's
    lock: concurrent refreshes of these customers wait); their last id and count."""
    table = _q(Customer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT max(id), count(*) FROM (SELECT id FROM {table} WHERE id > %s "
            "ORDER BY id LIMIT %s FOR NO KEY UPDATE) locked",
            [after, size],
        )
        upto, count = cursor.fetchone()
    return upto, count


def build_range(build: CompiledBuild, *, after: str, quiet: bool) -> tuple[str | None, int, int]:
    """Build one range: the customers after `after`, up to RANGE_SIZE of them, in one
    transaction. Returns (the range's last id or None when none is left, customers,
    transitions)."""
    with transaction.atomic():
        upto, count = _lock_range(after, RANGE_SIZE)
        if upto is None:
            return None, 0, 0
        now = timezone.now()
        # The statement was compiled for a moment; a range is decided as of its own.
        params = {**build.params, "now": now, "after": after, "upto": upto}
        params.update(_shifted(build.params, now))
        with connection.cursor() as cursor:
            cursor.execute(build.sql, params)
            rows = cursor.fetchall()
        segment = build.segment
        transitions = [
            Transition(
                segment.id,
                segment.key,
                customer,
                membership,
                ENTERED if what == "entered" else EXITED,
                now,
            )
            for what, customer, membership in rows
        ]
        if not quiet:
            transitions_made(transitions)
    return upto, count, len(transitions)


def _shifted(params: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Instants compiled relative to the compile-time `now`, moved to this range's."""
    delta = now - params["now"]
    return {
        name: value + delta
        for name, value in params.items()
        if name not in {"now", "last_instant"} and isinstance(value, datetime)
    }


def segment_build_sql(
    *,
    segment: LoadedSegment,
    quiet: bool,
    still_current: Callable[[], bool],
    progress: Callable[[int], None] | None = None,
) -> int | None:
    """Build `segment` range by range; the transitions made, or None when it cannot be
    compiled (the caller takes the general path). Stops early, returning what it made,
    when `still_current()` turns false (the segment changed meanwhile)."""
    build = compile_segment(segment, timezone.now())
    if build is None:
        return None
    made, done, after = 0, 0, ""
    while still_current():
        upto, count, transitions = build_range(build, after=after, quiet=quiet)
        if upto is None:
            break
        made, done, after = made + transitions, done + count, upto
        logger.info("segment %s build: %d customers evaluated", segment.key, done)
        if progress is not None:
            progress(done)
    return made
