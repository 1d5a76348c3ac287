"""The workflow change form: the rule builder's fields (automation.workflows.admin.builder)
for triggers, conditions, actions, re-entry, the goal and the delivery policy, validated
by the same service as the API (workflow_validate) so the admin and the API accept the
same workflows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q

from automation.workflows.admin.builder import (
    ActionListField,
    ConditionTreeField,
    ReentryField,
    SegmentTriggersField,
    place_node_errors,
)
from automation.workflows.models import Workflow
from automation.workflows.services import WorkflowInput, workflow_validate
from events_app.models import EventType


class WorkflowAdminForm(forms.ModelForm):
    # Not required here: a workflow may have segment triggers only (the service says
    # when neither is given).
    trigger_event_types = forms.ModelMultipleChoiceField(
        queryset=EventType.objects.all(), required=False
    )
    trigger_segments = SegmentTriggersField(
        required=False,
        help_text="Run for a customer each time they enter or leave one of these segments.",
    )
    # Edited with the rule builder; the JSON stays available as its "advanced" view.
    # The services validate the content (messages point at the node).
    conditions = ConditionTreeField(required=False, triggers="#id_trigger_event_types")
    actions = ActionListField(required=False)
    reentry = ReentryField(
        label="Re-entry",
        help_text="How often one customer may go through this workflow.",
    )
    # The goal (Workflow.goal) as two inputs: its event type and optional conditions.
    goal_event_type = forms.ModelChoiceField(
        queryset=EventType.objects.order_by("key"),
        to_field_name="key",
        required=False,
        label="Goal event",
        help_text="When this event arrives, the customer's unfinished runs end as converted "
        "(the remaining actions are skipped). Empty: no goal.",
    )
    goal_conditions = ConditionTreeField(
        required=False,
        root="goal.conditions",
        label="Goal conditions",
        help_text="Optional: only goal events matching these conditions count.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        goal = self.instance.goal if isinstance(self.instance.goal, dict) else None
        if goal:
            event_type = EventType.objects.filter(
                Q(key=goal.get("event_type")) | Q(pk=goal.get("event_type"))
            ).first()
            self.initial.setdefault("goal_event_type", event_type.key if event_type else None)
            self.initial.setdefault("goal_conditions", goal.get("conditions") or {})

    class Meta:
        model = Workflow
        fields = [
            "name",
            "trigger_event_types",
            "trigger_segments",
            "conditions",
            "actions",
            "active",
            "reentry",
            "delivery_policy",
            "trigger_on_merged_events",
        ]
        labels = {"trigger_on_merged_events": "Trigger on merged events"}
        help_texts = {
            "delivery_policy": "Frequency caps and quiet hours over this workflow's actions "
            "(actions marked exempt are not limited).",
            "trigger_on_merged_events": "When two customers are merged, evaluate the events "
            "the merge moved to the remaining customer for this workflow (off: a merge does "
            "not fire old events again).",
        }

    FIELD_OF_PATH = {
        "conditions": "conditions",
        "actions": "actions",
        "trigger_event_types": "trigger_event_types",
        "trigger_segments": "trigger_segments",
        "reentry": "reentry",
        "delivery_policy": "delivery_policy",
        "name": "name",
        "goal": "goal_event_type",
    }

    def field_of_path(self, path: str) -> str | None:
        if path.startswith("goal.conditions"):
            return "goal_conditions"
        return self.FIELD_OF_PATH.get(path.split(".", 1)[0].split("[", 1)[0])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        data = WorkflowInput(
            name=cleaned.get("name"),
            trigger_event_types=[t.pk for t in cleaned.get("trigger_event_types") or []],
            trigger_segments=cleaned.get("trigger_segments") or [],
            conditions=cleaned.get("conditions") or {},
            actions=cleaned.get("actions") or [],
            active=cleaned.get("active"),
            reentry=cleaned.get("reentry"),
            goal=(
                {
                    "event_type": cleaned["goal_event_type"].key,
                    "conditions": cleaned.get("goal_conditions") or {},
                }
                if cleaned.get("goal_event_type")
                else None
            ),
            delivery_policy=policy.pk if (policy := cleaned.get("delivery_policy")) else None,
            trigger_on_merged_events=cleaned.get("trigger_on_merged_events"),
        )
        errors, _ = workflow_validate(data)
        place_node_errors(self, errors, self.field_of_path)
        self.workflow_input = data
        return cleaned
