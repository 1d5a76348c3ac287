"""Automation models, split by idea: outbound delivery, scheduled callbacks, workflows."""

from __future__ import annotations

from automation.models.delivery import *  # noqa: F403
from automation.models.schedules import *  # noqa: F403
from automation.models.workflows import *  # noqa: F403
