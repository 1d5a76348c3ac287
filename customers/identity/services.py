"""Writes for identity: merge two customers, undo a merge, identify an anonymous customer.

The merge protocol (customer_merge), in one transaction:

1. Lock both customer rows (`FOR UPDATE`, in id order). Ingestion's foreign-key check
   of an event naming either customer takes `FOR KEY SHARE` on its row at commit, so an
   event that committed first is moved by step 3, and one committing after waits for
   the merge: naming the secondary, its check then fails and ingestion lands it on the
   primary (events_app.ingest_store re-resolves a vanished customer through the merge
   records, customers.identity.selectors.customers_moved_to).
2. Decide the primary's fields: attributes (the primary's values win, its blank ones
   are filled), tags (the union), a blank email filled.
3. Move every row naming the secondary (customers.identity.moves: one UPDATE per
   table), recording their keys.
4. Delete the secondary; its external and anonymous ids become aliases of the primary.
5. Mark the primary's segments for re-evaluation (customers.hooks) and tell the merged
   hooks (automation: the `customer.merged` event, workflows that take moved events).

A dry run runs the same steps, asks the preview hooks which segments the merged
customer would enter and exit, and rolls everything back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from customers.hooks import customers_changed
from customers.identity import moves
from customers.identity.hooks import merge_made, merge_preview_start, merge_undone
from customers.identity.models import CustomerMerge, MergedRow
from customers.models import Customer, CustomerAlias
from project.errors import ConflictError, NotFoundError, ValidationFailed

_ABSENT = object()
_MERGE_ATTEMPTS = 3
# deadlock_detected, serialization_failure
_RETRIED_SQLSTATES = ("40P01", "40001")
# Identify retries once when a concurrent identify of the same ids created first.
_IDENTIFY_ATTEMPTS = 3


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class MergePlan:
    """Step 2: the primary's fields after the merge, and what changed or conflicted."""

    attributes: dict[str, Any]
    tags: list[str]
    email: str
    overwritten: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags_added: list[str] = field(default_factory=list)
    fields_changed: dict[str, list[Any]] = field(default_factory=dict)
    aliases: list[dict[str, str]] = field(default_factory=list)


def merge_plan(primary: Customer, secondary: Customer) -> MergePlan:
    """The primary wins every attribute it has a non-blank value for; blank or missing
    ones take the secondary's. Tags are the union, the primary's first."""
    attributes = dict(primary.attributes)
    plan = MergePlan(attributes, list(primary.tags), primary.email)
    for key, value in secondary.attributes.items():
        mine = attributes.get(key, _ABSENT)
        if mine is _ABSENT or (_blank(mine) and not _blank(value)):
            change: dict[str, Any] = {"after": value}
            if mine is not _ABSENT:
                change["before"] = mine
            plan.overwritten[key] = change
            attributes[key] = value
        elif mine != value and not _blank(value):
            plan.conflicts[key] = {"primary": mine, "secondary": value}
    plan.tags_added = [tag for tag in secondary.tags if tag not in plan.tags]
    plan.tags += plan.tags_added
    if not primary.email and secondary.email:
        plan.email = secondary.email
        plan.fields_changed["email"] = [primary.email, secondary.email]
    if secondary.external_id is not None:
        plan.aliases.append({"kind": CustomerAlias.Kind.EXTERNAL, "value": secondary.external_id})
    if secondary.anonymous_id is not None:
        plan.aliases.append({"kind": CustomerAlias.Kind.ANONYMOUS, "value": secondary.anonymous_id})
    return plan


def _lock(customer_ids: list[str]) -> dict[str, Customer]:
    """Step 1: both rows, FOR UPDATE in id order; an unknown id is a 404."""
    found = {
        c.pk: c
        for c in Customer.objects.select_for_update().filter(pk__in=customer_ids).order_by("pk")
    }
    for customer_id in customer_ids:
        if customer_id not in found:
            raise NotFoundError(f"Customer '{customer_id}' not found.")
    return found


