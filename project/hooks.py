"""Named hooks: how a lower layer calls into the layers above it without importing them.

The lower layer owns a `Hooks` and calls its hooks where the thing happens (a
customer changed, a month of events was dropped, a segment was entered); the layers
above register theirs in their AppConfig.ready(). Hooks are named, so registering
again replaces, and tests can remove one (register None). They run by `order`, then
name: a hook that must follow the others says so with a higher order, not by its name.
"""

from __future__ import annotations

from typing import Generic, TypeVar

H = TypeVar("H")


class Hooks(Generic[H]):
    """A registry of named hooks of one signature."""

    def __init__(self) -> None:
        self._hooks: dict[str, tuple[int, H]] = {}

    def register(self, name: str, hook: H | None, *, order: int = 0) -> None:
        """Register (or with None remove) the hook called `name`, run after the hooks
        of a lower `order`."""
        if hook is None:
            self._hooks.pop(name, None)
        else:
            self._hooks[name] = (order, hook)

    def all(self) -> list[tuple[str, H]]:
        """(name, hook) by order, then name; a copy, so a hook may register or remove
        one."""
        ranked = sorted(self._hooks.items(), key=lambda item: (item[1][0], item[0]))
        return [(name, hook) for name, (_order, hook) in ranked]
