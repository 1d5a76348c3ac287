"""An export's document lives in its parts only."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("customers", "0007_privacy_export_documents_to_parts")]

    operations = [
        # Reversible: the field comes back empty (0006 gave it a default), and 0007's
        # reverse refills it from the parts.
        migrations.RemoveField(model_name="privacyexport", name="document"),
    ]
