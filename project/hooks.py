"""Named hooks: how a lower layer calls into the layers above it without importing them.

The lower layer owns a `Hooks` and calls its hooks where the thing happens (a
customer changed, a month of events was dropped, a segment was entered); the layers
above register theirs in their AppConfig.ready(). Hooks are named, so registering
again replaces, and tests can remove one (register None).
"""

from __future__ import annotations

from typing import Generic, TypeVar

H = TypeVar("H")


class Hooks(Generic[H]):
    """A registry of named hooks of one signature."""

    def __init__(self) -> None:
        self._hooks: dict[str, H] = {}

    def register(self, name: str, hook: H | None) -> None:
        """Register (or with None remove) the hook called `name`."""
        if hook is None:
            self._hooks.pop(name, None)
        else:
            self._hooks[name] = hook

    def all(self) -> list[tuple[str, H]]:
        """(name, hook) in name order; a copy, so a hook may register or remove one."""
        return sorted(self._hooks.items(), key=lambda item: item[0])
