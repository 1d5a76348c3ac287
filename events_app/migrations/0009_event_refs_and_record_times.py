"""The schema the partitioning of events by month needs (0010 converts the tables).

- EventRef: the refs taken per event type, kept unique forever outside the
  partitioned events table (a unique index there must include the partition key).
- PropertyRecord.created_at: its event's created_at, the records' partition key
  (nullable here; 0010 fills it and makes it required).
- PropertyRecord.event without a database foreign key: a partitioned table's `id`
  alone is not a key another table can reference. Deletes still cascade
  (project.cascade follows the model's on_delete).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("events_app", "0008_rate_limit_counter_unlogged")]

    operations = [
        migrations.CreateModel(
            name="EventRef",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("ref", models.CharField(max_length=255)),
                ("event_id", models.CharField(max_length=26)),
                (
                    "event_type",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="events_app.eventtype",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("event_type", "ref"), name="eventref_unique_per_type"
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="propertyrecord",
            name="created_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AlterField(
            model_name="propertyrecord",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="property_records",
                to="events_app.event",
            ),
        ),
    ]
