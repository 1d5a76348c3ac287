"""Merge records in privacy requests (customers.privacy): they name the people merged and
hold their former rows, so erasing a person deletes every merge they took part in, and
an export lists them. Registered in customers.hooks by CustomersConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q

from customers.identity.models import CustomerMerge, MergedRow


def _merges_of(customer_ids: list[str]) -> Q:
    return Q(primary_id__in=customer_ids) | Q(secondary_id__in=customer_ids)


def customer_merges_erase(customer_ids: list[str]) -> dict[str, int]:
    """Delete the merges these customers took part in, and their moved-row keys: two
    DELETEs with subqueries, no row read (as project.cascade deletes: the Collector
    would load every merge to find its moved rows)."""
    merges = CustomerMerge.objects.filter(_merges_of(customer_ids))
    moved = MergedRow.objects.filter(merge__in=merges.values("pk"))
    moved._raw_delete(moved.db)
    deleted = merges._raw_delete(merges.db)
    return {"merge_records": deleted} if deleted else {}


def customer_merges_export(customer_id: str) -> Iterator[dict[str, Any]]:
    """The merges the customer took part in, as GET /customers/merges lists them."""
    merges = CustomerMerge.objects.filter(_merges_of([customer_id])).order_by("created_at")
    for m in merges.iterator(chunk_size=2000):
        yield {
            "merge_id": m.pk,
            "primary": m.primary_id,
            "secondary": m.secondary_id,
            "status": m.status,
            "created_at": m.created_at.isoformat(),
        }
