"""The split action: the run continues down one of 2-10 weighted branches.

Which branch is a pure function of (workflow, customer) (automation.workflows.splits):
a customer always lands in the same branch of a workflow. The branch is recorded on
the run (`WorkflowRun.branch`); the runner then walks the branch's actions and, after
them, the top-level actions that follow the split (automation.workflows.splits.run_steps).
A workflow has at most one split, at the top level: a split inside a branch is refused.
"""

from __future__ import annotations

from typing import Any

from automation.workflows.actions.base import Action, ActionContext, ActionResult
from automation.workflows.splits import SPLIT, split_branch

MIN_BRANCHES = 2
MAX_BRANCHES = 10
MAX_WEIGHT = 10_000


class Split(Action):
    """Send the run down one branch, chosen by weight and fixed per customer."""

    type = SPLIT
    fields = frozenset({"branches"})
    required = frozenset({"branches"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        # The branches' actions are validated by the registry's validator (`nested`).
        branches = spec["branches"]
        if not isinstance(branches, list) or not MIN_BRANCHES <= len(branches) <= MAX_BRANCHES:
            errors.setdefault("branches", []).append(
                f"Must be a list of {MIN_BRANCHES}-{MAX_BRANCHES} branches "
                '{"weight": …, "actions": […]}.'
            )
            return
        for index, branch in enumerate(branches):
            path = f"branches[{index}]"
            if not isinstance(branch, dict) or set(branch) != {"weight", "actions"}:
                errors.setdefault(path, []).append('Must be {"weight": …, "actions": […]}.')
                continue
            weight = branch["weight"]
            if (
                not isinstance(weight, int)
                or isinstance(weight, bool)
                or not 1 <= weight <= MAX_WEIGHT
            ):
                errors.setdefault(f"{path}.weight", []).append(
                    f"Must be a whole number from 1 to {MAX_WEIGHT}."
                )
            if isinstance(branch["actions"], list):
                for position, action in enumerate(branch["actions"]):
                    if isinstance(action, dict) and action.get("type") == SPLIT:
                        errors.setdefault(f"{path}.actions[{position}]", []).append(
                            "A split cannot contain another split."
                        )

    def nested(self, spec: dict[str, Any]) -> dict[str, Any]:
        branches = spec.get("branches")
        if not isinstance(branches, list) or not MIN_BRANCHES <= len(branches) <= MAX_BRANCHES:
            return {}
        return {
            f"branches[{index}].actions": branch["actions"]
            for index, branch in enumerate(branches)
            if isinstance(branch, dict) and "actions" in branch
        }

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        weights = [branch["weight"] for branch in spec["branches"]]
        branch = split_branch(ctx.run.workflow_id, ctx.run.customer_id, weights)
        return ActionResult({"branch": branch}, branch=branch)
