"""The moved keys recorded a row per key become arrays of up to 10,000 keys (in the order
they were recorded); the reverse gives each key its row again."""

from __future__ import annotations

from typing import Any

from django.db import migrations

KEYS_PER_ROW = 10_000


def keys_to_arrays(apps: Any, schema_editor: Any) -> None:
    merged_row = apps.get_model("customers", "MergedRow")
    per_key = merged_row.objects.exclude(row_id="")
    groups = per_key.values_list("merge_id", "table").distinct()
    for merge_id, table in list(groups):
        rows = per_key.filter(merge_id=merge_id, table=table).order_by("pk")
        keys = list(rows.values_list("row_id", flat=True))
        merged_row.objects.bulk_create(
            merged_row(merge_id=merge_id, table=table, row_ids=keys[i : i + KEYS_PER_ROW])
            for i in range(0, len(keys), KEYS_PER_ROW)
        )
        rows.delete()


def arrays_to_keys(apps: Any, schema_editor: Any) -> None:
    merged_row = apps.get_model("customers", "MergedRow")
    arrays = merged_row.objects.filter(row_id="")
    for row in arrays.order_by("pk").iterator(chunk_size=1):
        merged_row.objects.bulk_create(
            merged_row(merge_id=row.merge_id, table=row.table, row_id=key) for key in row.row_ids
        )
    arrays.delete()


class Migration(migrations.Migration):
    dependencies = [("customers", "0009_merged_row_key_arrays")]

    operations = [migrations.RunPython(keys_to_arrays, arrays_to_keys)]
