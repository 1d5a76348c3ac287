"""Splits: which branch a customer lands in, and the steps a run walks through.

Both are pure. A workflow has at most one `split` action, at the top level (a split
inside a branch is refused when the workflow is saved): a run records one branch
(`WorkflowRun.branch`), and the stats break down by it.

`split_branch` is deterministic in (workflow, customer): the same customer always
lands in the same branch of a workflow, whichever worker runs it and however often
they re-enter; different workflows split the same customers independently.

`run_steps` flattens a run's actions snapshot into the list `WorkflowRun.position`
points into: the top-level actions up to and including the split, then the chosen
branch's actions, then the top-level actions after the split. Before the run reaches
the split (branch unknown) the list ends at the split. Each step says where its
action lives, which is what an outcome records (`index`, and `branch` for an action
inside a branch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SPLIT = "split"


def split_point(workflow_id: str, customer_id: str, total: int) -> int:
    """A point in [0, total), uniform over customers and fixed per (workflow, customer)."""
    digest = hashlib.blake2b(f"{workflow_id}:{customer_id}".encode(), digest_size=8).digest()
    # 64 bits against a total of at most 10 x 10,000: the modulo's bias is negligible.
    return int.from_bytes(digest, "big") % total


def split_branch(workflow_id: str, customer_id: str, weights: Sequence[int]) -> int:
    """The branch (0-based) that the customer lands in, in proportion to `weights`."""
    point = split_point(workflow_id, customer_id, sum(weights))
    for branch, weight in enumerate(weights):
        if point < weight:
            return branch
        point -= weight
    raise ValueError("weights must be positive")  # unreachable with positive weights


@dataclass(frozen=True, slots=True)
class Step:
    """One action of a run: its spec, its index (top level, or within its branch) and
    its branch (None at the top level)."""

    index: int
    spec: dict[str, Any]
    branch: int | None = None

    def location(self) -> dict[str, Any]:
        """What an outcome records of where the action lives."""
        if self.branch is None:
            return {"index": self.index}
        return {"index": self.index, "branch": self.branch}


def split_index(actions: Sequence[Any]) -> int | None:
    """The position of the (only) split action among the top-level actions, or None."""
    for index, spec in enumerate(actions):
        if isinstance(spec, dict) and spec.get("type") == SPLIT:
            return index
    return None


def run_steps(actions: Sequence[dict[str, Any]], branch: int | None) -> list[Step]:
    """The steps of a run whose actions snapshot is `actions` and whose branch is
    `branch` (None: not chosen yet; the steps then end at the split)."""
    at = split_index(actions)
    if at is None:
        return [Step(i, spec) for i, spec in enumerate(actions)]
    steps = [Step(i, spec) for i, spec in enumerate(actions[: at + 1])]
    if branch is None:
        return steps
    branches = actions[at].get("branches") or []
    if 0 <= branch < len(branches):
        steps += [Step(j, spec, branch) for j, spec in enumerate(branches[branch]["actions"])]
    steps += [Step(i, spec) for i, spec in enumerate(actions[at + 1 :], start=at + 1)]
    return steps


def remaining_steps(
    actions: Sequence[dict[str, Any]], branch: int | None, position: int
) -> list[Step]:
    """The steps a run has not performed yet. A run that has not reached its split
    (branch unknown) has not entered a branch: its remaining steps are the top-level
    actions from `position` on, the split and those after it included."""
    if branch is None:
        return [Step(i, spec) for i, spec in enumerate(actions) if i >= position]
    return run_steps(actions, branch)[position:]
