"""Automation's models live with their subsystems; Django finds them here.

The app label stays `automation` (tables and migrations keep their names).
"""

# ruff: noqa: I001
from __future__ import annotations

# Registration order is Django's order of related objects (deletes follow it): the
# delivery models first, as when they were defined in one module.
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.schedules.models import Schedule, ScheduleRun
from automation.workflows.policies.models import DeliveryPolicy, PolicyCounter, PolicyUsage
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.simulation.models import Simulation, WorkflowBackfill
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.activity import ActivityHourCount

__all__ = [
    "ActivityHourCount",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryPolicy",
    "Endpoint",
    "PolicyCounter",
    "PolicyUsage",
    "Schedule",
    "ScheduleRun",
    "Segment",
    "SegmentCheck",
    "SegmentMembership",
    "Simulation",
    "Workflow",
    "WorkflowBackfill",
    "WorkflowEndpoint",
    "WorkflowRun",
]
