"""Reads for customers."""

from __future__ import annotations

from django.db import connection
from django.db.models import BooleanField, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL

from customers.models import Customer, CustomerAlias
from project.errors import NotFoundError

CUSTOMER_SORT_FIELDS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "external_id": "external_id",
    "email": "email",
    "customer_id": "pk",
}


# Where a prefetch leaves a customer's external-id aliases (the customer object).
_EXTERNAL_ALIASES = "external_aliases"


def _with_external_aliases(queryset: QuerySet[Customer]) -> QuerySet[Customer]:
    """`queryset` with each customer's external-id aliases in one query for the page
    (customeralias_customer_idx), sorted: the customer object's `aliases`."""
    return queryset.prefetch_related(
        Prefetch(
            "aliases",
            queryset=CustomerAlias.objects.filter(kind=CustomerAlias.Kind.EXTERNAL).order_by(
                "value"
            ),
            to_attr=_EXTERNAL_ALIASES,
        )
    )


def customer_list() -> QuerySet[Customer]:
    return _with_external_aliases(Customer.objects.all())


def customer_get(*, customer_id: str) -> Customer:
    try:
        return Customer.objects.get(pk=customer_id)
    except Customer.DoesNotExist:
        raise NotFoundError(f"Customer '{customer_id}' not found.") from None


def customer_by_reference(*, ref: str) -> Customer | None:
    """The customer a person types to name someone: their id, else their external id or
    an external alias, else their anonymous id or an anonymous alias (each an indexed
    lookup; the first that names a customer wins)."""
    ref = ref.strip()
    if not ref:
        return None
    lookups = (
        Q(pk=ref),
        Q(external_id=ref)
        | Q(pk__in=CustomerAlias.objects.filter(kind="external", value=ref).values("customer")),
        Q(anonymous_id=ref)
        | Q(pk__in=CustomerAlias.objects.filter(kind="anonymous", value=ref).values("customer")),
    )
    for lookup in lookups:
        if (customer := Customer.objects.filter(lookup).first()) is not None:
            return customer
    return None


def customer_external_aliases(*, customer: Customer) -> list[str]:
    """The external ids besides its own that resolve to `customer`, sorted (read with
    the page by `customer_list`, else here)."""
    prefetched: list[CustomerAlias] | None = getattr(customer, _EXTERNAL_ALIASES, None)
    if prefetched is not None:
        return [alias.value for alias in prefetched]
    return list(
        CustomerAlias.objects.filter(customer=customer, kind=CustomerAlias.Kind.EXTERNAL)
        .order_by("value")
        .values_list("value", flat=True)
    )


# A search term that starts more customers' ids than this finds the events of these
# first ones only (events_app.selectors.event_search): an IN list of every match
# would be a scan in disguise.
CUSTOMER_MATCH_LIMIT = 200


def customer_search(*, queryset: QuerySet[Customer], term: str) -> QuerySet[Customer]:
    """Customers whose id or anonymous id is `term`, or whose external id or email
    starts with it, in any case. On PostgreSQL each arm is an index range (the primary
    key, the anonymous id's unique index, customer_external_upper_idx,
    customer_email_upper_idx: `istartswith` is `UPPER(col) LIKE UPPER('term%')`),
    combined with a BitmapOr."""
    return queryset.filter(
        Q(pk=term)
        | Q(anonymous_id=term)
        | Q(external_id__istartswith=term)
        | Q(email__istartswith=term)
    )


def customer_ids_matching(*, term: str, limit: int = CUSTOMER_MATCH_LIMIT) -> list[str]:
    """Ids of at most `limit` customers `customer_search` finds for `term`."""
    found = customer_search(queryset=Customer.objects.all(), term=term)
    return list(found.order_by().values_list("pk", flat=True)[:limit])


def customers_with_tag(*, queryset: QuerySet[Customer], tag: str) -> QuerySet[Customer]:
    """Customers carrying `tag` (exactly, case included, as workflows test tags)."""
    if connection.vendor == "postgresql":
        # tags @> '["vip"]': served by the GIN index customer_tags_gin_idx.
        return queryset.filter(tags__contains=[tag])
    # SQLite has no JSON containment: an EXISTS over json_each.
    return queryset.filter(
        RawSQL(
            "EXISTS (SELECT 1 FROM json_each(customers_customer.tags) WHERE value = %s)",
            [tag],
            output_field=BooleanField(),
        )
    )
