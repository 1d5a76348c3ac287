"""Merge hooks: how the layers above take part in a merge without customers importing them.

Automation registers (AutomationConfig.ready()):

- a preview hook: for a dry run, inside the merge's rolled-back transaction, which
  segments the merged customer would enter and exit (the segment engine's own
  evaluation);
- a merged hook: after a merge, in its transaction, the internal `customer.merged`
  event and the evaluation of moved events for workflows that ask for it;
- an undone hook: after an undo, in its transaction (state derived from the moved
  rows, such as delivery policies' counters, is recounted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from project.hooks import Hooks

if TYPE_CHECKING:
    from customers.identity.models import CustomerMerge

# (primary id, secondary id), called before the merge's moves -> a function called after
# them that answers {"entered": [segment keys], "exited": [segment keys], …}.
MergePreviewHook = Callable[[str, str], Callable[[], dict[str, Any]]]
# (the merge record)
MergedHook = Callable[["CustomerMerge"], None]

_preview: Hooks[MergePreviewHook] = Hooks()
_merged: Hooks[MergedHook] = Hooks()
_undone: Hooks[MergedHook] = Hooks()
merge_preview_hook_register = _preview.register
merged_hook_register = _merged.register
merge_undone_hook_register = _undone.register


def merge_preview_start(primary_id: str, secondary_id: str) -> Callable[[], dict[str, Any]]:
    """Start every registered preview hook before a dry run's moves; the function
    returned, called after them, answers what they all found."""
    finishers = [hook(primary_id, secondary_id) for _name, hook in _preview.all()]

    def finish() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for finisher in finishers:
            found.update(finisher())
        return found

    return finish


def merge_made(merge: CustomerMerge) -> None:
    """Tell every merged hook; call it inside the merge's transaction."""
    for _name, hook in _merged.all():
        hook(merge)


def merge_undone(merge: CustomerMerge) -> None:
    """Tell every undone hook; call it inside the undo's transaction."""
    for _name, hook in _undone.all():
        hook(merge)
