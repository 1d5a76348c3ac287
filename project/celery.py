"""The Celery app: settings from Django (CELERY_*), tasks autodiscovered, beat from
automation.periodic. Run a worker with `celery -A project worker`, beat with
`celery -A project beat` (docs/operations.md, "Background work and delivery")."""

from __future__ import annotations

import os

from celery import Celery

from automation.periodic import beat_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = beat_schedule()
