"""A segment's condition compiled to the statements of its build in PostgreSQL
(automation.segments.sql_build runs them).

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
  (Python's datetime.max) never come. A customer with no such instant has no check
  row, as on the general path.

`customer` leaves (typed comparisons on JSON attributes, tags, RE2 patterns) are not
compiled: a segment with one is built by the general path (`compile_segment` answers
None and `segment_build` falls back).
"""

# Statements are assembled from table names (model metadata), column aliases and
# operators of this module; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from automation.segments.conditions import (
    MONOTONE_OPS,
    CompiledLeaf,
    _MemberLeaf,
    _RecencyLeaf,
    _WindowedLeaf,
)
from automation.segments.engine import AllNode, AnyNode, LeafNode, Node, NotNode, TrueNode
from automation.segments.facts import NUMERIC_TEXT, AggregateKey, CountKey
from automation.segments.models import SegmentCheck, SegmentMembership
from automation.segments.selectors import LoadedSegment
from automation.workflows.conditions.values import to_decimal
from customers.models import Customer
from events_app.models import Event, PropertyRecord

logger = logging.getLogger(__name__)


# datetime.max: an edge after it is one the Python engine drops (OverflowError).
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
_AGGREGATES = {"sum": "sum", "min": "min", "max": "max", "avg": "avg", "count": "count"}
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# facts.NUMERIC_TEXT without its bounds, and what its exponent's bound rules out.
_NUMERIC_UNBOUNDED = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_EXPONENT_TOO_LONG = r"[eE][-+]?[0-9][0-9][0-9][0-9]"
# The temporary tables of a build (dropped at its end, and at commit in any case).
_EVENTS_TABLE = "segment_build_events"
_PROPERTY_TABLE = "segment_build_property_{}"


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@dataclass
class _Query:
    """What a condition needs from the database, gathered while compiling its tree."""

    params: dict[str, Any] = field(default_factory=dict)
    # event type id -> (column alias -> (aggregate, the events it reads))
    event_columns: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    # The instants before which no event matters to a column (None: all time).
    events_since: list[datetime | None] = field(default_factory=list)
    # (event type id, property id) -> (column alias -> aggregate expression)
    property_columns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    # (event type id, property id) -> the windows its aggregates read (None: all time)
    property_windows: dict[tuple[str, str], set[timedelta | None]] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)
    # The leaves in the tree's order: (answer, upcoming change over the edge columns).
    leaves: list[tuple[str, str]] = field(default_factory=list)

    def param(self, value: Any) -> str:
        for name, existing in self.params.items():
            if type(existing) is type(value) and existing == value and name.startswith("p"):
                return f"%({name})s"
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def event_column(self, type_id: str, aggregate: str, where: str, since: datetime | None) -> str:
        """`aggregate` over the events of `type_id` matching `where`, per customer;
        `since`: no event that occurred before it matters (None: all may)."""
        self.events_since.append(since)
        columns = self.event_columns.setdefault(type_id, {})
        index = list(self.event_columns).index(type_id)
        for alias, existing in columns.items():
            if existing == (aggregate, where):
                return f"e.{alias}"
        alias = f"t{index}_{len(columns)}"
        columns[alias] = (aggregate, where)
        return f"e.{alias}"

    def property_column(
        self, type_id: str, property_id: str, within: timedelta | None, expression: str
    ) -> str:
        key = (type_id, property_id)
        columns = self.property_columns.setdefault(key, {})
        self.property_windows.setdefault(key, set()).add(within)
        table = f"a{list(self.property_columns).index(key)}"
        for alias, existing in columns.items():
            if existing == expression:
                return f"{table}.{alias}"
        alias = f"c{len(columns)}"
        columns[alias] = expression
        return f"{table}.{alias}"

    def edge(self, expression: str) -> str:
        """`expression` (an instant) as a column of the decisions' first level, NULL
        unless after now and before the calendar's end."""
        self.edges.append(expression)
        return f"x{len(self.edges) - 1}"


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


# A leaf compiled: its answer (a boolean that is never NULL) and, in terms of that
# answer ({answer}), the earliest instant it may change (NULL: never).
_Leaf = tuple[str, str]


def _least(instants: list[str]) -> str:
    return f"LEAST({', '.join(instants)})" if instants else "NULL::timestamptz"


def _window_and_future(
    query: _Query, leaf: _WindowedLeaf, answer: str, leaving: str | None, now: datetime
) -> str:
    """A windowed leaf's change (conditions._WindowedLeaf.changes): the window's edge
    `leaving` and the next future-dated event, less the one that cannot turn it."""
    future = _future_edge(query, leaf.key.event_type_id, now)
    counted = leaf.kind == "count" or getattr(leaf.key, "fn", None) == "count"
    if not counted or leaf.op not in MONOTONE_OPS:
        return _least([e for e in (leaving, future) if e is not None])
    falling = answer if leaf.op in {"gt", "gte"} else f"NOT {answer}"
    instants = [f"CASE WHEN NOT {falling} THEN {future} END"]
    if leaving is not None:
        instants.append(f"CASE WHEN {falling} THEN {leaving} END")
    return _least(instants)


