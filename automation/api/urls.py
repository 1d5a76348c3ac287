from __future__ import annotations

from automation.schedules.api.urls import urlpatterns as schedule_urls
from automation.segments.api.urls import urlpatterns as segment_urls
from automation.webhooks.api.urls import urlpatterns as delivery_urls
from automation.workflows.api.urls import urlpatterns as workflow_urls
from automation.workflows.policies.api.urls import urlpatterns as policy_urls
from automation.workflows.simulation.api.urls import urlpatterns as simulation_urls

# Simulation routes first: "simulate" and "simulations" must not be read as workflow ids.
urlpatterns = [
    *delivery_urls,
    *schedule_urls,
    *simulation_urls,
    *workflow_urls,
    *segment_urls,
    *policy_urls,
]
