"""Admin registrations of automation's subsystems (imported for their side effect)."""

from __future__ import annotations

from automation.schedules import admin as schedules_admin  # noqa: F401
from automation.segments import admin as segments_admin  # noqa: F401
from automation.webhooks import admin as webhooks_admin  # noqa: F401
from automation.webhooks import admin_deliveries  # noqa: F401
from automation.workflows import admin as workflows_admin  # noqa: F401
from automation.workflows.policies import admin as policies_admin  # noqa: F401