def _count_leaf(query: _Query, leaf: _WindowedLeaf, now: datetime) -> _Leaf:
    key = leaf.key
    assert isinstance(key, CountKey)
    window = _window(query, key.within, now, "occurred_at")
    since = None if key.within is None else now - key.within
    count = query.event_column(key.event_type_id, "count(*)", window, since)
    oldest = query.event_column(key.event_type_id, "min(occurred_at)", window, since)
    leaving = None
    if key.within is not None:
        leaving = query.edge(f"{oldest} + {query.param(key.within)}")
    answer = _numeric_test(query, f"COALESCE({count}, 0)", leaf)
    return answer, _window_and_future(query, leaf, "{answer}", leaving, now)


def _aggregate_leaf(query: _Query, leaf: _WindowedLeaf, now: datetime) -> _Leaf:
    key = leaf.key
    assert isinstance(key, AggregateKey)
    # `x`: the property's events, each with its value as a number (NULL: not one).
    counted = f"{_window(query, key.within, now, 'x.occurred_at')} AND x.number IS NOT NULL"
    value = query.property_column(
        key.event_type_id,
        key.property_id,
        key.within,
        f"{_AGGREGATES[key.fn]}(x.number) FILTER (WHERE {counted})",
    )
    oldest = query.property_column(
        key.event_type_id,
        key.property_id,
        key.within,
        f"min(x.occurred_at) FILTER (WHERE {counted})",
    )
    leaving = None
    if key.within is not None:
        leaving = query.edge(f"{oldest} + {query.param(key.within)}")
    if key.fn in {"sum", "count"}:
        value = f"COALESCE({value}, 0)"
    answer = _numeric_test(query, value, leaf)
    return answer, _window_and_future(query, leaf, "{answer}", leaving, now)


def _last_leaf(query: _Query, leaf: _RecencyLeaf, now: datetime) -> _Leaf:
    type_id = leaf.key.event_type_id
    # A last event before now - duration decides as none does (not within, more than;
    # its edge has passed), so older events need not be read.
    last = query.event_column(
        type_id, "max(occurred_at)", "occurred_at <= %(now)s", now - leaf.duration
    )
    passing = query.edge(f"{last} + {query.param(leaf.duration + timedelta(microseconds=1))}")
    future = _future_edge(query, type_id, now)
    since = query.param(now - leaf.duration)
    if leaf.op == "within":
        answer = f"COALESCE({last} >= {since}, FALSE)"
        coming = "CASE WHEN NOT {answer} THEN " + future + " END"
    else:  # never done counts as "longer ago than"
        answer = f"COALESCE({last} < {since}, TRUE)"
        coming = "CASE WHEN {answer} THEN " + future + " END"
    return answer, _least([passing, coming])


def _future_edge(query: _Query, type_id: str, now: datetime) -> str:
    future = query.event_column(type_id, "min(occurred_at)", "occurred_at > %(now)s", now)
    return query.edge(future)


def _member_leaf(query: _Query, leaf: _MemberLeaf) -> _Leaf:
    table = _q(SegmentMembership._meta.db_table)
    answer = (
        f"EXISTS (SELECT 1 FROM {table} m WHERE m.segment_id = "
        f"{query.param(leaf.key.segment_id)} AND m.customer_id = c.id AND m.exited_at IS NULL)"
    )
    return answer, "NULL::timestamptz"


def _leaf(query: _Query, leaf: CompiledLeaf, now: datetime) -> _Leaf:
    if isinstance(leaf, _WindowedLeaf) and leaf.kind == "count":
        return _count_leaf(query, leaf, now)
    if isinstance(leaf, _WindowedLeaf) and leaf.kind == "aggregate":
        return _aggregate_leaf(query, leaf, now)
    if isinstance(leaf, _RecencyLeaf):
        return _last_leaf(query, leaf, now)
    if isinstance(leaf, _MemberLeaf):
        return _member_leaf(query, leaf)
    raise NotCompilable(f"{leaf.path}: a {leaf.kind} leaf")


