"""Drop the default partitions of events and property records (PostgreSQL).

With a default partition, PostgreSQL cannot read the months in order (it may hold rows
of any time), so a list sorted by time merged every month's index; without it, the
months are read newest first and a deep page reads as few as an unpartitioned table
would. Writers now create a month's partitions when they name a month that has none
(events_app.partitions.ondemand). Rows the default partitions hold move into the
partitions of their months first. Locks: ACCESS EXCLUSIVE on both parents while the
default partitions are detached (they are normally empty: moments). Reversing creates
empty default partitions again. SQLite: nothing to do.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from events_app.partitions.ddl import (
    default_partition_drop,
    default_partition_restore,
    is_partitioned,
)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if is_partitioned(cursor):
            default_partition_drop(cursor)


def restore(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if is_partitioned(cursor):
            default_partition_restore(cursor)


class Migration(migrations.Migration):
    dependencies = [("events_app", "0015_search_prefix_indexes")]

    operations = [migrations.RunPython(drop, restore, elidable=False)]
