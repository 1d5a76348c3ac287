"""Workflow actions: one handler class per action type, in `REGISTRY` (house style 6).

Adding an action type is adding a module with an `Action` subclass (see
automation.workflows.actions.base for the protocol) and registering it here.
"""

from __future__ import annotations

from typing import Any

from automation.workflows.actions.base import Action, ActionContext, ActionFailed, ActionResult
from automation.workflows.actions.customer import AddTags, RemoveTags, UpdateCustomer
from automation.workflows.actions.emit_event import EmitEvent
from automation.workflows.actions.split import Split
from automation.workflows.actions.wait import Wait
from automation.workflows.actions.webhook import Webhook

__all__ = [
    "MAX_ACTIONS",
    "REGISTRY",
    "Action",
    "ActionContext",
    "ActionFailed",
    "ActionResult",
    "validate_actions",
]

MAX_ACTIONS = 50

# Action type -> its handler class.
REGISTRY: dict[str, type[Action]] = {
    handler.type: handler
    for handler in (UpdateCustomer, AddTags, RemoveTags, EmitEvent, Wait, Webhook, Split)
}


def validate_actions(
    actions: Any, *, root: str = "actions", top_level: bool = True
) -> dict[str, list[str]]:
    """{path: [messages]} for a list of action specs (empty when valid). The lists an
    action holds (a split's branches) are validated one level down only: a split in a
    branch is refused, so nothing deeper is looked at."""
    if not isinstance(actions, list):
        return {root: ["Must be a list of actions."]}
    if len(actions) > MAX_ACTIONS:
        return {root: [f"At most {MAX_ACTIONS} actions."]}
    errors: dict[str, list[str]] = {}
    splits = 0
    for index, spec in enumerate(actions):
        path = f"{root}[{index}]"
        if not isinstance(spec, dict):
            errors[path] = ["Must be an object with a 'type'."]
            continue
        if spec.get("type") == Split.type:
            splits += 1
            if splits > 1:
                # A run records one branch (WorkflowRun.branch).
                errors.setdefault(path, []).append("At most one split per workflow.")
        kind = spec.get("type")
        handler = REGISTRY.get(kind) if isinstance(kind, str) else None
        if handler is None:
            errors[f"{path}.type"] = [
                f"Unknown action type {spec.get('type')!r}; one of: {', '.join(REGISTRY)}."
            ]
            continue
        action = handler()
        for name, messages in action.check(spec).items():
            errors.setdefault(f"{path}.{name}" if name else path, []).extend(messages)
        for name, nested in action.nested(spec).items() if top_level else ():
            inner_errors = validate_actions(nested, root=f"{path}.{name}", top_level=False)
            for inner, messages in inner_errors.items():
                errors.setdefault(inner, []).extend(messages)
    return errors
