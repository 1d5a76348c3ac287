# ruff: noqa: DJ008 - throwaway models that are never printed
"""project.cascade against Django's own Collector: the same rows deleted, changed or refused.

Each case builds rows in a small model graph that uses every on_delete rule,
deletes the same root rows once with QuerySet.delete() and once with
cascade_delete() (each inside a savepoint that is rolled back), and compares
the outcome and every table afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.models import signals
from django.db.models.deletion import ProtectedError, RestrictedError
from django.test.utils import CaptureQueriesContext, isolate_apps

from project.cascade import (
    CascadeNotSupported,
    cascade_blockers,
    cascade_blocking,
    cascade_delete,
    cascade_delete_object,
    cascade_plan,
    cascade_rows,
)
from project.errors import ConflictError

pytestmark = pytest.mark.django_db

FALLBACK = 1000  # the Root that SET_DEFAULT and SET(...) point at


def fallback() -> int:
    return FALLBACK


class Model(models.Model):
    """The isolated models' base: they belong to no installed app."""

    class Meta:
        abstract = True
        app_label = "tests"


@pytest.fixture
def graph() -> Iterator[SimpleNamespace]:
    """Root <- Child <- … with one relation per on_delete rule; tables made for this test."""
    with isolate_apps("tests"):

        class Root(Model):
            pass

        class Child(Model):
            root = models.ForeignKey(Root, models.CASCADE)

        class Leaf(Model):
            # Reached on two paths, like a workflow run (by event and by customer).
            child = models.ForeignKey(Child, models.CASCADE)
            root = models.ForeignKey(Root, models.CASCADE)

        class Nulled(Model):
            root = models.ForeignKey(Root, models.SET_NULL, null=True)

        class Defaulted(Model):
            root = models.ForeignKey(Root, models.SET_DEFAULT, default=FALLBACK)

        class Reassigned(Model):
            root = models.ForeignKey(Root, models.SET(fallback))

        class Ignored(Model):
            root = models.ForeignKey(Root, models.DO_NOTHING, db_constraint=False)

        class Guarded(Model):
            child = models.ForeignKey(Child, models.PROTECT)

        class Restricted(Model):
            root = models.ForeignKey(Root, models.RESTRICT)
            child = models.ForeignKey(Child, models.CASCADE, null=True)

        all_models = [Root, Child, Leaf, Nulled, Defaulted, Reassigned, Ignored, Guarded]
        all_models.append(Restricted)
        with connection.schema_editor() as editor:
            for model in all_models:
                editor.create_model(model)
        Root.objects.create(pk=FALLBACK)
        yield SimpleNamespace(**{m.__name__: m for m in all_models}, models=all_models)


def tables(g: SimpleNamespace) -> dict[str, list[tuple[Any, ...]]]:
    return {
        m.__name__: sorted(m.objects.values_list(*[f.attname for f in m._meta.concrete_fields]))
        for m in g.models
    }


def outcome(g: SimpleNamespace, delete: Callable[[], tuple[int, dict[str, int]]]) -> Any:
    """What a delete did — its counts or its error — and every table after it; rolled back."""
    with transaction.atomic():
        try:
            total, counts = delete()
            result: Any = (total, {label: n for label, n in counts.items() if n})
        except (ProtectedError, RestrictedError) as error:
            result = type(error).__name__
        after = tables(g)
        transaction.set_rollback(True)
    return result, after


def both(g: SimpleNamespace, root_ids: list[int]) -> tuple[Any, Any]:
    roots = g.Root.objects.filter(pk__in=root_ids)
    return outcome(g, roots.delete), outcome(g, lambda: cascade_delete(roots))


def family(g: SimpleNamespace) -> SimpleNamespace:
    """Two roots with children, and rows of every kind pointing at both."""
    r1, r2 = g.Root.objects.create(pk=1), g.Root.objects.create(pk=2)
    c1, c2 = g.Child.objects.create(root=r1), g.Child.objects.create(root=r2)
    g.Leaf.objects.create(child=c1, root=r1)
    g.Leaf.objects.create(child=c2, root=r1)  # goes with r1 by its root
    g.Leaf.objects.create(child=c1, root=r2)  # goes with r1 by its child
    g.Leaf.objects.create(child=c2, root=r2)
    for root in (r1, r2):
        g.Nulled.objects.create(root=root)
        g.Defaulted.objects.create(root=root)
        g.Reassigned.objects.create(root=root)
        g.Ignored.objects.create(root=root)
    g.Guarded.objects.create(child=c2)
    return SimpleNamespace(r1=r1, r2=r2, c1=c1, c2=c2)


def test_cascades_and_set_rules_change_the_same_rows_as_djangos_collector(graph):
    family(graph)

    django, ours = both(graph, [1])

    assert ours == django
    result, after = ours
    assert result == (5, {"tests.Root": 1, "tests.Child": 1, "tests.Leaf": 3})
    assert after["Nulled"] == [(1, None), (2, 2)]
    assert after["Defaulted"] == after["Reassigned"] == [(1, FALLBACK), (2, 2)]
    assert after["Ignored"] == [(1, 1), (2, 2)]  # DO_NOTHING: left dangling, as Django leaves it


def test_a_protected_reference_refuses_the_delete_and_changes_nothing(graph):
    rows = family(graph)
    before = tables(graph)

    django, ours = both(graph, [rows.r2.pk])

    assert ours == django == ("ProtectedError", before)
    assert cascade_blockers(graph.Root.objects.filter(pk=2)) == [
        "Cannot delete some childs: guardeds refer to them through the protected "
        "foreign key 'Guarded.child'."
    ]