def _node(query: _Query, node: Node, now: datetime) -> tuple[str, str]:
    """The node's answer and the earliest instant it may change, as engine.Node.settle
    decides them, over the leaves' columns (`l<i>`, `n<i>`)."""
    if isinstance(node, TrueNode):
        return "TRUE", "NULL::timestamptz"
    if isinstance(node, NotNode):
        answer, upcoming = _node(query, node.child, now)
        return f"(NOT {answer})", upcoming
    if isinstance(node, AllNode):  # AnyNode too
        children = [_node(query, child, now) for child in node.children]
        every = isinstance(node, AnyNode) is False
        joiner = " AND " if every else " OR "
        answer = f"({joiner.join(a for a, _ in children)})" if children else str(every).upper()
        # As engine._settle_group: an `all` that holds or an `any` that does not changes
        # when any child does; otherwise when all the children holding it there do.
        holds = (lambda a: f"NOT {a}") if every else (lambda a: a)
        able = " AND ".join(f"(NOT {holds(a)} OR {u} IS NOT NULL)" for a, u in children)
        holding = _least([f"CASE WHEN {holds(a)} THEN {u} END" for a, u in children])
        settled = answer if every else f"NOT {answer}"
        upcoming = (
            f"CASE WHEN {settled} THEN {_least([u for _, u in children])} "
            f"WHEN {able or 'TRUE'} THEN {holding} END"
        )
        return answer, upcoming
    assert isinstance(node, LeafNode)
    answer, upcoming = _leaf(query, node.leaf, now)
    index = len(query.leaves)
    query.leaves.append((answer, upcoming.format(answer=f"l{index}")))
    return f"l{index}", f"n{index}"


def _events_sql(query: _Query) -> str:
    """Step 1: every read event type's facts per customer, in one scan of the events."""
    types, selected = [], []
    for type_id, columns in query.event_columns.items():
        is_type = f"event_type_id = {query.param(type_id)}"
        types.append(query.param(type_id))
        selected += [
            f"{aggregate} FILTER (WHERE {is_type} AND {where}) AS {alias}"
            for alias, (aggregate, where) in columns.items()
        ]
    since = "" if _since(query.events_since) is None else _SINCE.format("")
    return (
        f"CREATE TEMPORARY TABLE {_EVENTS_TABLE} ON COMMIT DROP AS "
        f"SELECT customer_id, {', '.join(selected)} FROM {_q(Event._meta.db_table)} "
        f"WHERE event_type_id IN ({', '.join(types)}){since} GROUP BY customer_id"
    )


# Only the events since `since` matter, and none of them is in a partition before
# `cutoff` (_created_cutoff): the older partitions are not read.
_SINCE = " AND {0}occurred_at >= %(since)s AND {0}created_at >= %(cutoff)s"


def _since(bounds: list[datetime | None]) -> datetime | None:
    """The earliest of `bounds`, None when one of them is None (all time)."""
    return None if not bounds or None in bounds else min(b for b in bounds if b is not None)


def created_cutoff(since: datetime) -> datetime:
    """The earliest `created_at` of an event that occurred at or after `since`, as far
    as the partitions tell: the first created_at of the oldest partition whose latest
    occurred_at is not before `since` (both read from the partitions' indexes). The
    events are partitioned by created_at, which does not bound occurred_at (events are
    dated by their senders, backfilled, dated in the future), so this asks instead of
    assuming; an event stored after this question is refreshed after the build."""
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.inhrelid::regclass::text FROM pg_inherits i WHERE i.inhparent = %s::regclass",
            [table],
        )
        partitions = [row[0] for row in cursor.fetchall()]
        if not partitions:
            return datetime.min.replace(tzinfo=UTC)
        bounds = " UNION ALL ".join(
            f"SELECT (SELECT min(created_at) FROM {p}) AS first_created, "
            f"(SELECT max(occurred_at) FROM {p}) AS last_occurred"
            for p in partitions
        )
        cursor.execute(
            f"SELECT min(first_created) FROM ({bounds}) b WHERE last_occurred >= %s", [since]
        )
        cutoff = cursor.fetchone()[0]
    return LAST_INSTANT if cutoff is None else cutoff


def _property_sql(query: _Query, index: int, type_id: str, property_id: str) -> str:
    """Step 2: one property's aggregates per customer, over the widest window read."""
    columns = query.property_columns[(type_id, property_id)]
    selected = ", ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
    windows = query.property_windows[(type_id, property_id)]
    # Events outside every window of these aggregates count in none of them.
    widest = " AND e.occurred_at <= %(now)s"
    if None not in windows:
        widest += _SINCE.format("e.") + " AND r.created_at >= %(cutoff)s"
    # Matched once per record, in the subquery (OFFSET 0 keeps it from being inlined
    # into every aggregate). NUMERIC_TEXT's bounded repeats make its automaton slow; a
    # text of at most 60 characters cannot exceed the digit bounds, so for those the
    # unbounded pattern and the exponent's bound decide the same, several times faster.
    value = "r.property_value"
    number = (
        f"CASE WHEN CASE WHEN length({value}) <= 60 THEN {value} ~ "
        f"{query.param(_NUMERIC_UNBOUNDED)} AND {value} !~ {query.param(_EXPONENT_TOO_LONG)} "
        f"ELSE {value} ~ {query.param(NUMERIC_TEXT)} END THEN CAST({value} AS NUMERIC) END"
    )
    return (
        f"CREATE TEMPORARY TABLE {_PROPERTY_TABLE.format(index)} ON COMMIT DROP AS "
        f"SELECT x.customer_id, {selected} FROM ("
        f"SELECT e.customer_id, e.occurred_at, {number} AS number "
        f"FROM {_q(Event._meta.db_table)} e JOIN {_q(PropertyRecord._meta.db_table)} r "
        "ON r.event_id = e.id AND r.created_at = e.created_at "
        f"WHERE e.event_type_id = {query.param(type_id)} AND r.property_id = "
        f"{query.param(property_id)}{widest} OFFSET 0) x GROUP BY x.customer_id"
    )


