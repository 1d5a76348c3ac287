"""A workflow's figures: runs started, conversions, and each action's outcomes, in all
and per branch of its split (GET /workflows/{id}/stats, the workflow's admin page).

Two set-based reads, whatever the number of runs: the runs per branch and status
(an aggregate over the runs of the workflow, served by workflowrun_workflow_idx), and
the outcomes per (index, branch, type, status) -- an aggregate over every run's
`outcomes` list expanded in SQL (jsonb_array_elements on PostgreSQL, json_each on
SQLite: the only place the two differ).

What counts:
* `runs_started`: the workflow's runs, except those of events that could not be
  evaluated (evaluation.EVALUATION_ERROR: the workflow was never entered);
* `converted`: runs ended by the workflow's goal; `conversion_rate` = converted /
  runs_started, rounded to 4 decimals (0 without runs);
* `actions`: one item per action of the workflow as it is now, counting the outcomes
  recorded at that index with that action type (outcomes of an older version whose
  action at that index had another type are not counted); a split's branches count
  their own actions in `branches`;
* `branches`: one item per branch of the workflow's split as it is now (empty
  without one): the runs that landed in it, their conversions, and its actions.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from django.db import connection
from django.db.models import Count, Q

from automation.workflows.evaluation import EVALUATION_ERROR
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.splits import split_index
from project.sql import fetch_all

OUTCOME_STATUSES = ("succeeded", "failed", "skipped", "capped", "deferred")

# Outcomes of a workflow's runs, counted by (index, branch, type, status).
_OUTCOMES = {
    "postgresql": """
SELECT o->>'index', o->>'branch', o->>'type', o->>'status', count(*)
FROM {table} AS r CROSS JOIN LATERAL jsonb_array_elements(r.outcomes) AS o
WHERE r.workflow_id = %s AND jsonb_typeof(r.outcomes) = 'array'
GROUP BY 1, 2, 3, 4
""",
    "sqlite": """
SELECT json_extract(o.value, '$.index'), json_extract(o.value, '$.branch'),
    json_extract(o.value, '$.type'), json_extract(o.value, '$.status'), count(*)
FROM {table} AS r, json_each(r.outcomes) AS o
WHERE r.workflow_id = %s
GROUP BY 1, 2, 3, 4
""",
}

OutcomeKey = tuple[int, int | None, str, str]  # index, branch, type, status


@functools.cache
def _outcomes_sql(vendor: str) -> str:
    template = _OUTCOMES["postgresql" if vendor == "postgresql" else "sqlite"]
    return template.format(table=connection.ops.quote_name(WorkflowRun._meta.db_table))


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _outcome_counts(workflow: Workflow) -> Counter[OutcomeKey]:
    counts: Counter[OutcomeKey] = Counter()
    for index, branch, kind, status, n in fetch_all(
        _outcomes_sql(connection.vendor), [workflow.pk]
    ):
        position = _int(index)
        if position is not None:
            counts[(position, _int(branch), str(kind), str(status))] += n
    return counts


def _rate(converted: int, started: int) -> float:
    return round(converted / started, 4) if started else 0.0


def _actions(
    actions: list[Any], branch: int | None, counts: Counter[OutcomeKey]
) -> list[dict[str, Any]]:
    items = []
    for index, spec in enumerate(actions):
        kind = spec.get("type") if isinstance(spec, dict) else None
        items.append(
            {
                "index": index,
                "type": kind,
                **{s: counts[(index, branch, str(kind), s)] for s in OUTCOME_STATUSES},
            }
        )
    return items


def workflow_stats(*, workflow: Workflow) -> dict[str, Any]:
    """The workflow's figures (see the module's docstring)."""
    per_branch: dict[int | None, tuple[int, int]] = {
        row["branch"]: (row["started"], row["converted"])
        for row in WorkflowRun.objects.filter(workflow=workflow)
        .exclude(explanation__has_key=EVALUATION_ERROR)
        .order_by()
        .values("branch")
        .annotate(
            started=Count("pk"),
            converted=Count("pk", filter=Q(status=WorkflowRun.Status.CONVERTED)),
        )
    }
    started = sum(s for s, _ in per_branch.values())
    converted = sum(c for _, c in per_branch.values())
    counts = _outcome_counts(workflow)
    actions = workflow.actions if isinstance(workflow.actions, list) else []
    at = split_index(actions)
    branches = []
    if at is not None:
        for number, branch in enumerate(actions[at].get("branches") or []):
            b_started, b_converted = per_branch.get(number, (0, 0))
            branches.append(
                {
                    "branch": number,
                    "weight": branch.get("weight"),
                    "runs_started": b_started,
                    "converted": b_converted,
                    "conversion_rate": _rate(b_converted, b_started),
                    "actions": _actions(branch.get("actions") or [], number, counts),
                }
            )
    return {
        "runs_started": started,
        "converted": converted,
        "conversion_rate": _rate(converted, started),
        "actions": _actions(actions, None, counts),
        "branches": branches,
    }
