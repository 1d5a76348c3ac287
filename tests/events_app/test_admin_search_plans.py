"""The admin's searches, tag filter and keyset pages read indexes on PostgreSQL.

The plans are asked with `SET LOCAL enable_seqscan = off`: on a test table of a few
rows a sequential scan is always cheapest, and what matters here is that an index
*can* serve the query (its expression and operator class match the SQL Django emits),
not which plan a tiny table gets.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from customers.models import Customer
from customers.selectors import customer_search, customers_with_tag
from events_app.models import Event
from events_app.selectors import event_search
from project.admin.lists import keyset_after
from tests.factories import CustomerFactory, EventFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans"),
]


def plan(queryset: QuerySet) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


def child_indexes(parent: str) -> set[str]:
    """The partitions' indexes attached to a partitioned table's index (or itself)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass""",
            [parent],
        )
        return {row[0] for row in cursor.fetchall()} or {parent}


@pytest.fixture
def customers() -> None:
    for n in range(30):
        CustomerFactory(external_id=f"customer_{n:03d}", email=f"person{n}@example.com")


def test_customer_search_reads_the_prefix_indexes(customers):
    found = plan(customer_search(queryset=Customer.objects.order_by(), term="Customer_00"))

    assert "customer_external_upper_idx" in found
    assert "customer_email_upper_idx" in found
    assert "Index Cond: ((upper((external_id)::text) ~>=~ 'CUSTOMER_00'::text)" in found


def test_customer_tag_filter_reads_the_gin_index(customers):
    found = plan(customers_with_tag(queryset=Customer.objects.order_by(), tag="vip"))

    assert "customer_tags_gin_idx" in found


def test_event_search_reads_the_ref_prefix_index_of_each_partition(customers):
    for n in range(20):
        EventFactory(external_id=f"order-{n:04d}")

    found = plan(event_search(queryset=Event.objects.order_by(), term="ORDER-00"))

    children = child_indexes("event_external_upper_idx")
    assert [name for name in children if name in found]


def test_a_keyset_page_starts_its_index_scan_at_the_cursor():
    now = timezone.now()
    events = [EventFactory(created_at=now - timedelta(seconds=n)) for n in range(20)]
    fields = [Event._meta.get_field("created_at"), Event._meta.pk]
    cursor = [events[10].created_at, events[10].pk]

    page = Event.objects.filter(keyset_after([(fields[0], True), (fields[1], True)], cursor))
    found = plan(page.order_by("-created_at", "-id")[:50])

    assert "Index Cond: (created_at <=" in found
    assert "event_created_idx" in found or "created_at_id_idx" in found
