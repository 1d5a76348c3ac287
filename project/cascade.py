"""Set-based cascading deletes: Django's on_delete rules without loading the rows.

`Model.delete()` hands the rows to Django's Collector, which fetches every row a
CASCADE reaches that has dependents of its own (every event of a customer, every
delivery of those events, …) to delete them in batches of primary keys: time,
queries and memory grow with the number of rows. Here the relations are read
from `_meta` once per model — the same candidate relations the Collector
follows, so a relation added later is covered without touching this code — and
each table reached is handled by one statement whose WHERE is a chain of
subqueries back to the root rows:

    DELETE FROM automation_deliveryattempt WHERE delivery_id IN (
        SELECT id FROM automation_delivery WHERE event_id IN (
            SELECT id FROM events_app_event WHERE customer_id IN (<root keys>)))

The statements run dependents first (a row goes only after everything that
refers to it), in one transaction, so the number of queries depends on the model
graph, never on the rows. on_delete is honoured as the Collector honours it:

- CASCADE: the rows are deleted, after their own dependents.
- SET_NULL, SET_DEFAULT, SET(value): one UPDATE of the referring column.
- PROTECT: ProtectedError if any row refers to a deleted one; nothing is deleted.
- RESTRICT: RestrictedError unless every referring row is deleted by a cascade too.
- DO_NOTHING: left to the database, as Django leaves it.

What the Collector can do and a set-based delete cannot — send pre/post_delete
signals (they need instances), follow generic relations or multi-table
inheritance, or follow a cascade that loops back to a model already on its path —
raises CascadeNotSupported instead of silently leaving rows behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, transaction
from django.db.models import ForeignObjectRel, Model, QuerySet, signals
from django.db.models.deletion import (
    ProtectedError,
    RestrictedError,
    get_candidate_relations_to_delete,
)
from django.utils.text import capfirst

from project.errors import ConflictError

__all__ = [
    "CascadeNotSupported",
    "cascade_blockers",
    "cascade_blocking",
    "cascade_delete",
    "cascade_delete_object",
    "cascade_lock",
    "cascade_rows",
]


# How many of the rows that refuse a delete its ProtectedError / RestrictedError carries.
BLOCKING_SAMPLE = 10


class CascadeNotSupported(ImproperlyConfigured):
    """The model graph needs something only Django's row-by-row Collector can do."""


