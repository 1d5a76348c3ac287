"""Customer-change hooks: how the layers above learn that customers changed.

customers never imports the layers above it. Automation registers a hook
(AutomationConfig.ready()) that keeps segment memberships exact; every write of a
customer's fields calls `customers_changed` inside its transaction (the hook defers
its own work until commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.apps import apps
from django.db.models import Model, QuerySet

from project.hooks import Hooks

# (customer_ids, the fields changed; None: new customers, every field).
CustomerChangeHook = Callable[[list[str], list[str] | None], None]

_hooks: Hooks[CustomerChangeHook] = Hooks()
customer_change_hook_register = _hooks.register


def customers_changed(*, customer_ids: list[str], fields: list[str] | None) -> None:
    """Tell every registered hook; call it inside the transaction that wrote them."""
    for _name, hook in _hooks.all():
        hook(customer_ids, fields)


# ---------------------------------------------------------------- a customer's data
#
# Every layer that holds a person's data registers how to erase it and how to export
# it, so a privacy request (customers.privacy) reaches data customers cannot see: the
# events (events_app), runs, memberships and deliveries (automation), and whatever a
# later package adds (merge records). Registering under a name that exists replaces.

# (customer_ids) -> rows touched per label. Called by customer_delete inside its
# transaction, before the cascade deletes the customers' rows: for data the cascade
# would not reach, or that must outlive the customer redacted (delivery rows kept as
# counts, their payloads blanked), or that a statement of its own deletes faster. Must
# be set-based: one statement per table. A count under a model's label
# ("events_app.Event") says the hook deleted every row of that model the customers'
# cascade would reach, and what refers to them: the cascade does not reach them again.
CustomerEraseHook = Callable[[list[str]], dict[str, int]]
# (customer_id, external_id) -> None. Called by customer_delete inside its transaction,
# after the rows are gone: tell the outside world (the `customer.deleted` webhook).
CustomerDeletedHook = Callable[[str, "str | None"], None]
# (customer_id) -> a section of the export document, under the hook's name: a JSON array,
# given as an iterable of JSON-able items that the export encodes one at a time (a
# generator reading in chunks keeps an export of millions of rows in constant memory).
CustomerExportHook = Callable[[str], Iterable[object]]

# (customer_ids) -> {label: row sets} of the rows an erase hook keeps, redacted, where
# the cascade alone would delete them (delivery rows): what a delete confirmation page
# lists as kept rather than deleted. Building the sets must not read the rows.
CustomerKeptHook = Callable[[list[str]], dict[str, list["QuerySet[Any]"]]]

_erase_hooks: Hooks[CustomerEraseHook] = Hooks()
_kept_hooks: Hooks[CustomerKeptHook] = Hooks()
_deleted_hooks: Hooks[CustomerDeletedHook] = Hooks()
_export_hooks: Hooks[CustomerExportHook] = Hooks()
customer_erase_hook_register = _erase_hooks.register
customer_kept_hook_register = _kept_hooks.register
customer_deleted_hook_register = _deleted_hooks.register
customer_export_hook_register = _export_hooks.register


def customers_erase(*, customer_ids: list[str]) -> dict[str, int]:
    """Run every erase hook for these customers; rows touched per label, summed."""
    counts: dict[str, int] = {}
    for _name, hook in _erase_hooks.all():
        for label, n in hook(customer_ids).items():
            counts[label] = counts.get(label, 0) + n
    return counts


def erased_models(counts: dict[str, int]) -> set[type[Model]]:
    """The models whose rows the erase hooks deleted outright (counted under the
    model's label), for the cascade to leave out."""
    models: set[type[Model]] = set()
    for label in counts:
        try:
            models.add(apps.get_model(label))
        except (LookupError, ValueError):  # a count of another kind ("deliveries_redacted")
            continue
    return models


def customers_kept(*, customer_ids: list[str]) -> dict[str, list[QuerySet[Any]]]:
    """Every kept hook's row sets for these customers, by label."""
    kept: dict[str, list[QuerySet[Any]]] = {}
    for _name, hook in _kept_hooks.all():
        for label, sets in hook(customer_ids).items():
            kept.setdefault(label, []).extend(sets)
    return kept


def customer_deleted(*, customer_id: str, external_id: str | None) -> None:
    """Tell every hook that this customer was deleted (inside the deleting transaction)."""
    for _name, hook in _deleted_hooks.all():
        hook(customer_id, external_id)


def customer_export_sections(*, customer_id: str) -> dict[str, Iterable[object]]:
    """Each export hook's section of what Herald holds about one customer, by hook name
    (iterables: read as they are consumed)."""
    return {name: hook(customer_id) for name, hook in _export_hooks.all()}
