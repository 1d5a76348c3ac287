"""Celery queues: each kind of work is sent to its own queue (project/celery.py)."""

from __future__ import annotations

import pytest

from project.background import RUN_PERIODIC, periodic_jobs
from project.celery import PERIODIC_JOB_QUEUES, TASK_QUEUES, all_queues, app


def queue_of(name: str, args: tuple[object, ...] = ()) -> str:
    """The queue a message for this task would be published to."""
    options = app.amqp.router.route({}, name, args, {})
    return options["queue"].name


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("automation.deliver_one", "deliveries"),
        ("automation.claim_due", "evaluation"),
        ("automation.advance_workflow_run", "evaluation"),
        ("automation.segment_build", "evaluation"),
        ("automation.segments_refresh_customers", "evaluation"),
        ("automation.segment_broadcast", "evaluation"),
    ],
)
def test_each_kind_of_task_goes_to_its_queue(task: str, queue: str) -> None:
    assert queue_of(task, ("x",)) == queue


def test_ticks_and_due_claims_go_to_their_queues_other_periodic_jobs_to_the_default() -> None:
    default = app.conf.task_default_queue
    queues = {job.name: queue_of(RUN_PERIODIC, (job.name,)) for job in periodic_jobs()}
    assert queues.pop("schedules.dispatch") == "schedules"
    assert queues.pop("due.claim") == "evaluation"
    assert queues.pop("segments.sweep") == "evaluation"
    assert queues, "no other periodic job registered"
    assert set(queues.values()) == {default}


def test_every_routed_name_is_a_registered_task_or_periodic_job() -> None:
    assert set(TASK_QUEUES) <= set(app.tasks)
    assert set(PERIODIC_JOB_QUEUES) <= {job.name for job in periodic_jobs()}


def test_a_worker_consuming_all_queues_gets_every_routed_queue_and_the_default() -> None:
    assert all_queues("mine") == ["mine", "deliveries", "evaluation", "schedules"]
    routed = set(TASK_QUEUES.values()) | set(PERIODIC_JOB_QUEUES.values())
    assert routed | {app.conf.task_default_queue} == set(all_queues())
