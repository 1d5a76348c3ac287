"""The reads that judging a batch of events needs, in one statement (events_app.ingestion)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
from django.db import connection

from customers.privacy.hashing import IdentifierKind, identifier_digest
from events_app.ingest_hooks import ingest_hook
from events_app.properties import PROPERTY_TYPES
from events_app.schemas import EventIn
from project.sql import fetch_all

_encode_json = msgspec.json.Encoder().encode


class Definition(NamedTuple):
    property_id: str
    to_text: Callable[[Any], str]  # the value type's converter (events_app.properties)


@dataclass(slots=True)
class TypeInfo:
    id: str
    key: str
    definitions: dict[str, Definition] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)  # sorted property ids


# The reads that judging a request needs -- its event types with their property
# definitions, its customers by id, by external id and by anonymous id (each also
# through the aliases a merge left), and which of the identifiers that could create a
# customer are suppressed -- are one query (a UNION ALL of the parts the request
# needs, tagged by kind) returning plain rows: one round trip, and no ORM
# compilation, which cost more CPU than the queries themselves. A request naming its
# customers by id (the common single POST) reads only the type and customer parts.
#
# Why event types are not cached in the process: gunicorn workers are separate
# processes (and Herald may run on several machines), so a cached definition can
# only be trusted after asking the database whether it is still current -- a round
# trip, which this read shares with the customer lookups anyway. Reading fresh rows
# is always correct: an edited type applies to the very next event, on every
# worker. See docs/api.md.
_TYPES = """
SELECT 'type', et.id, et.key, pd.property_id, pd.value_type, pd.required
FROM events_app_eventtype et
LEFT JOIN {definitions} pd ON {on}
WHERE {by_id} OR {by_key}"""
# On PostgreSQL a type's definitions are read by index, never by hashing every
# definition of every type (see _lookup for why a prepared join can go that way).
_DEFINITIONS = {
    "postgresql": (
        "LATERAL (SELECT property_id, value_type, required FROM events_app_propertydefinition"
        " WHERE event_type_id = et.id OFFSET 0)",
        "true",
    ),
    "sqlite": ("events_app_propertydefinition", "pd.event_type_id = et.id"),
}


class _Lookup(NamedTuple):
    """One part of the read: rows of `table` whose `column` is one of the request's
    values (and `condition`), as six columns of `t` (the row found)."""

    select: str
    columns: str
    table: str
    column: str
    condition: str = ""


_LOOKUPS = {
    "customer": _Lookup("t.id, NULL", "id", "customers_customer", "id"),
    "external": _Lookup(
        "t.id, t.external_id", "id, external_id", "customers_customer", "external_id"
    ),
    "external_alias": _Lookup(
        "t.customer_id, t.value",
        "customer_id, value",
        "customers_customeralias",
        "value",
        "kind = 'external'",
    ),
    "anonymous": _Lookup(
        "t.id, t.anonymous_id", "id, anonymous_id", "customers_customer", "anonymous_id"
    ),
    "anonymous_alias": _Lookup(
        "t.customer_id, t.value",
        "customer_id, value",
        "customers_customeralias",
        "value",
        "kind = 'anonymous'",
    ),
    # customers_suppressedidentifier's unique (kind, digest) index serves both.
    "suppressed_external": _Lookup(
        "NULL, t.digest",
        "digest",
        "customers_suppressedidentifier",
        "digest",
        "kind = 'external_id'",
    ),
    "suppressed_anonymous": _Lookup(
        "NULL, t.digest",
        "digest",
        "customers_suppressedidentifier",
        "digest",
        "kind = 'anonymous_id'",
    ),
}
_KINDS = {"type", *_LOOKUPS}


def _in(column: str, values: set[str]) -> tuple[str, list[Any]]:
    """`column IN values` as SQL and parameters.

    On PostgreSQL the values travel as one JSON array: msgspec encodes it in C,
    where psycopg would quote each element of a list in Python.
    """
    if connection.vendor == "postgresql":
        return (
            f"{column} IN (SELECT json_array_elements_text(%s::json))",
            [_encode_json(sorted(values)).decode()],
        )
    return f"{column} IN ({', '.join(['%s'] * len(values))})", sorted(values)


def _lookup(kind: str, values: set[str]) -> tuple[str, list[Any]]:
    """The part `kind` of the read for `values`, as SQL and parameters.

    On PostgreSQL each value is looked up on its own, by index: the statement is
    prepared, and PostgreSQL keeps one generic plan for it made from the table's size
    at that moment. Written as a join (`column IN (…)`), that plan hashes the whole
    table whenever it was made while the table looked small (a new database) and
    keeps doing so as the table grows; a lateral subquery that cannot be flattened
    (`OFFSET 0`) leaves the planner nothing but a probe per value. (A table analysed
    while empty is still scanned, as cheaply, until autovacuum analyses it again and
    PostgreSQL replans.) The values travel as one JSON array: msgspec encodes it in
    C, where psycopg would quote each element of a list in Python.
    """
    part = _LOOKUPS[kind]
    where = f"{part.condition} AND " if part.condition else ""
    head = f"SELECT '{kind}', {part.select}, NULL, NULL, NULL"
    # Only the constant identifiers of _LOOKUPS are formatted in; values are parameters.
    if connection.vendor == "postgresql":
        found = f"SELECT {part.columns} FROM {part.table} WHERE {where}{part.column} = v.value"  # noqa: S608
        values_sql = "json_array_elements_text(%s::json) AS v(value)"
        sql = f"{head} FROM {values_sql} CROSS JOIN LATERAL ({found} OFFSET 0) AS t"
        return sql, [_encode_json(sorted(values)).decode()]
    clause, params = _in(part.column, values)
    return f"{head} FROM {part.table} AS t WHERE {where}{clause}", params


@dataclass(slots=True)
class References:
    types_by_id: dict[str, TypeInfo]
    types_by_key: dict[str, TypeInfo]
    customer_ids: set[str]
    # A customer's own external / anonymous id, else an alias of that kind.
    customers_by_external_id: dict[str, str]
    customers_by_anonymous_id: dict[str, str] = field(default_factory=dict)
    # The external and anonymous ids of the request that are on the suppression list.
    suppressed_external_ids: set[str] = field(default_factory=set)
    suppressed_anonymous_ids: set[str] = field(default_factory=set)
    facts: Any = None  # the ingest hook's (events_app.ingest_hooks)


def references_read(items: list[EventIn], *, with_facts: bool = False) -> References:
    """The types and customers `items` name; `with_facts`: also the facts of the ingest
    hook (events_app.ingest_hooks), in the same statement (no round trip of their own)."""
    customer_ids = {i.customer_id for i in items if i.customer_id}
    external_ids = {i.customer_external_id for i in items if i.customer_external_id}
    anonymous_ids = {i.anonymous_id for i in items if i.anonymous_id}
    # Suppression only concerns identifiers that could create a customer. Suppressing a
    # person deletes their customer (with its aliases), so a suppressed identifier never
    # resolves to a customer: it is by definition unknown, and refusing the unknown
    # identifiers that would create a customer (events_app.ingestion) is complete -- no
    # ingest path brings a suppressed person back. An event naming its customer by id
    # never creates one, so customer ids are not hashed and a request naming customers
    # only by id reads no suppression part. Which external and anonymous ids are unknown
    # is only known after this read, so each one the request names is hashed, as the
    # suppression list keeps it (customers.privacy.hashing), and looked up with it.
    external_digests = _digests("external_id", external_ids)
    anonymous_digests = _digests("anonymous_id", anonymous_ids)
    parts, params = _type_parts(items)
    for kind, values in (
        ("customer", customer_ids),
        ("external", external_ids),
        ("external_alias", external_ids),
        ("anonymous", anonymous_ids),
        ("anonymous_alias", anonymous_ids),
        ("suppressed_external", set(external_digests)),
        ("suppressed_anonymous", set(anonymous_digests)),
    ):
        if values:
            sql, lookup_params = _lookup(kind, values)
            parts.append(sql)
            params += lookup_params
    hook = ingest_hook() if with_facts else None
    if hook is not None:
        parts.append(hook.facts_sql(6))
    if not parts:
        return References({}, {}, set(), {})
    # Prepared on PostgreSQL: planning this UNION was a large part of a single POST's
    # backend CPU. The text is the same for every request of one shape (the values
    # travel as JSON).
    rows = fetch_all(" UNION ALL ".join(parts), params)
    return _references_of_rows(rows, external_digests, anonymous_digests, with_facts)


def _type_parts(items: list[EventIn]) -> tuple[list[str], list[Any]]:
    """The part of the read that finds the event types `items` name (none if they name
    none), as SQL and parameters."""
    type_ids = {i.event_type_id for i in items if i.event_type_id}
    type_keys = {i.event_type for i in items if i.event_type}
    if not (type_ids or type_keys):
        return [], []
    by_id, id_params = _in("et.id", type_ids or {""})
    by_key, key_params = _in("et.key", type_keys or {""})
    definitions, on = _DEFINITIONS.get(connection.vendor, _DEFINITIONS["sqlite"])
    sql = _TYPES.format(definitions=definitions, on=on, by_id=by_id, by_key=by_key)
    return [sql], id_params + key_params


def types_and_facts_query(items: list[EventIn]) -> tuple[str, list[Any]] | None:
    """The read of the event types `items` name and the ingest hook's facts, without
    any customer part: what every request naming the same type reads alike (None when
    `items` name no type). Read with `references_of_type_rows`."""
    parts, params = _type_parts(items)
    if not parts:
        return None
    hook = ingest_hook()
    if hook is not None:
        parts.append(hook.facts_sql(6))
    return " UNION ALL ".join(parts), params


def references_of_type_rows(rows: list[tuple[Any, ...]]) -> References:
    """The references in the rows of `types_and_facts_query` (no customer in them)."""
    return _references_of_rows(rows, {}, {}, with_facts=True)


def _references_of_rows(
    rows: list[tuple[Any, ...]],
    external_digests: dict[str, str],
    anonymous_digests: dict[str, str],
    with_facts: bool,
) -> References:
    refs = References({}, {}, set(), {})
    hook = ingest_hook() if with_facts else None
    if hook is not None:
        refs.facts = hook.facts_of_rows(r for r in rows if r[0] not in _KINDS)
    # A customer's own identifier wins over another customer's alias of the same value.
    external_aliases: dict[str, str] = {}
    anonymous_aliases: dict[str, str] = {}
    for kind, row_id, key, property_id, value_type, required in rows:
        if kind not in _KINDS:
            continue
        if kind == "customer":
            refs.customer_ids.add(row_id)
        elif kind == "external":
            refs.customers_by_external_id[key] = row_id
        elif kind == "external_alias":
            external_aliases[key] = row_id
        elif kind == "anonymous":
            refs.customers_by_anonymous_id[key] = row_id
        elif kind == "anonymous_alias":
            anonymous_aliases[key] = row_id
        elif kind == "suppressed_external":
            refs.suppressed_external_ids.add(external_digests[key])
        elif kind == "suppressed_anonymous":
            refs.suppressed_anonymous_ids.add(anonymous_digests[key])
        else:
            info = refs.types_by_id.get(row_id)
            if info is None:
                info = TypeInfo(row_id, key)
                refs.types_by_id[row_id] = refs.types_by_key[key] = info
            if property_id is not None:
                to_text = PROPERTY_TYPES[value_type].to_text
                info.definitions[property_id] = Definition(property_id, to_text)
                if required:
                    insort(info.required, property_id)
    for aliases, resolved in (
        (external_aliases, refs.customers_by_external_id),
        (anonymous_aliases, refs.customers_by_anonymous_id),
    ):
        for value, customer_id in aliases.items():
            resolved.setdefault(value, customer_id)
    return refs


def _digests(kind: IdentifierKind, values: set[str]) -> dict[str, str]:
    """The keyed hash of each of `values` → the value."""
    return {identifier_digest(kind, value): value for value in values}
