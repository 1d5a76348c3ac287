"""A segment's member list as the admin shows and exports it: search and CSV rows.

Search finds customers by id (exact), external id or email (prefix), then their stays in
the segment: each arm is a btree range over the customers' indexes (the external id's
pattern index, customer_email_idx), and the stays of the few customers found come from
segmentmembership_customer_idx. The export reads the current members in entry order
(segmentmembership_members_idx) through a server-side cursor, a chunk at a time, so it
holds the same memory for ten members or ten million.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet

from automation.segments.models import SegmentMembership
from customers.models import Customer

CSV_COLUMNS = ("customer_id", "external_id", "email", "entered_at")
EXPORT_CHUNK = 2000
# Cells a spreadsheet would run as a formula start with one of these (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _prefix_range(field: str, prefix: str) -> Q:
    """`field` starts with `prefix`, as a range a plain btree index serves (LIKE uses
    one only under the C collation or a pattern-ops index): in code-point order every
    string with the prefix sorts at or after it and before the prefix with its last
    character bumped; the LIKE beside the range keeps the answer exact."""
    bumped = prefix[:-1] + chr(min(ord(prefix[-1]) + 1, 0x10FFFF))
    return Q(**{f"{field}__gte": prefix, f"{field}__lt": bumped, f"{field}__startswith": prefix})


def customers_matching(term: str) -> QuerySet[Customer]:
    """Customers whose id is `term`, or whose external id or email starts with it."""
    term = term.strip()
    if not term:
        return Customer.objects.none()
    return Customer.objects.filter(
        Q(pk=term) | _prefix_range("external_id", term) | _prefix_range("email", term)
    )


def memberships_search(
    queryset: QuerySet[SegmentMembership], term: str
) -> QuerySet[SegmentMembership]:
    """The stays in `queryset` of the customers `term` finds (customers_matching)."""
    return queryset.filter(customer_id__in=customers_matching(term).values("pk"))


def current_members(*, segment_id: str, term: str = "") -> QuerySet[SegmentMembership]:
    """The current members of a segment (optionally those `term` finds), by entry."""
    queryset = SegmentMembership.objects.filter(segment_id=segment_id, exited_at__isnull=True)
    if term.strip():
        queryset = memberships_search(queryset, term)
    return queryset.order_by("entered_at", "id")


def _cell(value: Any) -> str:
    text = "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else value)
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file whose write returns the line: csv.writer formats, the response streams."""

    def write(self, value: str) -> str:
        return value


def members_csv_lines(*, segment_id: str, term: str = "") -> Iterator[str]:
    """The header and one CSV line per current member, read a chunk at a time."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows = current_members(segment_id=segment_id, term=term).values_list(
        "customer_id", "customer__external_id", "customer__email", "entered_at"
    )
    for row in rows.iterator(chunk_size=EXPORT_CHUNK):
        yield writer.writerow([_cell(value) for value in row])