@dataclass(frozen=True)
class Relation:
    """A foreign key into a model that is deleted, and what its on_delete asks for."""

    field: models.ForeignObject[Any, Any]
    # "cascade" | "set" | "protect" | "restrict"
    action: str
    # For "set": the value, or a callable giving it (SET(callable) is called per delete).
    value: Any = None
    # For "cascade": the relations into the referring model, handled before its rows go.
    dependents: tuple[Relation, ...] = ()

    @property
    def model(self) -> type[Model]:
        return self.field.model._meta.concrete_model  # type: ignore[return-value]

    def rows(self, parents: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of this relation's model that refer to `parents` (a subquery, not loaded)."""
        return self.model._base_manager.using(parents.db).filter(
            **{f"{self.field.name}__in": parents}
        )


def _set_value(on_delete: Any) -> tuple[bool, Any]:
    """(True, value) for SET(value), whose handler deconstructs to django.db.models.SET."""
    deconstruct = getattr(on_delete, "deconstruct", None)
    if deconstruct is None:
        return False, None
    path, args, _ = deconstruct()
    return path == "django.db.models.SET", args[0]


def _relation(field: models.ForeignObject[Any, Any], path: tuple[type[Model], ...]) -> Relation:
    on_delete = field.remote_field.on_delete
    name = f"{field.model._meta.label}.{field.name}"
    if on_delete is models.CASCADE:
        model = field.model._meta.concrete_model
        assert model is not None
        if model in path:
            raise CascadeNotSupported(
                f"{name} cascades back to {model._meta.label}, already on the path "
                f"{' -> '.join(m._meta.label for m in path)}."
            )
        return Relation(field, "cascade", dependents=_relations(model, (*path, model)))
    if on_delete is models.SET_NULL:
        return Relation(field, "set", None)
    if on_delete is models.SET_DEFAULT:
        return Relation(field, "set", field.get_default)
    if on_delete is models.PROTECT:
        return Relation(field, "protect")
    if on_delete is models.RESTRICT:
        return Relation(field, "restrict")
    is_set, value = _set_value(on_delete)
    if is_set:
        return Relation(field, "set", value)
    raise CascadeNotSupported(f"{name} has an on_delete handler this delete does not know.")


def _relations(model: type[Model], path: tuple[type[Model], ...]) -> tuple[Relation, ...]:
    opts = model._meta
    if opts.parents:
        raise CascadeNotSupported(f"{opts.label} uses multi-table inheritance.")
    if any(hasattr(field, "bulk_related_objects") for field in opts.private_fields):
        raise CascadeNotSupported(f"{opts.label} has a generic relation.")
    # The reverse side of every ForeignKey / OneToOneField into the model
    # (django-stubs types them as fields).
    candidates = cast("Iterable[ForeignObjectRel]", get_candidate_relations_to_delete(opts))
    return tuple(
        _relation(related.field, path)
        for related in candidates
        if related.field.remote_field.on_delete is not models.DO_NOTHING
    )


@cache
def cascade_plan(model: type[Model]) -> tuple[Relation, ...]:
    """The relations into `model`, each with its own dependents (read from _meta once)."""
    return _relations(model, (model,))


def _walk(
    relations: tuple[Relation, ...],
    parents: QuerySet[Any],
    *,
    dependents_first: bool = True,
    gone: Collection[type[Model]] = (),
) -> Iterator[tuple[Relation, QuerySet[Any]]]:
    """Every relation reachable from `parents` with the rows it touches.

    dependents_first: a relation comes after the relations into its model
    (the order rows must be deleted in); otherwise before (the order a reader
    expects: events, then what hangs off them). `gone`: models not reached (see
    cascade_delete).
    """
    for relation in relations:
        if relation.model in gone:
            continue
        rows = relation.rows(parents)
        if not dependents_first:
            yield relation, rows
        if relation.action == "cascade":
            yield from _walk(
                relation.dependents, rows, dependents_first=dependents_first, gone=gone
            )
        if dependents_first:
            yield relation, rows


@dataclass(frozen=True)
class Root:
    """The rows a cascade starts from, pinned by their keys, and the relations into them."""

    keys: list[Any]
    rows: QuerySet[Any]
    relations: tuple[Relation, ...]


def _root(queryset: QuerySet[Any]) -> Root:
    if queryset.query.is_sliced:
        raise TypeError("Cannot cascade-delete a sliced queryset.")
    model = queryset.model._meta.concrete_model
    assert model is not None
    # The root's keys are read once (only they are held in memory), so every
    # statement below works on the same rows even if the queryset's filter
    # depends on rows that an earlier statement deletes.
    keys = list(queryset.order_by().values_list("pk", flat=True))
    rows = model._base_manager.using(queryset.db).filter(pk__in=keys)
    return Root(keys, rows, cascade_plan(model))


Paths = dict[type[Model], list[QuerySet[Any]]]


def _deleted(root: Root) -> Paths:
    """Per model, the querysets (one per path) whose union the cascade deletes."""
    deleted: Paths = {root.rows.model: [root.rows]}
    for relation, rows in _walk(root.relations, root.rows, dependents_first=False):
        if relation.action == "cascade":
            deleted.setdefault(relation.model, []).append(rows)
    return deleted


def _union(querysets: list[QuerySet[Any]]) -> QuerySet[Any]:
    if len(querysets) == 1:
        return querysets[0]
    first, *rest = (qs.values("pk") for qs in querysets)
    return first.union(*rest)


def cascade_rows(queryset: QuerySet[Any]) -> dict[type[Model], QuerySet[Any]]:
    """What cascade_delete(queryset) would delete: per model, a queryset of those rows.

    For confirmation pages: count them (capped) instead of listing them. A model
    reached on several paths gets the UNION of them, so no row counts twice.
    """
    return {model: _union(sets) for model, sets in _deleted(_root(queryset)).items()}


def _blockers(
    root: Root, gone: Collection[type[Model]] = ()
) -> Iterator[tuple[Relation, QuerySet[Any]]]:
    """PROTECT and RESTRICT relations with the referring rows that forbid the delete."""
    deleted: Paths | None = None
    for relation, rows in _walk(root.relations, root.rows, gone=gone):
        if relation.action == "protect" and rows.exists():
            yield relation, rows
        elif relation.action == "restrict":
            # Django allows a RESTRICT reference when the referring row is itself
            # deleted by a cascade of the same delete.
            if deleted is None:
                deleted = _deleted(root)
            for path in deleted.get(relation.model, []):
                rows = rows.exclude(pk__in=path.values("pk"))
            if rows.exists():
                yield relation, rows


def _blocked_message(relation: Relation) -> str:
    return (
        f"Cannot delete some {relation.field.related_model._meta.verbose_name_plural}: "
        f"{relation.model._meta.verbose_name_plural} refer to them through the "
        f"{'protected' if relation.action == 'protect' else 'restricted'} foreign key "
        f"'{relation.model.__name__}.{relation.field.name}'."
    )


def cascade_blocking(queryset: QuerySet[Any]) -> list[tuple[str, QuerySet[Any]]]:
    """Why cascade_delete(queryset) would be refused (PROTECT / RESTRICT): per relation
    that refuses, the reason and the referring rows (a queryset, to count, not to list)."""
    return [(_blocked_message(relation), rows) for relation, rows in _blockers(_root(queryset))]


def cascade_blockers(queryset: QuerySet[Any]) -> list[str]:
    """Why cascade_delete(queryset) would be refused (PROTECT / RESTRICT), one line each."""
    return [message for message, _ in cascade_blocking(queryset)]


def _refuse_signal_receivers(root: Root) -> None:
    for model in _deleted(root):
        if signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model):
            raise CascadeNotSupported(
                f"{model._meta.label} has pre/post_delete receivers; a set-based delete "
                f"of {root.rows.model._meta.label} would not send them."
            )


