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
_READS = {
    "type": """
SELECT 'type', et.id, et.key, pd.property_id, pd.value_type, pd.required
FROM events_app_eventtype et
LEFT JOIN events_app_propertydefinition pd ON pd.event_type_id = et.id
WHERE {0} OR {1}""",
    "customer": "SELECT 'customer', id, NULL, NULL, NULL, NULL FROM customers_customer WHERE {0}",
    "external": (
        "SELECT 'external', id, external_id, NULL, NULL, NULL FROM customers_customer WHERE {0}"
    ),
    "external_alias": (
        "SELECT 'external_alias', customer_id, value, NULL, NULL, NULL"
        " FROM customers_customeralias WHERE kind = 'external' AND {0}"
    ),
    "anonymous": (
        "SELECT 'anonymous', id, anonymous_id, NULL, NULL, NULL FROM customers_customer WHERE {0}"
    ),
    "anonymous_alias": (
        "SELECT 'anonymous_alias', customer_id, value, NULL, NULL, NULL"
        " FROM customers_customeralias WHERE kind = 'anonymous' AND {0}"
    ),
    # customers_suppressedidentifier's unique (kind, digest) index serves both.
    "suppressed_external": (
        "SELECT 'suppressed_external', NULL, digest, NULL, NULL, NULL"
        " FROM customers_suppressedidentifier WHERE kind = 'external_id' AND {0}"
    ),
    "suppressed_anonymous": (
        "SELECT 'suppressed_anonymous', NULL, digest, NULL, NULL, NULL"
        " FROM customers_suppressedidentifier WHERE kind = 'anonymous_id' AND {0}"
    ),
}


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
    type_ids = {i.event_type_id for i in items if i.event_type_id}
    type_keys = {i.event_type for i in items if i.event_type}
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
    parts: list[str] = []
    params: list[Any] = []
    for kind, conditions in (
        ("type", [("et.id", type_ids), ("et.key", type_keys)] if type_ids or type_keys else []),
        ("customer", [("id", customer_ids)] if customer_ids else []),
        ("external", [("external_id", external_ids)] if external_ids else []),
        ("external_alias", [("value", external_ids)] if external_ids else []),
        ("anonymous", [("anonymous_id", anonymous_ids)] if anonymous_ids else []),
        ("anonymous_alias", [("value", anonymous_ids)] if anonymous_ids else []),
        ("suppressed_external", [("digest", set(external_digests))] if external_ids else []),
        ("suppressed_anonymous", [("digest", set(anonymous_digests))] if anonymous_ids else []),
    ):
        if not conditions:
            continue
        clauses = []
        for column, values in conditions:
            clause, clause_params = _in(column, values or {""})
            clauses.append(clause)
            params += clause_params
        parts.append(_READS[kind].format(*clauses))
    hook = ingest_hook() if with_facts else None
    if hook is not None:
        parts.append(hook.facts_sql(6))
    refs = References({}, {}, set(), {})
    if not parts:
        return refs
    # Prepared on PostgreSQL: planning this UNION was a large part of a single POST's
    # backend CPU. The text is the same for every request of one shape (the values
    # travel as JSON).
    rows = fetch_all(" UNION ALL ".join(parts), params)
    if hook is not None:
        refs.facts = hook.facts_of_rows(r for r in rows if r[0] not in _READS)
    # A customer's own identifier wins over another customer's alias of the same value.
    external_aliases: dict[str, str] = {}
    anonymous_aliases: dict[str, str] = {}
    for kind, row_id, key, property_id, value_type, required in rows:
        if kind not in _READS:
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
