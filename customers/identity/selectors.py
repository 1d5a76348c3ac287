"""Reads for identity: merge records, and where a merged-away customer went."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from customers.identity.models import CustomerMerge
from customers.models import Customer, CustomerAlias
from project.errors import NotFoundError

MERGE_SORT_FIELDS = {"created_at": "created_at", "merge_id": "pk"}
# A chain of merges longer than this is not followed (a cycle cannot arise: the
# secondary of a merge is gone, but a bound keeps a corrupt table from looping).
_CHAIN_LIMIT = 32


def merge_list(*, customer_id: str | None = None) -> QuerySet[CustomerMerge]:
    merges = CustomerMerge.objects.all()
    if customer_id:
        merges = merges.filter(Q(primary_id=customer_id) | Q(secondary_id=customer_id))
    return merges


def merge_get(*, merge_id: str) -> CustomerMerge:
    merge = CustomerMerge.objects.filter(pk=merge_id).first()
    if merge is None:
        raise NotFoundError(f"Merge '{merge_id}' not found.")
    return merge


def customer_aliases(*, customer_id: str) -> QuerySet[CustomerAlias]:
    return CustomerAlias.objects.filter(customer_id=customer_id).order_by("kind", "value")


def customers_moved_to(customer_ids: Iterable[str]) -> dict[str, str]:
    """For customers that no longer exist because a merge took them, the customer their
    rows are on now (following later merges of that one); others are left out.

    Ingestion's answer to an event naming a customer that a merge removed between
    its read and its insert (or before it arrived): it lands on the primary.
    """
    wanted = set(customer_ids)
    found: dict[str, str] = {}
    current = {c: c for c in wanted}
    for _ in range(_CHAIN_LIMIT):
        if not current:
            break
        existing = set(
            Customer.objects.filter(pk__in=set(current.values())).values_list("pk", flat=True)
        )
        for start, at in list(current.items()):
            if at in existing:
                if at != start:
                    found[start] = at
                del current[start]
        if not current:
            break
        forward = dict(
            CustomerMerge.objects.filter(
                secondary_id__in=set(current.values()), status=CustomerMerge.Status.MERGED
            ).values_list("secondary_id", "primary_id")
        )
        current = {start: forward[at] for start, at in current.items() if at in forward}
    return found
