"""An export's document, kept whole in one column so far, becomes its first part."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def documents_to_parts(apps: Any, schema_editor: Any) -> None:
    export_model = apps.get_model("customers", "PrivacyExport")
    part_model = apps.get_model("customers", "PrivacyExportPart")
    for export in export_model.objects.iterator(chunk_size=1):
        document = bytes(export.document)
        part_model.objects.create(export=export, position=0, data=document)
        export_model.objects.filter(pk=export.pk).update(size=len(document))


def parts_to_documents(apps: Any, schema_editor: Any) -> None:
    export_model = apps.get_model("customers", "PrivacyExport")
    part_model = apps.get_model("customers", "PrivacyExportPart")
    for export in export_model.objects.iterator(chunk_size=1):
        parts = part_model.objects.filter(export=export).order_by("position")
        document = b"".join(bytes(data) for data in parts.values_list("data", flat=True))
        export_model.objects.filter(pk=export.pk).update(document=document)
    part_model.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("customers", "0006_privacy_export_parts")]

    operations = [migrations.RunPython(documents_to_parts, parts_to_documents)]
