"""Link the endpoints of workflow webhook actions to their workflow (WorkflowEndpoint).

Until now a workflow's endpoints were recognised by their description,
"workflow:<workflow id>". Each endpoint of kind "workflow" so described whose
workflow still exists gets its link; the description is left as it was. Endpoints
of workflows deleted before this release have no owner left and stay unlinked.
Reversing writes the description back from the link, for the code that read it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# The owner string the webhook action wrote into Endpoint.description, frozen here.
OWNER_PREFIX = "workflow:"


def link(apps: Any, schema_editor: Any) -> None:
    Endpoint = apps.get_model("automation", "Endpoint")
    Workflow = apps.get_model("automation", "Workflow")
    WorkflowEndpoint = apps.get_model("automation", "WorkflowEndpoint")
    owners = dict(
        Endpoint.objects.filter(
            kind="workflow",
            description__startswith=OWNER_PREFIX,
            workflow_link__isnull=True,
        ).values_list("pk", "description")
    )
    workflow_ids = {description.removeprefix(OWNER_PREFIX) for description in owners.values()}
    existing = set(Workflow.objects.filter(pk__in=workflow_ids).values_list("pk", flat=True))
    WorkflowEndpoint.objects.bulk_create(
        WorkflowEndpoint(endpoint_id=endpoint_id, workflow_id=description[len(OWNER_PREFIX) :])
        for endpoint_id, description in sorted(owners.items())
        if description[len(OWNER_PREFIX) :] in existing
    )


def unlink(apps: Any, schema_editor: Any) -> None:
    Endpoint = apps.get_model("automation", "Endpoint")
    WorkflowEndpoint = apps.get_model("automation", "WorkflowEndpoint")
    for endpoint_id, workflow_id in WorkflowEndpoint.objects.values_list(
        "endpoint_id", "workflow_id"
    ):
        Endpoint.objects.filter(pk=endpoint_id).update(description=f"{OWNER_PREFIX}{workflow_id}")
    WorkflowEndpoint.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("automation", "0008_workflow_endpoints_and_cancelled_runs")]

    operations = [migrations.RunPython(link, unlink)]
