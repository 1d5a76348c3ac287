"""Transition hooks: how other subsystems learn that customers entered or exited segments.

Segments never import what reacts to them. Workflows register a hook
(AutomationConfig.ready()) that starts the runs of segment triggers; every refresh
calls `transitions_made` inside the transaction that wrote the transitions, so what a
hook writes commits with them, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from project.hooks import Hooks

ENTERED = "entered"
EXITED = "exited"
TRANSITIONS = (ENTERED, EXITED)


@dataclass(frozen=True)
class Transition:
    """One entry or exit: the stay (`membership_id`) it opened or closed."""

    segment_id: str
    segment_key: str
    customer_id: str
    membership_id: int
    on: str  # ENTERED or EXITED
    at: datetime


TransitionHook = Callable[[list[Transition]], object]

_hooks: Hooks[TransitionHook] = Hooks()
transition_hook_register = _hooks.register


def transitions_made(transitions: list[Transition]) -> None:
    """Tell every registered hook; called inside the transaction that wrote them."""
    if not transitions:
        return
    for _name, hook in _hooks.all():
        hook(transitions)
