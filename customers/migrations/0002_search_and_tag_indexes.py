"""Indexes for the admin's customer search and tag filter (PostgreSQL).

The admin searches `external_id` and `email` with Django's `istartswith`, which
PostgreSQL runs as `UPPER(col::text) LIKE UPPER('term%')`. A btree on exactly that
expression with `text_pattern_ops` turns the LIKE prefix into an index range
whatever the database's collation; the plain indexes (the unique external_id,
customer_email_idx) serve exact lookups only.

Built CONCURRENTLY (outside a transaction), so writes to customers go on while it
runs. SQLite has none: its LIKE is case-insensitive, tags are read with json_each, and
its tables are small.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEXES = {
    # The customer changelist's search (customers.selectors.customer_search) and the
    # events changelist's "customer external id starts with" arm.
    "customer_external_upper_idx": "USING btree (upper(external_id::text) text_pattern_ops)",
    # The same searches' "email starts with" arm.
    "customer_email_upper_idx": "USING btree (upper(email::text) text_pattern_ops)",
    # The customer changelist's tag filter (customers.selectors.customers_with_tag):
    # `tags @> '["vip"]'`.
    "customer_tags_gin_idx": "USING gin (tags jsonb_path_ops)",
}


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON customers_customer {definition}"
        )


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("customers", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
