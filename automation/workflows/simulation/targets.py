"""What a simulation or backfill replays: a workflow (saved, or a body) and a period.

A saved workflow is compiled as the workers compile it; an unsaved body is validated
as POST /workflows validates one and never stored. Either way its delivery policy
(automation.workflows.policies.spec) comes along for the caps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from automation.workflows.models import Workflow
from automation.workflows.policies.selectors import delivery_policy_find
from automation.workflows.policies.spec import PolicySpec, policy_spec_of
from automation.workflows.selectors import LoadedWorkflow, workflow_get
from automation.workflows.services import WorkflowInput, workflow_validate
from events_app.models import EventType
from project.errors import ValidationFailed

MAX_DAYS = 366
UNSAVED_NAME = "Simulation"
CAPS_NOT_SIMULATED = "The workflow's delivery policy could not be read, so caps were not simulated."


@dataclass
class Target:
    """A workflow to replay: compiled, with its triggers and policy."""

    loaded: LoadedWorkflow
    trigger_type_ids: frozenset[str]
    saved_workflow_id: str | None
    policy: PolicySpec | None
    notes: list[str]
    policy_id: str | None = None  # the stored policy (its ledger counts toward caps)


def policy_of(workflow: Workflow, notes: list[str]) -> PolicySpec | None:
    """The workflow's delivery policy as a spec."""
    policy = workflow.delivery_policy
    if policy is None:
        return None
    try:
        return policy_spec_of(
            {
                "key": policy.key,
                "caps": policy.caps,
                "quiet_hours": policy.quiet_hours,
                "on_blocked": policy.on_blocked,
            }
        )
    except (AttributeError, ValueError, KeyError, TypeError):
        notes.append(CAPS_NOT_SIMULATED)
        return None


def _type_ids() -> dict[str, str]:
    return dict(EventType.objects.values_list("key", "id"))


def saved_target(workflow: Workflow) -> Target:
    notes: list[str] = []
    return Target(
        loaded=LoadedWorkflow.of(workflow, type_ids=_type_ids()),
        trigger_type_ids=frozenset(t.pk for t in workflow.trigger_event_types.all()),
        saved_workflow_id=workflow.pk,
        policy=policy_of(workflow, notes),
        notes=notes,
        policy_id=workflow.delivery_policy_id,
    )


def unsaved_target(body: dict[str, Any]) -> Target:
    """A workflow body validated as POST /workflows validates one (nothing stored)."""
    data = WorkflowInput(**{**body, "name": body.get("name") or UNSAVED_NAME})
    errors, types = workflow_validate(data)
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(
            f"Invalid workflow: {path}: {messages[0]}",
            details={f"workflow.{p}" if p else "workflow": m for p, m in errors.items()},
        )
    unsaved = Workflow(
        name=data.name or UNSAVED_NAME,
        conditions=data.conditions or {},
        actions=data.actions or [],
        reentry=data.reentry or Workflow.EVERY_EVENT,
    )
    if isinstance(data.delivery_policy, str):
        unsaved.delivery_policy = delivery_policy_find(ref=data.delivery_policy)
    notes: list[str] = []
    return Target(
        loaded=LoadedWorkflow.of(unsaved, type_ids=_type_ids()),
        trigger_type_ids=frozenset(t.pk for t in types),
        saved_workflow_id=None,
        policy=policy_of(unsaved, notes),
        notes=notes,
        policy_id=unsaved.delivery_policy_id,
    )


def target_of(params: dict[str, Any]) -> Target:
    if params.get("workflow_id"):
        return saved_target(workflow_get(workflow_id=params["workflow_id"]))
    return unsaved_target(params["workflow"])


def check_period(start: datetime, end: datetime, *, field: str = "from") -> None:
    if start >= end:
        raise ValidationFailed(
            "'from' must be before 'to'.", details={field: ["Must be before 'to'."]}
        )
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(
            f"The period must be at most {MAX_DAYS} days.",
            details={"to": [f"At most {MAX_DAYS} days after 'from'."]},
        )
