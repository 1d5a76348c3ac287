"""Deliveries and workflow runs keep their event's id without a database foreign key.

Events are partitioned by month on PostgreSQL (events_app 0010), where `id` alone is
not a key another table can reference. Deletes of events still cascade to these rows
(project.cascade follows the model's on_delete); retention keeps them
(docs/operations.md).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0010_clamp_schedule_end_dates"),
        ("events_app", "0009_event_refs_and_record_times"),
    ]
    # The foreign keys must be gone before the events table is rebuilt partitioned.
    run_before = [("events_app", "0010_partition_events_by_month")]

    operations = [
        migrations.AlterField(
            model_name="delivery",
            name="event",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="events_app.event",
            ),
        ),
        migrations.AlterField(
            model_name="workflowrun",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="workflow_runs",
                to="events_app.event",
            ),
        ),
    ]
