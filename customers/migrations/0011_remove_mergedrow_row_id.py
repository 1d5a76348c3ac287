"""The moved keys live in MergedRow.row_ids only."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("customers", "0010_merged_row_keys_to_arrays")]

    operations = [migrations.RemoveField(model_name="mergedrow", name="row_id")]
