"""Request bodies (msgspec) and output shapes of the workflows API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from rest_framework import serializers

from automation.workflows.models import Workflow, WorkflowRun
from events_app.schemas import EventIn, PropertyRecordIn

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TypeRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
SegmentRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Goal = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description='{"event_type": a key or id, "conditions": an optional condition tree}: '
        "such an event ends the customer's unfinished runs as converted; null: no goal."
    ),
]
PolicyRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SegmentTriggerIn(msgspec.Struct, forbid_unknown_fields=True):
    """Run the workflow for a customer when they enter (or exit) the segment."""

    segment: SegmentRef
    on: Literal["entered", "exited"]


class WorkflowIn(msgspec.Struct, forbid_unknown_fields=True):
    """A workflow; on PATCH every field is optional and absent fields keep their value."""

    name: Name | None = None
    trigger_event_types: list[TypeRef] | None = None
    trigger_segments: Annotated[list[SegmentTriggerIn], msgspec.Meta(max_length=100)] | None = None
    conditions: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    active: bool | None = None
    reentry: str | None = None
    # Absent: unchanged (none on create); null: no goal. An object rather than a Struct:
    # OpenAPI 3.0 cannot say "a nullable $ref" in a way validators agree on; the shape
    # is checked by the service (automation.workflows.goals.goal_check).
    goal: Goal | msgspec.UnsetType | None = msgspec.UNSET
    # A delivery policy's key or id; null removes the policy; absent keeps it.
    delivery_policy: PolicyRef | msgspec.UnsetType | None = msgspec.UNSET
    trigger_on_merged_events: bool | None = None


class WorkflowBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /workflows and PATCH /workflows/{id}: `{"workflow": {...}}`."""

    workflow: WorkflowIn


class WorkflowTestIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /workflows/{id}/test: a stored event's id, or an inline event."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    event: EventIn | None = None
    property_records: list[PropertyRecordIn] = msgspec.field(default_factory=list)


class SegmentTriggerSerializer(serializers.Serializer):
    segment = serializers.CharField(help_text="The segment's key or id, as given.")
    on = serializers.ChoiceField(choices=["entered", "exited"])


class WorkflowSerializer(serializers.ModelSerializer):
    workflow_id = serializers.CharField(source="id")
    trigger_event_types = serializers.SerializerMethodField(help_text="Event type keys.")
    trigger_event_type_ids = serializers.SerializerMethodField()
    trigger_segments = SegmentTriggerSerializer(
        many=True,
        help_text="Segment entries / exits that run the workflow for the customer.",
    )
    conditions = serializers.JSONField()
    actions = serializers.JSONField()
    goal = serializers.JSONField(
        allow_null=True,
        help_text='{"event_type", "conditions"}: an event that ends the customer\'s '
        "unfinished runs as converted; null: none.",
    )
    delivery_policy: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="key",
        read_only=True,
        allow_null=True,
        help_text="The key of the delivery policy (caps, quiet hours) over its actions.",
    )

    class Meta:
        model = Workflow
        fields = [
            "workflow_id",
            "name",
            "trigger_event_types",
            "trigger_event_type_ids",
            "trigger_segments",
            "conditions",
            "actions",
            "active",
            "reentry",
            "goal",
            "delivery_policy",
            "trigger_on_merged_events",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_trigger_event_types(self, workflow: Workflow) -> list[str]:
        return sorted(t.key for t in workflow.trigger_event_types.all())

    def get_trigger_event_type_ids(self, workflow: Workflow) -> list[str]:
        return sorted(t.pk for t in workflow.trigger_event_types.all())


WEBHOOK_SECRETS_HELP = (
    "endpoint_id → Standard Webhooks signing secret (whsec_…) of each endpoint of the "
    "workflow's webhook actions; shown only here."
)


class WorkflowSecretsSerializer(serializers.Serializer):
    """The answer that shows signing secrets: create, reveal and rotate (write scope)."""

    workflow_id = serializers.CharField()
    webhook_secrets = serializers.DictField(
        child=serializers.CharField(), help_text=WEBHOOK_SECRETS_HELP
    )


class RunTriggerSerializer(serializers.Serializer):
    """What started a run that no event started: a segment transition or a broadcast."""

    segment = serializers.CharField(help_text="The segment's key.")
    on = serializers.ChoiceField(
        choices=["entered", "exited"], required=False, help_text="A segment trigger's transition."
    )
    broadcast = serializers.CharField(required=False, help_text="A broadcast's broadcast_key.")


class WorkflowRunSerializer(serializers.ModelSerializer):
    workflow_run_id = serializers.CharField(source="id")
    workflow_id = serializers.CharField()
    event_id = serializers.CharField(
        allow_null=True, help_text="The event that started the run (null: see trigger)."
    )
    trigger = RunTriggerSerializer(
        allow_null=True,
        help_text='{"segment", "on"} for a segment trigger, {"broadcast", "segment"} for a '
        "broadcast; null for a run an event started.",
    )
    customer_id = serializers.CharField()
    outcomes = serializers.JSONField()
    explanation = serializers.JSONField()

    class Meta:
        model = WorkflowRun
        fields = [
            "workflow_run_id",
            "workflow_id",
            "event_id",
            "trigger",
            "customer_id",
            "workflow_version",
            "status",
            "position",
            "branch",
            "outcomes",
            "error",
            "explanation",
            "resume_at",
            "created_at",
            "finished_at",
            "source",
        ]
        read_only_fields = fields


class ActionStatsSerializer(serializers.Serializer):
    """How the runs' outcomes of one action came out."""

    index = serializers.IntegerField(help_text="The action's index (within its branch).")
    type = serializers.CharField(allow_null=True)
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    capped = serializers.IntegerField()
    deferred = serializers.IntegerField()


class BranchStatsSerializer(serializers.Serializer):
    branch = serializers.IntegerField(help_text="The branch's index in the split.")
    weight = serializers.IntegerField()
    runs_started = serializers.IntegerField()
    converted = serializers.IntegerField()
    conversion_rate = serializers.FloatField(min_value=0, max_value=1)
    actions = ActionStatsSerializer(many=True)


class WorkflowStatsSerializer(serializers.Serializer):
    """GET /workflows/{id}/stats (docs/automation.md, Stats)."""

    runs_started = serializers.IntegerField()
    converted = serializers.IntegerField()
    conversion_rate = serializers.FloatField(
        min_value=0, max_value=1, help_text="converted / runs_started, 4 decimals."
    )
    actions = ActionStatsSerializer(many=True)
    branches = BranchStatsSerializer(many=True)