def cascade_delete(
    queryset: QuerySet[Any], *, gone: Collection[type[Model]] = ()
) -> tuple[int, dict[str, int]]:
    """Delete the queryset's rows and everything their on_delete rules reach, set-based.

    Returns what QuerySet.delete() returns: the number of rows deleted and the
    number per model label (labels with none left out). Raises ProtectedError /
    RestrictedError, having deleted nothing, when a PROTECT / RESTRICT
    reference forbids the delete.

    `gone`: models whose rows this delete reaches the caller has deleted already, in
    this transaction, with whatever refers to them; they and their dependents are
    not reached again. A statement through such rows would find none, yet still read
    every index entry of them that the earlier delete left behind.
    """
    deleted: Counter[str] = Counter()
    with transaction.atomic(using=queryset.db):
        root = _root(queryset)
        _refuse_signal_receivers(root)
        if not root.keys:
            return 0, {}
        # PROTECT is reported before RESTRICT, as the Collector does.
        blockers = sorted(_blockers(root, gone), key=lambda blocker: blocker[0].action != "protect")
        if blockers:
            relation, rows = blockers[0]
            error = ProtectedError if relation.action == "protect" else RestrictedError
            # Django's errors carry the referring rows; a sample keeps memory bounded.
            raise error(_blocked_message(relation), set(rows[:BLOCKING_SAMPLE]))
        for relation, rows in _walk(root.relations, root.rows, gone=gone):
            if relation.action == "cascade":
                deleted[relation.model._meta.label] += rows._raw_delete(rows.db)
            elif relation.action == "set":
                value = relation.value() if callable(relation.value) else relation.value
                rows.update(**{relation.field.name: value})
        deleted[root.rows.model._meta.label] += root.rows._raw_delete(root.rows.db)
    counts = {label: n for label, n in deleted.items() if n}
    return sum(counts.values()), counts


def _lock(rows: QuerySet[Any]) -> None:
    """FOR UPDATE on the rows in primary-key order, counted server-side (none loaded)."""
    sql, params = rows.order_by("pk").values("pk").select_for_update().query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql}) AS locked", params)  # noqa: S608


def cascade_lock(queryset: QuerySet[Any]) -> None:
    """Lock the rows a cascade_delete(queryset) starts from, then the rows that cascade
    from them directly, each table in primary-key order, in the caller's transaction.

    The delete's own statements lock dependents first (children before parents). A
    worker that updates one child row and then a row the delete touches before it
    (a delivery, then its event) would deadlock with it; called first, this takes
    the parents and their children in the order such workers take them, so they
    wait for one another instead. No-op where the database has no row locks (SQLite
    locks the whole database).
    """
    if not connections[queryset.db].features.has_select_for_update:
        return
    _lock(queryset)
    for relation in cascade_plan(queryset.model._meta.concrete_model):  # type: ignore[arg-type]
        if relation.action == "cascade":
            _lock(relation.rows(queryset))


def cascade_delete_object(obj: Model, *, gone: Collection[type[Model]] = ()) -> dict[str, int]:
    """A service's delete of one object: cascade_delete, rows deleted per model label.

    A PROTECT / RESTRICT reference that refuses it is a ConflictError (the API's
    409) saying which, with nothing deleted.
    """
    model = type(obj)
    try:
        return cascade_delete(model._base_manager.filter(pk=obj.pk), gone=gone)[1]
    except (ProtectedError, RestrictedError) as error:
        raise ConflictError(
            f"{capfirst(str(model._meta.verbose_name))} '{obj.pk}' cannot be deleted. "
            f"{error.args[0]}"
        ) from None