def _write_sql(query: _Query, root: tuple[str, str], *, quiet: bool) -> str:
    """Step 3: decide every customer and write the difference, in one statement."""
    customers = _q(Customer._meta.db_table)
    memberships = _q(SegmentMembership._meta.db_table)
    checks = _q(SegmentCheck._meta.db_table)
    joins = []
    if query.event_columns:
        joins.append(f"LEFT JOIN {_EVENTS_TABLE} e ON e.customer_id = c.id")
    for index in range(len(query.property_columns)):
        table = _PROPERTY_TABLE.format(index)
        joins.append(f"LEFT JOIN {table} a{index} ON a{index}.customer_id = c.id")
    # Three levels: the leaves' answers and the edges (kept from being inlined into
    # the levels above, which refer to them several times), each leaf's next change,
    # then the tree's.
    first = ["c.id"]
    first += [f"{answer} AS l{i}" for i, (answer, _) in enumerate(query.leaves)]
    first += [
        f"CASE WHEN {edge} > %(now)s AND {edge} <= %(last_instant)s THEN {edge} END AS x{i}"
        for i, edge in enumerate(query.edges)
    ]
    second = ["d0.*"] + [f"{upcoming} AS n{i}" for i, (_, upcoming) in enumerate(query.leaves)]
    member, next_check = root
    # The transitions' rows go back to the hooks; a quiet build only counts them.
    made = (
        "SELECT 'entered', customer_id, id FROM entered "
        "UNION ALL SELECT 'exited', customer_id, id FROM exited"
        if not quiet
        else "SELECT 'count', NULL, (SELECT count(*) FROM entered) + (SELECT count(*) FROM exited)"
    )
    return f"""WITH d AS MATERIALIZED (
    SELECT d1.id, COALESCE({member}, FALSE) AS member, {next_check} AS next_check
    FROM (SELECT {", ".join(second)} FROM (
        SELECT {", ".join(first)} FROM {customers} c {" ".join(joins)} OFFSET 0) d0) d1),
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
{made}"""


@dataclass(frozen=True)
class _Step:
    """One statement of a build; `since`: the earliest occurred_at it reads (None: all)."""

    name: str
    sql: str
    since: datetime | None = None


@dataclass(frozen=True)
class CompiledBuild:
    """A segment's build as of `now`: the statements, run in order in one transaction
    (named for the progress line), and their parameters."""

    segment: LoadedSegment
    now: datetime
    steps: list[_Step]
    params: dict[str, Any]
    temporary: list[str]
    quiet: bool


def compile_segment(
    segment: LoadedSegment, now: datetime, *, quiet: bool = True
) -> CompiledBuild | None:
    """The build statements of `segment` as of `now`, or None when it cannot be
    compiled (not PostgreSQL, or a leaf this module does not express). `quiet`: the
    transitions are counted, not returned (nothing is told about them)."""
    if connection.vendor != "postgresql":
        return None
    query = _Query(params={"now": now, "last_instant": LAST_INSTANT, "segment": segment.id})
    try:
        root = _node(query, segment.compiled.root, now)
    except NotCompilable as exc:
        logger.info("segment %s is built by the general path: %s", segment.key, exc)
        return None
    steps, temporary = [], []
    if query.event_columns:
        name = f"facts of {len(query.event_columns)} event type(s)"
        steps.append(_Step(name, _events_sql(query), _since(query.events_since)))
        temporary.append(_EVENTS_TABLE)
    for index, ((type_id, property_id), windows) in enumerate(query.property_windows.items()):
        since = _since([None if w is None else now - w for w in windows])
        sql = _property_sql(query, index, type_id, property_id)
        steps.append(_Step(f"aggregates of {property_id!r}", sql, since))
        temporary.append(_PROPERTY_TABLE.format(index))
    steps.append(_Step("memberships and checks written", _write_sql(query, root, quiet=quiet)))
    return CompiledBuild(segment, now, steps, query.params, temporary, quiet)
