"""The facts segment conditions read, fetched set-based for a batch of customers.

One query per event type for every count and recency leaf on it (conditional
aggregates over the (customer, event_type, occurred_at) index), one per (event type,
property) for the aggregates of a property, one for the memberships the tree reads and
one for the customers' fields: the number of queries depends on the condition, never
on the number of customers. Everything is "as of `now`": an event counts once its
`occurred_at` has come, inside a window `(now - within, now]`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, F, Func, Max, Min, Q, Sum
from django.db.models.expressions import Case, When
from django.db.models.fields import DecimalField

from customers.models import Customer
from events_app.models import Event, PropertyRecord

# A property value aggregates when its text is a plain decimal number of at most 60
# digits either side of the point (exponent of at most 3 digits): anything else is
# left out, as a value that cannot be coerced never matches an operator. The bounds
# keep every such number well inside PostgreSQL's numeric.
NUMERIC_TEXT = r"^\s*[-+]?([0-9]{1,60}(\.[0-9]{0,60})?|\.[0-9]{1,60})([eE][-+]?[0-9]{1,3})?\s*$"


@dataclass(frozen=True)
class CountKey:
    event_type_id: str
    within: timedelta | None


@dataclass(frozen=True)
class AggregateKey:
    event_type_id: str
    property_id: str
    fn: str
    within: timedelta | None


@dataclass(frozen=True)
class LastKey:
    event_type_id: str


@dataclass(frozen=True)
class FutureKey:
    """The earliest event of a type dated after now: when it comes, facts change."""

    event_type_id: str


@dataclass(frozen=True)
class MemberKey:
    segment_id: str


FactKey = CountKey | AggregateKey | LastKey | FutureKey | MemberKey


@dataclass
class CustomerFacts:
    """What a condition can look at for one customer, as plain data.

    `values`: CountKey/AggregateKey -> (value, oldest occurred_at in the window);
    LastKey/FutureKey -> datetime or None; MemberKey -> bool.
    """

    customer: dict[str, Any]
    values: dict[FactKey, Any] = field(default_factory=dict)


class ToNumeric(Func):
    """CAST(text AS numeric): PostgreSQL's exact decimal; SQLite's numeric affinity."""

    template = "CAST(%(expressions)s AS NUMERIC)"
    output_field = DecimalField()


def _window(within: timedelta | None, now: datetime, prefix: str = "") -> Q:
    q = Q(**{f"{prefix}occurred_at__lte": now})
    if within is not None:
        q &= Q(**{f"{prefix}occurred_at__gt": now - within})
    return q


def _event_facts(
    type_id: str, keys: list[FactKey], customer_ids: list[str], now: datetime
) -> dict[str, dict[FactKey, Any]]:
    """Counts, last and next-future of one event type: one GROUP BY customer query."""
    annotations: dict[str, Any] = {}
    names: dict[FactKey, tuple[str, ...]] = {}
    for index, key in enumerate(keys):
        if isinstance(key, CountKey):
            window = _window(key.within, now)
            annotations[f"n{index}"] = Count("id", filter=window)
            annotations[f"o{index}"] = Min("occurred_at", filter=window)
            names[key] = (f"n{index}", f"o{index}")
        elif isinstance(key, LastKey):
            annotations[f"l{index}"] = Max("occurred_at", filter=Q(occurred_at__lte=now))
            names[key] = (f"l{index}",)
        elif isinstance(key, FutureKey):
            annotations[f"f{index}"] = Min("occurred_at", filter=Q(occurred_at__gt=now))
            names[key] = (f"f{index}",)
    rows = (
        Event.objects.filter(customer_id__in=customer_ids, event_type_id=type_id)
        .order_by()
        .values("customer_id")
        .annotate(**annotations)
    )
    return _by_customer(rows, "customer_id", names)


def _by_customer(
    rows: Iterable[Any], customer: str, names: dict[FactKey, tuple[str, ...]]
) -> dict[str, dict[FactKey, Any]]:
    """Customer id -> fact -> its value (one column) or (value, oldest) (two)."""
    found: dict[str, dict[FactKey, Any]] = {}
    for row in rows:
        values_of: dict[str, Any] = dict(row)
        facts = found[values_of[customer]] = {}
        for key, columns in names.items():
            values = tuple(values_of[c] for c in columns)
            facts[key] = values if len(values) == 2 else values[0]
    return found


_AGGREGATES = {"sum": Sum, "min": Min, "max": Max, "avg": Avg, "count": Count}


def _aggregate_facts(
    type_id: str, property_id: str, keys: list[AggregateKey], customer_ids: list[str], now: datetime
) -> dict[str, dict[FactKey, Any]]:
    """The aggregates of one property of one event type: one GROUP BY customer query."""
    number = Case(When(property_value__regex=NUMERIC_TEXT, then=ToNumeric("property_value")))
    annotations: dict[str, Any] = {}
    names: dict[FactKey, tuple[str, ...]] = {}
    for index, key in enumerate(keys):
        window = _window(key.within, now, "event__")
        counted = window & Q(property_value__regex=NUMERIC_TEXT)
        annotations[f"v{index}"] = _AGGREGATES[key.fn](number, filter=counted)
        annotations[f"o{index}"] = Min("event__occurred_at", filter=counted)
        names[key] = (f"v{index}", f"o{index}")
    rows = (
        PropertyRecord.objects.filter(
            event__customer_id__in=customer_ids,
            event__event_type_id=type_id,
            property_id=property_id,
            # A record carries its event's created_at, the partition key of both tables
            # on PostgreSQL: joined on it too, each event meets only its month's records.
            created_at=F("event__created_at"),
        )
        .order_by()
        .values("event__customer_id")
        .annotate(**annotations)
    )
    return _by_customer(rows, "event__customer_id", names)


def _member_facts(keys: list[MemberKey], customer_ids: list[str]) -> dict[str, dict[FactKey, Any]]:
    from automation.segments.models import SegmentMembership

    found: dict[str, dict[FactKey, Any]] = defaultdict(dict)
    for segment_id, customer_id in SegmentMembership.objects.filter(
        segment_id__in=[k.segment_id for k in keys],
        customer_id__in=customer_ids,
        exited_at__isnull=True,
    ).values_list("segment_id", "customer_id"):
        found[customer_id][MemberKey(segment_id)] = True
    return found


CUSTOMER_COLUMNS = ("id", "external_id", "email", "created_at", "attributes", "tags")


def customer_rows(customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The customers' fields as conditions read them (`customer_id`, not `id`)."""
    rows = {}
    for row in Customer.objects.filter(pk__in=list(customer_ids)).values(*CUSTOMER_COLUMNS):
        row["customer_id"] = row.pop("id")
        if not isinstance(row["attributes"], dict):
            row["attributes"] = {}
        if not isinstance(row["tags"], list):
            row["tags"] = []
        rows[row["customer_id"]] = row
    return rows


