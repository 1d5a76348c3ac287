"""WSGI entry point. Without a broker (the embedded default) it also starts the
in-process background runner, so the one `scripts/dev` process delivers webhooks."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

if not settings.CELERY_BROKER_URL:
    from automation.periodic import start_embedded_runner

    start_embedded_runner()
