"""WSGI entry point. Without a broker (the embedded default) it also starts the
in-process background runner, so the one `scripts/dev` process delivers webhooks."""

from __future__ import annotations

import gc
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

# Move everything loaded at start-up (Django, the apps, the URLconf and the views
# it imports) out of the cyclic garbage collector's reach: each full collection
# otherwise re-scans those hundreds of thousands of long-lived objects, and a
# 1000-event batch allocates enough to trigger several -- measured at half of a
# batch request's CPU time. The URLconf is loaded here, not on the first request,
# so that the views are frozen too.
get_resolver().url_patterns  # noqa: B018
gc.collect()
gc.freeze()

if not settings.CELERY_BROKER_URL:
    from project.background import start_embedded_runner

    start_embedded_runner()
