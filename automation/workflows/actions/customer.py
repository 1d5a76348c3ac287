"""Actions that change the run's customer: update_customer, add_tags, remove_tags."""

from __future__ import annotations

from typing import Any

from automation.workflows.actions.base import Action, ActionContext, ActionResult
from customers.hooks import customers_changed
from customers.models import Customer

MAX_TAGS = 100
MAX_TAG_LENGTH = 100


def _locked_customer(ctx: ActionContext) -> Customer:
    # Row lock: concurrent runs updating the same customer apply one after the
    # other instead of overwriting each other's attributes or tags.
    customer = Customer.objects.select_for_update().get(pk=ctx.run.customer_id)
    ctx.customer = customer
    return customer


class UpdateCustomer(Action):
    """Merge `attributes` into the customer's attributes; a null value removes the key."""

    type = "update_customer"
    fields = frozenset({"attributes"})
    required = frozenset({"attributes"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        attributes = spec["attributes"]
        if not isinstance(attributes, dict) or not attributes:
            errors.setdefault("attributes", []).append("Must be a non-empty object.")

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        customer = _locked_customer(ctx)
        attributes = dict(customer.attributes) if isinstance(customer.attributes, dict) else {}
        for key, value in spec["attributes"].items():
            if value is None:
                attributes.pop(key, None)
            else:
                attributes[key] = value
        customer.attributes = attributes
        customer.save(update_fields=["attributes", "updated_at"])
        customers_changed(customer_ids=[customer.pk], fields=["attributes"])
        return ActionResult({"attributes": sorted(spec["attributes"])})


class _Tags(Action):
    fields = frozenset({"tags"})
    required = frozenset({"tags"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        tags = spec["tags"]
        if (
            not isinstance(tags, list)
            or not tags
            or len(tags) > MAX_TAGS
            or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_LENGTH for t in tags)
        ):
            errors.setdefault("tags", []).append(
                f"Must be a list of 1-{MAX_TAGS} non-empty strings of at most "
                f"{MAX_TAG_LENGTH} characters."
            )

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        raise NotImplementedError

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        customer = _locked_customer(ctx)
        current = customer.tags if isinstance(customer.tags, list) else []
        updated = self.new_tags(current, spec["tags"])
        if updated != current:
            customer.tags = updated
            customer.save(update_fields=["tags", "updated_at"])
            customers_changed(customer_ids=[customer.pk], fields=["tags"])
        return ActionResult({"tags": updated})


class AddTags(_Tags):
    """Add tags the customer does not have yet, in order."""

    type = "add_tags"

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        return [*current, *(t for t in dict.fromkeys(tags) if t not in current)]


class RemoveTags(_Tags):
    """Remove the given tags from the customer."""

    type = "remove_tags"

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        return [t for t in current if t not in set(tags)]
