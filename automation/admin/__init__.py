"""Admin registrations, one module per area (imported for their side effect)."""

from __future__ import annotations

from automation.admin import delivery, schedules, workflows  # noqa: F401
