"""Celery tasks of automation, and `enqueue`: the one way code hands work to the background.

Tasks are thin: they call one idempotent worker function with an id. Where the
task runs depends on the deployment (docs/operations.md):
- a broker is configured: a Celery worker (acks_late, reject on worker loss);
- no broker, inside the served app: the embedded runner's threads;
- no broker, anywhere else (manage.py commands, tests): inline, right away.
Never a countdown/ETA: waits live in the database as due times.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Task, shared_task

from automation import periodic
from project.celery import app


@shared_task(name="automation.deliver_one", acks_late=True, reject_on_worker_lost=True)
def deliver_one_task(delivery_id: str) -> str:
    """Send one delivery (automation.delivery_sender.deliver_one)."""
    from automation.delivery_sender import deliver_one

    return deliver_one(delivery_id)


@shared_task(name="automation.run_periodic", acks_late=True)
def run_periodic_task(name: str) -> int:
    """Run one job of automation.periodic.PERIODIC_JOBS (scheduled by Celery beat)."""
    return periodic.run_job(name)


def enqueue_many(task: Task, args_list: Iterable[tuple[Any, ...]]) -> None:
    """Hand each call to the background (see the module docstring for where it runs)."""
    if not app.conf.task_always_eager:
        with app.producer_or_acquire() as producer:
            for args in args_list:
                task.apply_async(args, producer=producer)
        return
    runner = periodic.embedded_runner()
    for args in args_list:
        if runner is not None:
            runner.submit(task.run, args)
        else:
            task.run(*args)


def enqueue(task: Task, *args: Any) -> None:
    enqueue_many(task, [args])


# ---------------------------------------------------------------- workflows (issue 6)

# Message priorities on the Redis broker (0 is served first; kombu polls a queue's
# priority levels in order): an evaluation is never stuck behind a backlog of actions
# on the same queue, so a burst of runs cannot delay the next batch's runs.
EVALUATION_PRIORITY = 0
ACTIONS_PRIORITY = 6


@shared_task(
    name="automation.evaluate_events",
    acks_late=True,
    reject_on_worker_lost=True,
    priority=EVALUATION_PRIORITY,
)
def evaluate_events_task(event_ids: list[str]) -> int:
    """Evaluate a batch of events' workflows and run the new runs' actions."""
    from automation.workflow_runs import events_evaluate_and_run

    return events_evaluate_and_run(event_ids=event_ids)


@shared_task(
    name="automation.advance_workflow_run",
    acks_late=True,
    reject_on_worker_lost=True,
    priority=ACTIONS_PRIORITY,
)
def advance_workflow_run_task(run_id: str) -> None:
    """Run one workflow run's actions from its position (after a wait or a lost worker)."""
    from automation.workflow_runs import workflow_run_advance

    workflow_run_advance(run_id=run_id)


def enqueue_workflow_evaluation(event_ids: list[str]) -> None:
    enqueue(evaluate_events_task, event_ids)


def enqueue_workflow_runs(run_ids: list[str]) -> None:
    enqueue_many(advance_workflow_run_task, [(run_id,) for run_id in run_ids])
