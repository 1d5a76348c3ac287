"""The Celery app: settings from Django (CELERY_*), tasks autodiscovered (each app's
`tasks` module). Beat's schedule is project.background's periodic-job registry, which
the apps fill when Django starts. Run a worker with `celery -A project worker`, beat
with `celery -A project beat` (docs/operations.md, "Topology"; the Procfile).

Queues: each kind of work has its own, so a machine can be given to one kind and a
backlog of one kind never delays another (docs/operations.md, "Topology"):
- `deliveries`: sending webhook deliveries and schedule callbacks;
- `evaluation`: workflow evaluation and advancing runs (their actions);
- `schedules`: the periodic job that fires due schedule ticks;
- the default queue (`celery`, CELERY_TASK_DEFAULT_QUEUE): the other periodic jobs and
  anything no route names.
Tasks are routed by name (TASK_QUEUES); the periodic jobs all run as one task,
`automation.run_periodic`, so those are routed by job name (PERIODIC_JOB_QUEUES). This
module imports no Herald module: the names are written out (a test checks every routed
name is a registered task or job).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

DELIVERIES = "deliveries"
EVALUATION = "evaluation"
SCHEDULES = "schedules"
ROUTED_QUEUES = (DELIVERIES, EVALUATION, SCHEDULES)

# Task name -> queue. A task not listed goes to the default queue.
TASK_QUEUES: dict[str, str] = {
    "automation.deliver_one": DELIVERIES,
    "automation.claim_due": EVALUATION,
    "automation.advance_workflow_run": EVALUATION,
    "automation.segment_build": EVALUATION,
    "automation.segments_refresh_customers": EVALUATION,
    "automation.segment_broadcast": EVALUATION,
}
# Periodic job name (project.background) -> queue, for `automation.run_periodic`.
PERIODIC_JOB_QUEUES: dict[str, str] = {
    "schedules.dispatch": SCHEDULES,
    "due.claim": EVALUATION,
    "segments.sweep": EVALUATION,
}
RUN_PERIODIC = "automation.run_periodic"


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **extra: Any
) -> dict[str, str] | None:
    """Celery router (task_routes): the queue of a task by its name, and of a periodic
    job's tick by the job's name; None = the default queue."""
    if name == RUN_PERIODIC and args:
        queue = PERIODIC_JOB_QUEUES.get(str(args[0]))
    else:
        queue = TASK_QUEUES.get(name)
    return {"queue": queue} if queue else None


def all_queues(default_queue: str | None = None) -> list[str]:
    """Every queue Herald sends to: what one worker consuming everything passes to -Q."""
    return [default_queue or app.conf.task_default_queue, *ROUTED_QUEUES]


app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = (route_task,)
app.autodiscover_tasks()
