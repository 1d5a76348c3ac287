"""Retention hooks: how the layers above events_app learn that stored events were dropped.

events_app never imports the layers above it. When retention drops a month of events
(events_app.partitions.maintenance), what was computed from those events may be
stale: automation registers a hook (AutomationConfig.ready()) that re-evaluates the
segments reading that far back. Each hook is called inside the transaction that drops
the month, with the range of `created_at` dropped, and defers its own work until
commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from project.hooks import Hooks

# (the start and the end of the created_at range dropped: [start, end)).
RetentionHook = Callable[[datetime, datetime], object]

_hooks: Hooks[RetentionHook] = Hooks()
retention_hook_register = _hooks.register


def events_dropped(*, created_from: datetime, created_to: datetime) -> None:
    """Tell every registered hook; call it inside the transaction that dropped them."""
    for _name, hook in _hooks.all():
        hook(created_from, created_to)
