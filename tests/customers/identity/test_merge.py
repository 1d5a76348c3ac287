"""Merging two customers: every row naming the secondary moves, set-based; undo puts
everything back."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automation.privacy import REDACTED_PAYLOAD
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.workflows.models import Workflow, WorkflowRun
from customers.identity.models import CustomerMerge, MergedRow
from customers.identity.services import customer_merge, merge_undo, merges_prune
from customers.models import Customer, CustomerAlias
from customers.services import customer_delete
from events_app.ingestion import event_ingest
from events_app.models import PropertyRecord
from events_app.schemas import EventCreateIn
from project.errors import ConflictError, NotFoundError, ValidationFailed
from tests.customers.identity.support import (
    alias,
    delivery_for,
    diff,
    dump,
    event_for,
    own_events,
    run_for,
    stay,
)
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def _merge(primary: Customer, secondary: Customer, **kw: object) -> CustomerMerge:
    merge = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk, **kw)  # type: ignore[arg-type]
    assert isinstance(merge, CustomerMerge)
    return merge


def test_merge_moves_every_row_of_the_secondary_and_removes_it():
    kind = EventTypeFactory()
    primary = CustomerFactory(external_id="p", attributes={"plan": "pro", "city": ""}, tags=["a"])
    secondary = CustomerFactory(
        external_id=None,
        anonymous_id="anon-1",
        email="",
        attributes={"plan": "free", "city": "Brno", "age": 30},
        tags=["b", "a"],
    )
    workflow = Workflow.objects.create(name="w")
    events = [event_for(secondary, kind, records=2) for _ in range(3)]
    run_for(secondary, workflow, events[0])
    deliveries = [delivery_for(secondary, events[1]), delivery_for(secondary)]
    segment = Segment.objects.create(key="s", name="s")
    stay(secondary, segment, current=False)
    alias(secondary, "old-id")
    mine = event_for(primary, kind)

    merge = _merge(primary, secondary)

    assert not Customer.objects.filter(pk=secondary.pk).exists()
    assert set(own_events().values_list("customer_id", flat=True)) == {primary.pk}
    assert own_events().count() == 4
    assert mine.pk in own_events().values_list("pk", flat=True)
    assert PropertyRecord.objects.filter(event__in=own_events()).count() == 7
    assert WorkflowRun.objects.get().customer_id == primary.pk
    assert SegmentMembership.objects.get().customer_id == primary.pk
    assert {d.pk for d in primary.deliveries.all()} == {d.pk for d in deliveries}
    primary.refresh_from_db()
    assert primary.attributes == {"plan": "pro", "city": "Brno", "age": 30}
    assert primary.tags == ["a", "b"]
    assert set(primary.aliases.values_list("kind", "value")) == {
        ("external", "old-id"),
        ("anonymous", "anon-1"),
    }
    assert merge.moved == {
        "events": 3,
        "workflow_runs": 1,
        "deliveries": 2,
        "segment_memberships": 1,
        "aliases": 1,
    }
    assert merge.attributes_overwritten == {
        "city": {"before": "", "after": "Brno"},
        "age": {"after": 30},
    }
    assert merge.attribute_conflicts == {"plan": {"primary": "pro", "secondary": "free"}}


def test_undo_puts_every_table_back_exactly():
    kind = EventTypeFactory()
    primary = CustomerFactory(external_id=None, anonymous_id="x", attributes={"a": ""})
    secondary = CustomerFactory(attributes={"a": 1, "b": 2}, tags=["t"], email="s@example.com")
    primary.email = ""
    primary.save()
    workflow = Workflow.objects.create(name="w")
    segment = Segment.objects.create(key="s", name="s")
    for customer in (primary, secondary):
        event = event_for(customer, kind)
        run_for(customer, workflow, event)
        delivery_for(customer, event)
        delivery_for(customer)
        stay(customer, segment, current=True)
        SegmentCheck.objects.create(
            segment=segment, customer=customer, next_check_at=event.created_at
        )
    alias(secondary, "alias-of-secondary")
    before = dump()

    merge = _merge(primary, secondary)
    assert merge.superseded_counts == {"segment_checks": 1, "segment_memberships": 1}
    assert dump() != before
    merge_undo(merge_id=merge.pk)

    differences = diff(before, dump())
    assert not differences, "\n".join(differences)
    merge.refresh_from_db()
    assert merge.status == CustomerMerge.Status.UNDONE


def test_runs_and_deliveries_made_after_the_merge_go_back_with_their_event_on_undo():
    kind = EventTypeFactory()
    primary, secondary = CustomerFactory(), CustomerFactory(external_id=None, anonymous_id="a")
    workflow = Workflow.objects.create(name="w")
    theirs, mine = event_for(secondary, kind), event_for(primary, kind)
    merge = _merge(primary, secondary)
    # What a workflow and a subscription do for the moved event while the merge stands,
    # and for the primary's own event.
    after_merge, own = run_for(primary, workflow, theirs), run_for(primary, workflow, mine)
    sent_after, sent_own = delivery_for(primary, theirs), delivery_for(primary, mine)

    merge_undo(merge_id=merge.pk)

    for row in (after_merge, own, sent_after, sent_own):
        row.refresh_from_db()
    assert (after_merge.customer_id, own.customer_id) == (secondary.pk, primary.pk)
    assert (sent_after.customer_id, sent_own.customer_id) == (secondary.pk, primary.pk)
    # The secondary's delete takes the run and redacts the delivery that hold its event.
    customer_delete(customer=Customer.objects.get(pk=secondary.pk), erase=True)
    assert list(WorkflowRun.objects.values_list("pk", flat=True)) == [own.pk]
    sent_after.refresh_from_db()
    sent_own.refresh_from_db()
    assert (sent_after.customer_id, sent_after.event_id) == (None, None)
    assert sent_after.payload == REDACTED_PAYLOAD
    assert (sent_own.customer_id, sent_own.payload) == (primary.pk, {"n": 1})


def test_merge_is_a_fixed_number_of_statements_whatever_the_rows():
    kind = EventTypeFactory()
    counts = []
    # The first merge creates the customer.merged event type.
    _merge(CustomerFactory(), CustomerFactory(external_id=None))
    for events in (1, 20):
        primary, secondary = CustomerFactory(external_id=None), CustomerFactory()
        for _ in range(events):
            event_for(secondary, kind)
        with CaptureQueriesContext(connection) as queries:
            _merge(primary, secondary)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_two_identified_customers_merge_only_when_forced():
    primary, secondary = CustomerFactory(external_id="u1"), CustomerFactory(external_id="u2")

    with pytest.raises(ConflictError) as refused:
        _merge(primary, secondary)

    assert refused.value.extra == {"primary_external_id": "u1", "secondary_external_id": "u2"}
    assert Customer.objects.count() == 2
    assert CustomerMerge.objects.count() == 0
    merge = _merge(primary, secondary, force=True)
    assert merge.forced
    assert CustomerAlias.objects.get().value == "u2"


def test_unknown_customer_is_404_and_same_customer_is_400():
    customer = CustomerFactory()
    with pytest.raises(NotFoundError):
        customer_merge(primary_id=customer.pk, secondary_id="0" * 26)
    with pytest.raises(ValidationFailed):
        customer_merge(primary_id=customer.pk, secondary_id=customer.pk)


def test_dry_run_reports_and_changes_nothing():
    kind = EventTypeFactory()
    primary = CustomerFactory(external_id=None, attributes={"plan": "pro"})
    secondary = CustomerFactory(attributes={"plan": "free", "x": 1})
    event_for(secondary, kind)
    before = dump()

    preview = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk, dry_run=True)

    assert dump() == before
    assert CustomerMerge.objects.count() == 0
    assert isinstance(preview, dict)
    assert preview["moved"] == {"events": 1}
    assert preview["attribute_conflicts"] == {"plan": {"primary": "pro", "secondary": "free"}}
    assert preview["segments"] == {"entered": [], "exited": [], "secondary_exited": []}


def test_undo_is_refused_when_a_later_merge_involves_the_customers():
    a, b, c = (
        CustomerFactory(),
        CustomerFactory(external_id=None),
        CustomerFactory(external_id=None),
    )
    first = _merge(a, b)
    second = _merge(a, c)

    with pytest.raises(ConflictError) as refused:
        merge_undo(merge_id=first.pk)

    assert refused.value.extra == {"later_merge_ids": [second.pk]}
    merge_undo(merge_id=second.pk)
    merge_undo(merge_id=first.pk)
    assert Customer.objects.count() == 3


def test_undo_past_the_retention_window_is_refused(settings, time_machine):
    settings.HERALD_MERGE_UNDO_DAYS = 30
    merge = _merge(CustomerFactory(), CustomerFactory(external_id=None))
    time_machine.move_to(merge.created_at + merge.undo_window() + timedelta(seconds=1))

    with pytest.raises(ConflictError) as refused:
        merge_undo(merge_id=merge.pk)

    assert "HERALD_MERGE_UNDO_DAYS" in refused.value.message


def test_the_periodic_prune_deletes_records_past_the_undo_window_only(settings, time_machine):
    settings.HERALD_MERGE_UNDO_DAYS = 30
    old = _merge(CustomerFactory(), CustomerFactory(external_id=None))
    time_machine.move_to(old.created_at + timedelta(days=20))
    recent = _merge(CustomerFactory(), CustomerFactory(external_id=None))

    pruned = merges_prune(old.created_at + timedelta(days=31))

    assert pruned == 1
    assert list(CustomerMerge.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not MergedRow.objects.filter(merge_id=old.pk).exists()


def test_an_event_naming_a_merged_away_customer_lands_on_the_primary():
    kind = EventTypeFactory(key="visit")
    primary, secondary = CustomerFactory(), CustomerFactory(external_id=None)
    _merge(primary, secondary)

    event_id = event_ingest(
        item=msgspec.convert(
            {"event": {"event_type": kind.key, "customer_id": secondary.pk}}, EventCreateIn
        )
    )

    assert own_events().get(pk=event_id).customer_id == primary.pk


def test_moved_keys_are_recorded_as_arrays_of_a_bounded_size_and_undo_uses_them_all(
    monkeypatch: pytest.MonkeyPatch,
):
    # Three keys per recorded row: seven events are three rows (3, 3, 1).
    monkeypatch.setattr("customers.identity.moves.MERGED_KEYS_PER_ROW", 3)
    kind = EventTypeFactory()
    primary, secondary = CustomerFactory(), CustomerFactory(external_id=None)
    moved = {event_for(secondary, kind).pk for _ in range(7)}
    mine = event_for(primary, kind).pk
    before = dump()

    merge = _merge(primary, secondary)

    recorded = list(
        MergedRow.objects.filter(merge=merge, table="events_app.Event")
        .order_by("pk")
        .values_list("row_ids", flat=True)
    )
    assert sorted(len(keys) for keys in recorded) == [1, 3, 3]
    assert {key for keys in recorded for key in keys} == moved
    assert merge.moved["events"] == 7

    merge_undo(merge_id=merge.pk)

    differences = diff(before, dump())
    assert not differences, "\n".join(differences)
    assert set(own_events().filter(customer_id=secondary.pk).values_list("pk", flat=True)) == moved
    assert list(own_events().filter(customer_id=primary.pk).values_list("pk", flat=True)) == [mine]
    assert not MergedRow.objects.filter(merge=merge).exists()
