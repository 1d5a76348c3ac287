"""Property: for any history of two to four customers, a merge (or a chain of merges)
and its undo (in reverse order) leave every table exactly as before -- full row dumps
of every table with a customer foreign key, the customers and the property records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.segments.models import Segment, SegmentCheck
from automation.workflows.models import Workflow
from customers import hooks as customers_hooks
from customers.identity.models import CustomerMerge
from customers.identity.services import customer_merge, merge_undo
from customers.models import Customer, CustomerAlias
from events_app.models import EventType
from tests.customers.identity.support import delivery_for, diff, dump, event_for, run_for, stay

values = st.one_of(st.none(), st.just(""), st.integers(-3, 3), st.sampled_from(["x", "y"]))
customer = st.fixed_dictionaries(
    {
        "identified": st.booleans(),
        "anonymous": st.booleans(),
        "email": st.sampled_from(["", "a@example.com", "b@example.com"]),
        "attributes": st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3),
        "tags": st.lists(st.sampled_from(["t1", "t2", "t3"]), unique=True, max_size=3),
        # (event type 0/1, property records, with a run of workflow 0/1 or none, with a
        # webhook delivery)
        "events": st.lists(
            st.tuples(
                st.integers(0, 1), st.integers(0, 2), st.sampled_from([None, 0, 1]), st.booleans()
            ),
            max_size=4,
        ),
        # Deliveries of runs without an event (segment transitions)
        "deliveries": st.integers(0, 1),
        # (segment 0/1, current?)
        "stays": st.lists(st.tuples(st.integers(0, 1), st.booleans()), max_size=3),
        "checks": st.lists(st.integers(0, 1), unique=True, max_size=2),
        "aliases": st.integers(0, 2),
    }
)
histories = st.lists(customer, min_size=2, max_size=4)
# Merges as (primary index, secondary index) among the customers still there.
plans = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=3)


def _build(history: list[dict[str, Any]]) -> list[Customer]:
    types = [EventType.objects.create(key=f"t{n}", name=f"t{n}") for n in range(2)]
    workflows = [Workflow.objects.create(name=f"w{n}") for n in range(2)]
    segments = [Segment.objects.create(key=f"s{n}", name=f"s{n}") for n in range(2)]
    customers = []
    for index, spec in enumerate(history):
        made = Customer.objects.create(
            external_id=f"ext-{index}" if spec["identified"] else None,
            anonymous_id=f"anon-{index}" if spec["anonymous"] else None,
            email=spec["email"],
            attributes=spec["attributes"],
            tags=spec["tags"],
        )
        for type_index, records, workflow, delivered in spec["events"]:
            event = event_for(made, types[type_index], records=records)
            if workflow is not None:
                run_for(made, workflows[workflow], event)
            if delivered:
                delivery_for(made, event)
        for _ in range(spec["deliveries"]):
            delivery_for(made)
        current: set[int] = set()
        for segment_index, is_current in spec["stays"]:
            # At most one current stay per segment (the table's own invariant).
            is_current = is_current and segment_index not in current
            if is_current:
                current.add(segment_index)
            stay(made, segments[segment_index], current=is_current)
        for segment_index in spec["checks"]:
            SegmentCheck.objects.create(
                segment=segments[segment_index],
                customer=made,
                next_check_at=timezone.now() + timedelta(hours=segment_index),
            )
        for n in range(spec["aliases"]):
            CustomerAlias.objects.create(
                customer=made, kind=CustomerAlias.Kind.EXTERNAL, value=f"alias-{index}-{n}"
            )
        customers.append(made)
    return customers


@pytest.fixture
def no_segment_marks() -> Iterator[None]:
    """Without the segments' customer-change hook: the re-evaluation marks it writes
    (SegmentCheck rows due now, for the engine's sweep) are its work queue, not history
    a merge moved; test_segments_follow_a_merge covers them."""
    hooks = dict(customers_hooks._hooks.all())
    customers_hooks.customer_change_hook_register("segments", None)
    yield
    customers_hooks.customer_change_hook_register("segments", hooks["segments"])


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, plan=plans)
def test_merges_then_their_undos_leave_every_table_exactly_as_before(
    db: None, no_segment_marks: None, history: list[dict[str, Any]], plan: list[tuple[int, int]]
) -> None:
    with transaction.atomic():
        customers = _build(history)
        before = dump()
        alive = [c.pk for c in customers]
        merges: list[CustomerMerge] = []
        for primary_index, secondary_index in plan:
            if len(alive) < 2:
                break
            first = primary_index % len(alive)
            primary = alive[first]
            secondary = alive[(first + 1 + secondary_index % (len(alive) - 1)) % len(alive)]
            merge = customer_merge(primary_id=primary, secondary_id=secondary, force=True)
            assert isinstance(merge, CustomerMerge)
            merges.append(merge)
            alive.remove(secondary)
        for merge in reversed(merges):
            merge_undo(merge_id=merge.pk)

        differences = diff(before, dump())
        assert not differences, "\n".join(differences)
        transaction.set_rollback(True)
