"""Customer-change hooks: how the layers above learn that customers changed.

customers never imports the layers above it. Automation registers a hook
(AutomationConfig.ready()) that keeps segment memberships exact; every write of a
customer's fields calls `customers_changed` inside its transaction (the hook defers
its own work until commit).
"""

from __future__ import annotations

from collections.abc import Callable

from project.hooks import Hooks

# (customer_ids, the fields changed; None: new customers, every field).
CustomerChangeHook = Callable[[list[str], list[str] | None], None]

_hooks: Hooks[CustomerChangeHook] = Hooks()
customer_change_hook_register = _hooks.register


def customers_changed(*, customer_ids: list[str], fields: list[str] | None) -> None:
    """Tell every registered hook; call it inside the transaction that wrote them."""
    for _name, hook in _hooks.all():
        hook(customer_ids, fields)
