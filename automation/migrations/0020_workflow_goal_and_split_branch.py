"""Goals and splits of workflows: `Workflow.goal` (the event that ends a customer's
unfinished runs as converted), `WorkflowRun.branch` (the branch of the split action a
run landed in) and the run status `converted`. Plain nullable columns and a new
choice: reversible, no data to move."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0019_workflowrun_segment_on_db_default"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflow",
            name="goal",
            field=models.JSONField(blank=True, default=None, null=True),
        ),
        migrations.AddField(
            model_name="workflowrun",
            name="branch",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="workflowrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("waiting", "Waiting"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                    ("converted", "Converted"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
    ]
