# Re-entry checks look runs up by (workflow, customer) equality, so the column
# order is free: customer first lets the same index serve a customer's erasure.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0006_backfill_schedule_first_called_at"),
        ("customers", "0001_initial"),
        ("events_app", "0006_event_workflow_and_failed_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="workflowrun",
            index=models.Index(
                fields=["customer", "workflow", "created_at"], name="workflowrun_customer_idx"
            ),
        ),
        migrations.RemoveIndex(
            model_name="workflowrun",
            name="workflowrun_reentry_idx",
        ),
    ]
