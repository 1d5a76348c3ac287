"""The wait action: the run pauses, durably, and resumes after a duration."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from automation.workflows.actions.base import Action, ActionContext, ActionResult
from automation.workflows.durations import parse_duration

MAX_WAIT = timedelta(days=365)


class Wait(Action):
    """Pause the run; the dispatcher resumes it at `now + duration` (durable: a DB row)."""

    type = "wait"
    fields = frozenset({"duration"})
    required = frozenset({"duration"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        try:
            duration = parse_duration(spec["duration"])
        except ValueError as exc:
            errors.setdefault("duration", []).append(f"Duration {exc}.")
            return
        if duration > MAX_WAIT:
            errors.setdefault("duration", []).append("Must be at most one year (P365D).")

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        resume_at = ctx.now + parse_duration(spec["duration"])
        return ActionResult({"resume_at": resume_at.isoformat()}, resume_at=resume_at)
