"""Writes for customers."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from customers.hooks import (
    customer_deleted,
    customers_changed,
    customers_erase,
    erased_models,
)
from customers.models import Customer
from project.audit.services import audit_forget, audit_record, audit_snapshot
from project.cascade import cascade_delete_object
from project.errors import ConflictError

AUDIT_TYPE = "customer"


def customer_create(
    *,
    external_id: str,
    email: str = "",
    attributes: dict[str, Any] | None = None,
    tags: list[str] | None = None,
) -> Customer:
    """Create a customer; an external id that exists already is a 409 naming the customer."""
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                external_id=external_id,
                email=email,
                attributes=attributes or {},
                tags=tags_normalize(tags or []),
            )
            audit_record(
                action="created",
                obj_type=AUDIT_TYPE,
                obj_id=customer.pk,
                after=audit_snapshot(customer),
            )
            customers_changed(customer_ids=[customer.pk], fields=None)
            return customer
    except IntegrityError:
        existing = Customer.objects.filter(external_id=external_id).values_list("id", flat=True)
        raise ConflictError(
            "A customer with this external_id already exists.",
            extra={"customer_id": existing.first()},
        ) from None


def tags_normalize(tags: list[str]) -> list[str]:
    """Tags are a set: repeats dropped, first-seen order kept (what the client sent)."""
    return list(dict.fromkeys(tags))


def customer_update(*, customer: Customer, fields: dict[str, Any]) -> Customer:
    """Update the given fields (external_id, email, attributes, tags) of a customer.

    `attributes` and `tags` are replaced as a whole, not merged: what the client
    sends is what is stored, so a removal is expressible.
    """
    if "tags" in fields:
        fields = {**fields, "tags": tags_normalize(fields["tags"])}
    before = audit_snapshot(customer)
    for name, value in fields.items():
        setattr(customer, name, value)
    try:
        with transaction.atomic():
            customer.save(update_fields=[*fields.keys(), "updated_at"])
            audit_record(
                action="updated",
                obj_type=AUDIT_TYPE,
                obj_id=customer.pk,
                before=before,
                after=audit_snapshot(customer),
            )
            customers_changed(customer_ids=[customer.pk], fields=sorted(fields))
    except IntegrityError:
        customer.refresh_from_db()
        existing = Customer.objects.filter(external_id=fields.get("external_id"))
        raise ConflictError(
            "A customer with this external_id already exists.",
            extra={"customer_id": existing.values_list("id", flat=True).first()},
        ) from None
    return customer


def customer_delete(*, customer: Customer, erase: bool = False) -> dict[str, int]:
    """Delete a customer and all that hangs off them; returns rows touched per label.

    Erasure is the point (a customer asking to be forgotten), so their events
    go too rather than blocking the delete, and with the events their property
    records and workflow runs — whatever the relations' on_delete says, read
    from the models. Before that, every registered erase hook (customers.hooks)
    handles what the cascade would not reach, what stays as a count (delivery
    rows, their payloads redacted) or what a statement of its own deletes faster
    (the events and their property records, a month at a time): the cascade leaves
    out what a hook deleted outright. After it, the deleted hooks tell the outside
    world (the `customer.deleted` webhook), in this transaction.

    Set-based (project.cascade and the hooks): one statement per table in one
    transaction, so a customer with a million events takes the same number of
    queries and the same memory as one with none. The per-type event counters
    follow through the event table's statement-level triggers.

    `erase` (privacy requests): the audit trail keeps no snapshot of the customer,
    and the snapshots of their earlier changes are blanked, so nothing of the
    person is left in clear.
    """
    with transaction.atomic():
        if erase:
            audit_forget(obj_type=AUDIT_TYPE, obj_id=customer.pk)
        audit_record(
            action="deleted",
            obj_type=AUDIT_TYPE,
            obj_id=customer.pk,
            before=None if erase else audit_snapshot(customer),
        )
        counts = customers_erase(customer_ids=[customer.pk])
        gone = erased_models(counts)
        for label, n in cascade_delete_object(customer, gone=gone).items():
            counts[label] = counts.get(label, 0) + n
        customer_deleted(customer_id=customer.pk, external_id=customer.external_id)
        return counts
