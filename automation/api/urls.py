from __future__ import annotations

from automation.api.delivery.urls import urlpatterns as delivery_urls
from automation.api.schedules.urls import urlpatterns as schedule_urls
from automation.api.workflows.urls import urlpatterns as workflow_urls

urlpatterns = [*delivery_urls, *schedule_urls, *workflow_urls]