def _empty(key: FactKey) -> Any:
    """A fact of a customer with no matching event: none counted, sum 0, nothing else."""
    if isinstance(key, CountKey):
        return (0, None)
    if isinstance(key, AggregateKey):
        return (0 if key.fn in {"sum", "count"} else None, None)
    if isinstance(key, MemberKey):
        return False
    return None


def facts_fetch(
    *, keys: set[FactKey], customers: dict[str, dict[str, Any]], now: datetime
) -> dict[str, CustomerFacts]:
    """Every fact in `keys` for every customer of `customers` (id -> customer_rows row)."""
    customer_ids = list(customers)
    by_type: dict[str, list[FactKey]] = defaultdict(list)
    by_property: dict[tuple[str, str], list[AggregateKey]] = defaultdict(list)
    members: list[MemberKey] = []
    for key in sorted(keys, key=repr):
        if isinstance(key, AggregateKey):
            by_property[(key.event_type_id, key.property_id)].append(key)
        elif isinstance(key, MemberKey):
            members.append(key)
        else:
            by_type[key.event_type_id].append(key)
    found: list[dict[str, dict[FactKey, Any]]] = []
    if customer_ids:
        found += [_event_facts(t, ks, customer_ids, now) for t, ks in by_type.items()]
        found += [
            _aggregate_facts(t, p, ks, customer_ids, now) for (t, p), ks in by_property.items()
        ]
        if members:
            found.append(_member_facts(members, customer_ids))
    result = {}
    for customer_id, row in customers.items():
        values = {key: _empty(key) for key in keys}
        for part in found:
            values.update(part.get(customer_id, {}))
        for key, value in values.items():
            if isinstance(key, AggregateKey) and value[0] is None and key.fn in {"sum", "count"}:
                values[key] = (0, value[1])
        result[customer_id] = CustomerFacts(customer=row, values=values)
    return result
