"""Moved keys recorded as arrays (MergedRow.row_ids, up to 10,000 a row) instead of a row
per key; the per-key column gets a default until 0011 removes it."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("customers", "0008_remove_privacyexport_document")]

    operations = [
        migrations.AddField(
            model_name="mergedrow", name="row_ids", field=models.JSONField(default=list)
        ),
        migrations.AlterField(
            model_name="mergedrow",
            name="row_id",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
