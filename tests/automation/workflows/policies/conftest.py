from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.models import DeliveryPolicy
from automation.workflows.policies.services import delivery_policy_create
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer

QUIET = {
    "start": "21:00",
    "end": "08:00",
    "timezone_attribute": "timezone",
    "default_timezone": "Europe/Prague",
}
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def make_policy(db: None) -> Callable[..., DeliveryPolicy]:
    def make(**fields: Any) -> DeliveryPolicy:
        fields.setdefault("key", "default")
        return delivery_policy_create(data=fields)

    return make


@pytest.fixture
def policed_workflow(db: None, allow_loopback: None) -> Callable[..., Workflow]:
    """A workflow under `policy` with the given actions (one webhook by default)."""

    def make(policy: DeliveryPolicy, actions: list[dict[str, Any]] | None = None) -> Workflow:
        return workflow_create(
            data=WorkflowInput(
                name=f"under {policy.key}",
                trigger_segments=[],
                trigger_event_types=["purchase"],
                actions=actions or [{"type": "webhook", "url": HOOK}],
                delivery_policy=policy.key,
            )
        )

    return make


@pytest.fixture
def start_run() -> Callable[..., WorkflowRun]:
    """A pending run of `workflow` for `customer`, as evaluation inserts it."""

    def start(workflow: Workflow, customer: Customer, now: datetime | None = None) -> WorkflowRun:
        workflow.refresh_from_db()
        return WorkflowRun.objects.create(
            workflow=workflow,
            customer=customer,
            actions=workflow.actions,
            created_at=now or timezone.now(),
            resume_at=now or timezone.now(),
        )

    return start
