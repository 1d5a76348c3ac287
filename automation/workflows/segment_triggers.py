"""Segment triggers: a workflow run for a segment entry or exit, made with the transition.

A workflow with `trigger_segments: [{"segment": "at_risk", "on": "entered"}]` runs
for a customer each time they enter `at_risk`. The hook (`segment_transitions_start`,
registered in AutomationConfig.ready() through automation.segments.hooks) is called
inside the transaction that writes the transitions (automation.segments.membership),
so:

1. The transition row is the source of truth: the run is inserted in the same
   transaction, keyed unique on (workflow, membership row, entered | exited). A
   transition is made once (the refresh holds the customer's row lock and a partial
   unique index keeps one current stay), and even a repeated insert of its run does
   nothing. A rollback takes both away; a commit makes both exist.
2. The workflow's conditions are evaluated for the customer as of the transition
   (automation.workflows.selectors.customer_contexts: customer fields, frequency
   counts, segments, which include the transition itself). There is no event: event,
   property and first leaves are missing and never match.
3. The re-entry policy applies as for events, under the same per-(workflow, customer)
   lock (automation.workflows.evaluation.reentry_allows).
4. After commit the runs' actions are handed on like any run's; a lost hand-on is
   resumed by the dispatcher (the run's resume_at).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from automation.segments.hooks import Transition
from automation.workflows.engine import evaluate, matches
from automation.workflows.evaluation import reentry_allows, run_row, runs_insert
from automation.workflows.runner import runs_hand_on
from automation.workflows.selectors import LoadedWorkflow, active_workflows, customer_contexts


def trigger_of(transition: Transition) -> dict[str, str]:
    """What the run shows as `trigger` (and a webhook action's body carries)."""
    return {"segment": transition.segment_key, "on": transition.on}


def segment_transitions_start(transitions: list[Transition]) -> list[str]:
    """Insert the runs `transitions` start (in the caller's transaction); returns the ids
    of those with actions to run, handed on after commit."""
    by_segment = active_workflows().by_segment
    if not by_segment:
        return []
    started = [
        (transition, workflow)
        for transition in transitions
        for workflow in by_segment.get((transition.segment_id, transition.on), ())
    ]
    if not started:
        return []
    now = max(transition.at for transition, _ in started)
    workflows = list({workflow.id: workflow for _, workflow in started}.values())
    contexts = customer_contexts(
        customer_ids={transition.customer_id for transition, _ in started},
        workflows=workflows,
        now=now,
    )
    candidates: list[tuple[LoadedWorkflow, Any, dict[str, Any]]] = []
    for transition, workflow in started:
        context = contexts[transition.customer_id]
        if matches(workflow.compiled, context):
            explanation = evaluate(workflow.compiled, context).as_dict()
            candidates.append((workflow, transition, explanation))
    runs = [
        run_row(
            workflow,
            customer_id=transition.customer_id,
            now=transition.at,
            explanation=explanation,
            segment_membership_id=transition.membership_id,
            segment_on=transition.on,
            trigger=trigger_of(transition),
        )
        for workflow, transition, explanation in reentry_allows(candidates, now)
    ]
    if not runs:
        return []
    run_ids = runs_insert(runs)
    transaction.on_commit(lambda: runs_hand_on(run_ids))
    return run_ids