def test_the_rows_that_refuse_a_delete_are_given_to_count_not_loaded(graph):
    rows = family(graph)

    [(message, blocking)] = cascade_blocking(graph.Root.objects.filter(pk=2))

    assert message == cascade_blockers(graph.Root.objects.filter(pk=2))[0]
    assert blocking.query.is_sliced is False  # a queryset, evaluated only by the caller
    assert list(blocking.values_list("child_id", flat=True)) == [rows.c2.pk]


def test_a_services_delete_of_one_object_is_a_conflict_when_refused(graph):
    rows = family(graph)
    before = tables(graph)

    with pytest.raises(ConflictError) as refused:
        cascade_delete_object(rows.r2)

    assert refused.value.message == (
        "Root '2' cannot be deleted. Cannot delete some childs: guardeds refer to them "
        "through the protected foreign key 'Guarded.child'."
    )
    assert tables(graph) == before
    assert cascade_delete_object(rows.r1) == {"tests.Root": 1, "tests.Child": 1, "tests.Leaf": 3}


def test_many_to_many_links_go_with_either_side_as_in_django():
    with isolate_apps("tests"):

        class Tag(Model):
            pass

        class Item(Model):
            tags = models.ManyToManyField(Tag)

        link = Item.tags.through
        with connection.schema_editor() as editor:
            for model in (Tag, Item):  # Item's table comes with its link table
                editor.create_model(model)
        tags = [Tag.objects.create(pk=n) for n in (1, 2)]
        for n in (1, 2):
            Item.objects.create(pk=n).tags.set(tags)

        def links() -> list[tuple[int, int]]:
            return sorted(link.objects.values_list("item_id", "tag_id"))

        for queryset in (Item.objects.filter(pk=1), Tag.objects.filter(pk=1)):
            results = []
            for delete in (queryset.delete, lambda qs=queryset: cascade_delete(qs)):
                with transaction.atomic():
                    total, counts = delete()
                    results.append(((total, {k: n for k, n in counts.items() if n}), links()))
                    transaction.set_rollback(True)
            assert results[0] == results[1]
        assert results[1] == ((3, {"tests.Tag": 1, "tests.Item_tags": 2}), [(1, 2), (2, 2)])


def test_a_restricted_reference_is_allowed_only_when_the_referrer_is_deleted_too(graph):
    rows = family(graph)
    graph.Guarded.objects.all().delete()
    graph.Restricted.objects.create(root=rows.r1, child=rows.c1)  # goes with c1
    graph.Restricted.objects.create(root=rows.r2, child=rows.c1)  # goes with c1, not with r2
    before = tables(graph)

    allowed_django, allowed = both(graph, [rows.r1.pk])
    refused_django, refused = both(graph, [rows.r2.pk])

    assert allowed == allowed_django
    assert allowed[0] == (
        7,
        {"tests.Root": 1, "tests.Child": 1, "tests.Leaf": 3, "tests.Restricted": 2},
    )
    assert refused == refused_django == ("RestrictedError", before)


def test_protected_wins_over_restricted_as_in_django(graph):
    rows = family(graph)  # c2 is guarded
    graph.Restricted.objects.create(root=rows.r2, child=None)
    before = tables(graph)

    django, ours = both(graph, [rows.r2.pk])

    assert ours == django == ("ProtectedError", before)


def test_rows_to_delete_are_counted_once_however_many_paths_reach_them(graph):
    family(graph)

    rows = cascade_rows(graph.Root.objects.filter(pk=1))

    assert {m.__name__: qs.count() for m, qs in rows.items()} == {
        "Root": 1,
        "Child": 1,
        "Leaf": 3,
        "Restricted": 0,
    }


def test_statements_are_one_per_relation_whatever_the_number_of_rows(graph):
    statements = []
    for extra_leaves in (0, 100):
        rows = family(graph)
        for _ in range(extra_leaves):
            graph.Leaf.objects.create(child=rows.c1, root=rows.r1)
        with CaptureQueriesContext(connection) as queries:
            cascade_delete(graph.Root.objects.filter(pk=1))
        statements.append(len(queries))
        graph.Guarded.objects.all().delete()
        graph.Root.objects.exclude(pk=FALLBACK).delete()
        graph.Defaulted.objects.all().delete()
        graph.Reassigned.objects.all().delete()

    # The keys, SAVEPOINT, exists() for PROTECT and for RESTRICT, 5 DELETEs,
    # 3 UPDATEs, RELEASE.
    assert statements == [13, 13]


def test_nothing_matched_deletes_nothing(graph):
    family(graph)
    before = tables(graph)

    assert cascade_delete(graph.Root.objects.filter(pk=404)) == (0, {})
    assert tables(graph) == before


def test_models_with_delete_receivers_are_refused_rather_than_skipped(graph):
    family(graph)
    before = tables(graph)

    def receiver(**kwargs: Any) -> None:
        pass

    signals.post_delete.connect(receiver, sender=graph.Leaf)
    try:
        with pytest.raises(CascadeNotSupported, match="Leaf has pre/post_delete receivers"):
            cascade_delete(graph.Root.objects.filter(pk=1))
    finally:
        signals.post_delete.disconnect(receiver, sender=graph.Leaf)
    assert tables(graph) == before


@isolate_apps("tests")
def test_a_cascade_that_loops_back_is_refused_when_planned():
    class Node(Model):
        parent = models.ForeignKey("self", models.CASCADE, null=True)

    with pytest.raises(CascadeNotSupported, match=r"Node\.parent cascades back to tests\.Node"):
        cascade_plan(Node)


@isolate_apps("tests")
def test_multi_table_inheritance_is_refused_when_planned():
    class Place(Model):
        pass

    class Restaurant(Place):
        pass

    with pytest.raises(CascadeNotSupported, match="Restaurant uses multi-table inheritance"):
        cascade_plan(Place)
