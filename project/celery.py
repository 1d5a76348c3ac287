"""The Celery app: settings from Django (CELERY_*), tasks autodiscovered (each app's
`tasks` module). Beat's schedule is project.background's periodic-job registry, which
the apps fill when Django starts. Run a worker with `celery -A project worker`, beat
with `celery -A project beat` (docs/operations.md)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("herald")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