class _DryRun(Exception):
    """Rolls a dry run's transaction back, carrying what it found."""

    def __init__(self, preview: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.preview = preview


def customer_merge(
    *,
    primary_id: str,
    secondary_id: str,
    force: bool = False,
    dry_run: bool = False,
    source: str = "merge",
) -> CustomerMerge | dict[str, Any]:
    """Merge the secondary customer into the primary (the module's protocol); returns the
    merge record, or with `dry_run` what would happen (nothing is changed).

    400 when both are one customer, 404 for an unknown one, 409 when both are identified
    (different external ids) and `force` is not given.
    """
    if primary_id == secondary_id:
        raise ValidationFailed(
            "primary and secondary are the same customer.",
            details={"secondary": ["Must differ from primary."]},
        )
    # Outside a caller's transaction a deadlock is retried: the claimer of due events
    # locks events and then (its runs' foreign keys) their customer, the merge the other
    # way round; PostgreSQL aborts one of the two, and both may simply go again.
    attempts = 1 if connection.in_atomic_block else _MERGE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return _merge(primary_id, secondary_id, force=force, source=source, dry_run=dry_run)
        except _DryRun as done:
            return done.preview
        except OperationalError as error:
            if attempt == attempts or _sqlstate(error) not in _RETRIED_SQLSTATES:
                raise
    raise AssertionError("unreachable")


def _sqlstate(error: Exception) -> str:
    return getattr(error.__cause__, "sqlstate", None) or ""


def _merge(
    primary_id: str, secondary_id: str, *, force: bool, source: str, dry_run: bool
) -> CustomerMerge:
    locked = _lock([primary_id, secondary_id])
    primary, secondary = locked[primary_id], locked[secondary_id]
    if primary.external_id is not None and secondary.external_id is not None and not force:
        raise ConflictError(
            f"Both customers are identified (external ids '{primary.external_id}' and "
            f"'{secondary.external_id}'); give \"force\": true to merge them.",
            extra={
                "primary_external_id": primary.external_id,
                "secondary_external_id": secondary.external_id,
            },
        )
    plan = merge_plan(primary, secondary)
    preview = merge_preview_start(primary.pk, secondary.pk) if dry_run else None
    now = timezone.now()
    merge = CustomerMerge.objects.create(
        primary_id=primary.pk,
        secondary_id=secondary.pk,
        primary_external_id=primary.external_id,
        secondary_external_id=secondary.external_id,
        forced=force,
        source=source,
        attributes_overwritten=plan.overwritten,
        attribute_conflicts=plan.conflicts,
        tags_added=plan.tags_added,
        fields_changed=plan.fields_changed,
        aliases_added=plan.aliases,
        primary_updated_before=primary.updated_at,
        primary_updated_after=now,
        secondary_row=moves.customer_row_serialize(secondary.pk),
    )
    moved = moves.rows_move(merge=merge, primary_id=primary.pk, secondary_id=secondary.pk)
    Customer.objects.filter(pk=secondary.pk)._raw_delete(Customer.objects.db)
    Customer.objects.filter(pk=primary.pk).update(
        attributes=plan.attributes, tags=plan.tags, email=plan.email, updated_at=now
    )
    try:
        with transaction.atomic():
            CustomerAlias.objects.bulk_create(
                [
                    CustomerAlias(customer_id=primary.pk, merge_id=merge.pk, **a)
                    for a in plan.aliases
                ]
            )
    except IntegrityError:
        raise ConflictError(
            "An id of the secondary customer is already an alias of another customer.",
            extra={"aliases": plan.aliases},
        ) from None
    merge.moved = moved.counts
    merge.superseded_counts = moved.superseded_counts
    merge.superseded_rows = moved.superseded_rows
    merge.save(update_fields=["moved", "superseded_counts", "superseded_rows"])
    if preview is not None:
        raise _DryRun(_preview(merge, primary, secondary, preview()))
    customers_changed(customer_ids=[primary.pk], fields=None)
    merge_made(merge)
    return merge


def _preview(
    merge: CustomerMerge, primary: Customer, secondary: Customer, segments: dict[str, Any]
) -> dict[str, Any]:
    return {
        "dry_run": True,
        "primary": primary.pk,
        "secondary": secondary.pk,
        "moved": merge.moved,
        "superseded": merge.superseded_counts,
        "attribute_conflicts": merge.attribute_conflicts,
        "attributes_overwritten": merge.attributes_overwritten,
        "tags_added": merge.tags_added,
        "aliases_added": merge.aliases_added,
        "segments": {"entered": [], "exited": [], **segments},
    }


# ---------------------------------------------------------------- undo


def merge_undo(*, merge_id: str) -> CustomerMerge:
    """Put back everything the merge changed: the secondary with its rows (events
    included), the primary's fields, the aliases. 404 for an unknown merge; 409 when it
    was undone already, is older than HERALD_MERGE_UNDO_DAYS, a later merge involves
    either customer, or the primary was deleted since."""
    with transaction.atomic():
        merge = _undoable(merge_id)
        primary = Customer.objects.select_for_update().filter(pk=merge.primary_id).first()
        if primary is None:
            raise ConflictError(
                f"Merge '{merge.pk}' cannot be undone: customer '{merge.primary_id}' was "
                "deleted since."
            )
        try:
            with transaction.atomic():
                moves.rows_restore([merge.secondary_row])
        except IntegrityError:
            raise ConflictError(
                f"Merge '{merge.pk}' cannot be undone: another customer took the secondary's "
                "external or anonymous id since.",
                extra={"secondary_external_id": merge.secondary_external_id},
            ) from None
        CustomerAlias.objects.filter(customer_id=primary.pk, merge_id=merge.pk).delete()
        list(moves.rows_move_back(merge=merge))
        _primary_restore(merge, primary)
        merge.status, merge.undone_at = CustomerMerge.Status.UNDONE, timezone.now()
        merge.save(update_fields=["status", "undone_at"])
        MergedRow.objects.filter(merge=merge)._raw_delete(MergedRow.objects.db)
        customers_changed(customer_ids=[merge.primary_id, merge.secondary_id], fields=None)
        merge_undone(merge)
    return merge


def _undoable(merge_id: str) -> CustomerMerge:
    merge = CustomerMerge.objects.select_for_update().filter(pk=merge_id).first()
    if merge is None:
        raise NotFoundError(f"Merge '{merge_id}' not found.")
    if merge.status == CustomerMerge.Status.UNDONE:
        raise ConflictError(f"Merge '{merge.pk}' was undone already.")
    if timezone.now() > merge.undo_until():
        raise ConflictError(
            f"Merge '{merge.pk}' is older than the undo window "
            f"(HERALD_MERGE_UNDO_DAYS = {merge.undo_window().days} days) and cannot be undone.",
            extra={"undo_until": merge.undo_until().isoformat()},
        )
    involved = [merge.primary_id, merge.secondary_id]
    later = list(
        CustomerMerge.objects.filter(
            Q(primary_id__in=involved) | Q(secondary_id__in=involved),
            status=CustomerMerge.Status.MERGED,
            created_at__gte=merge.created_at,
        )
        .exclude(pk=merge.pk)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    if later:
        raise ConflictError(
            f"Merge '{merge.pk}' cannot be undone: a later merge involves the same customers; "
            "undo it first.",
            extra={"later_merge_ids": later},
        )
    return merge


def _primary_restore(merge: CustomerMerge, primary: Customer) -> None:
    """The primary's fields as before the merge, except where they changed since: an
    attribute or tag the merge set and something changed afterwards is kept."""
    attributes = dict(primary.attributes)
    for key, change in merge.attributes_overwritten.items():
        if attributes.get(key, _ABSENT) != change["after"]:
            continue
        if "before" in change:
            attributes[key] = change["before"]
        else:
            del attributes[key]
    tags = [tag for tag in primary.tags if tag not in merge.tags_added]
    email = primary.email
    if "email" in merge.fields_changed and email == merge.fields_changed["email"][1]:
        email = merge.fields_changed["email"][0]
    unchanged_since = primary.updated_at == merge.primary_updated_after
    updated_at = merge.primary_updated_before if unchanged_since else timezone.now()
    Customer.objects.filter(pk=primary.pk).update(
        attributes=attributes, tags=tags, email=email, updated_at=updated_at
    )


def merges_prune(now: Any = None) -> int:
    """Periodic: delete merge records past the undo window (with their moved keys)."""
    now = now or timezone.now()
    cutoff = now - CustomerMerge.undo_window()
    expired = CustomerMerge.objects.filter(created_at__lt=cutoff).values("pk")
    MergedRow.objects.filter(merge__in=expired)._raw_delete(MergedRow.objects.db)
    deleted, _ = CustomerMerge.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# ---------------------------------------------------------------- identify


def _by_identifier(kind: str, value: str) -> Customer | None:
    column = "external_id" if kind == CustomerAlias.Kind.EXTERNAL else "anonymous_id"
    found = Customer.objects.select_for_update().filter(**{column: value}).first()
    if found is not None:
        return found
    alias = CustomerAlias.objects.filter(kind=kind, value=value).values_list("customer_id")
    return Customer.objects.select_for_update().filter(pk__in=alias).first()


@dataclass
class Identified:
    customer: Customer
    merge: CustomerMerge | None


def customer_identify(
    *, anonymous_id: str, external_id: str, attributes: dict[str, Any] | None = None
) -> Identified:
    """Tie an anonymous id to an external id (POST /customers/identify).

    No customer has the external id: the anonymous customer becomes it (created when no
    customer has the anonymous id either). One does: the anonymous customer is merged
    into it. A customer the anonymous id names that is identified as someone else is a
    409. `attributes` are merged into the result key by key. Idempotent: the same call
    again finds both ids on one customer and changes nothing.
    """
    for attempt in range(1, _IDENTIFY_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _identify(anonymous_id, external_id, attributes or {})
        except IntegrityError:
            # A concurrent identify or ingest created one of the ids first: look again.
            if attempt == _IDENTIFY_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _identify(anonymous_id: str, external_id: str, attributes: dict[str, Any]) -> Identified:
    anonymous = _by_identifier(CustomerAlias.Kind.ANONYMOUS, anonymous_id)
    known = _by_identifier(CustomerAlias.Kind.EXTERNAL, external_id)
    merge: CustomerMerge | None = None
    if anonymous is None and known is None:
        customer = Customer.objects.create(external_id=external_id, anonymous_id=anonymous_id)
        customers_changed(customer_ids=[customer.pk], fields=None)
    elif anonymous is None:
        assert known is not None
        customer = known
        if customer.anonymous_id is None:
            customer.anonymous_id = anonymous_id
            customer.save(update_fields=["anonymous_id", "updated_at"])
        else:
            CustomerAlias.objects.create(
                customer=customer, kind=CustomerAlias.Kind.ANONYMOUS, value=anonymous_id
            )
    elif known is None or known.pk == anonymous.pk:
        customer = anonymous
        if customer.external_id is None:
            customer.external_id = external_id
            customer.save(update_fields=["external_id", "updated_at"])
            customers_changed(customer_ids=[customer.pk], fields=["external_id"])
        elif known is None:
            raise _identified_elsewhere(anonymous_id, customer)
    elif anonymous.external_id is not None:
        raise _identified_elsewhere(anonymous_id, anonymous)
    else:
        result = customer_merge(primary_id=known.pk, secondary_id=anonymous.pk, source="identify")
        assert isinstance(result, CustomerMerge)
        merge, customer = result, Customer.objects.get(pk=known.pk)
    _attributes_merge(customer, attributes)
    return Identified(customer, merge)


def _identified_elsewhere(anonymous_id: str, customer: Customer) -> ConflictError:
    return ConflictError(
        f"Anonymous id '{anonymous_id}' belongs to a customer identified as "
        f"'{customer.external_id}'.",
        extra={"customer_id": customer.pk, "external_id": customer.external_id},
    )


def _attributes_merge(customer: Customer, attributes: dict[str, Any]) -> None:
    """Set the given attributes (others kept); nothing is written when none changes."""
    merged = {**customer.attributes, **attributes}
    if merged == customer.attributes:
        return
    customer.attributes = merged
    customer.save(update_fields=["attributes", "updated_at"])
    customers_changed(customer_ids=[customer.pk], fields=["attributes"])
