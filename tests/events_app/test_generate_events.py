from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from customers.models import Customer
from events_app.ingestion import events_prepare
from events_app.models import Event, EventCount, EventType, PropertyDefinition, PropertyRecord
from events_app.properties import PROPERTY_TYPES
from events_app.schemas import EventCreateIn, EventIn, PropertyRecordIn
from project.ids import PUBLIC_ID_RE
from tests.factories import EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db


def generate(*args: str) -> str:
    out = StringIO()
    call_command("generate_events", *args, stdout=out)
    return out.getvalue()


def assert_ids_time_ordered_and_unique() -> None:
    rows = list(Event.objects.order_by("id").values_list("id", "created_at"))
    assert all(PUBLIC_ID_RE.match(event_id) for event_id, _ in rows)
    assert len({event_id for event_id, _ in rows}) == len(rows)
    created = [at for _, at in rows]
    assert created == sorted(created), "id order must be created_at order"
    # Like project.ids.new_public_id: the first 12 hex digits are the creation millis.
    assert all(int(event_id[:12], 16) == int(at.timestamp() * 1000) for event_id, at in rows)


def assert_records_valid() -> None:
    """Every event passes the ingestion validation of its type (types, required, unknown)."""
    definitions = {(d.event_type_id, d.property_id): d for d in PropertyDefinition.objects.all()}
    records: dict[str, list[PropertyRecordIn]] = {}
    rows = PropertyRecord.objects.values_list(
        "event_id", "event__event_type_id", "property_id", "property_value"
    )
    for event_id, type_id, property_id, value in rows:
        records.setdefault(event_id, []).append(PropertyRecordIn(property_id, value))
        definition = definitions[(type_id, property_id)]
        # Stored text is the canonical form ingestion would have stored.
        assert PROPERTY_TYPES[definition.value_type].to_text(value) == value
    items = [
        EventCreateIn(
            event=EventIn(event_type_id=e.event_type_id, customer_id=e.customer_id, data=e.data),
            property_records=records.get(e.id, []),
        )
        for e in Event.objects.all()
    ]
    prepared, invalid = events_prepare(items=items)
    assert invalid == []
    assert len(prepared) == len(items)


def test_generate_events_copies_valid_time_ordered_events_on_postgresql() -> None:
    assert connection.vendor == "postgresql"
    before = timezone.now()

    output = generate("--events", "2000", "--seed", "3", "--chunk", "700")

    assert "with COPY" in output
    assert "Generated 2,000 events" in output
    assert Event.objects.count() == 2000
    assert Customer.objects.count() == 100
    assert sorted(EventType.objects.values_list("key", flat=True)) == [
        "api_call",
        "login",
        "purchase",
        "signup",
    ]
    assert_ids_time_ordered_and_unique()
    assert_records_valid()
    records = PropertyRecord.objects.count()
    assert 2.6 * 2000 < records < 3.4 * 2000, records
    assert f"{records:,} property records" in output
    oldest = Event.objects.order_by("created_at").first()
    newest = Event.objects.order_by("created_at").last()
    assert oldest is not None
    assert newest is not None
    assert oldest.created_at >= before - timedelta(days=181)
    assert newest.created_at <= timezone.now()
    assert newest.created_at - oldest.created_at > timedelta(days=150)  # spread over months
    assert not Event.objects.filter(occurred_at__gt=F("created_at")).exists()
    assert EventCount.objects.aggregate(n=Sum("events"))["n"] == 2000


def test_batched_insert_path_writes_the_same_kind_of_data() -> None:
    output = generate("--events", "600", "--seed", "5", "--insert", "--customers", "7")

    assert "with batched INSERT" in output
    assert Event.objects.count() == 600
    assert Customer.objects.count() == 7
    assert Event.objects.values("customer_id").distinct().count() <= 7
    assert_ids_time_ordered_and_unique()
    assert_records_valid()
    assert EventCount.objects.aggregate(n=Sum("events"))["n"] == 600


def test_second_run_adds_events_without_ref_collisions() -> None:
    generate("--events", "300", "--seed", "1")
    generate("--events", "300", "--seed", "1")

    assert Event.objects.count() == 600
    assert Event.objects.values("external_id").distinct().count() == 600
    assert Customer.objects.count() == 30
    assert EventType.objects.count() == 4


def test_existing_type_is_reused_with_its_own_definitions() -> None:
    login = EventTypeFactory(key="login")
    PropertyDefinitionFactory(
        event_type=login, property_id="attempts", value_type="number", required=True
    )

    generate("--events", "400", "--seed", "2", "--event-types", "2")

    login_events = Event.objects.filter(event_type=login)
    assert login_events.exists()
    assert set(
        PropertyRecord.objects.filter(event__event_type=login).values_list("property_id", flat=True)
    ) == {"attempts"}
    assert PropertyRecord.objects.filter(event__event_type=login).count() == login_events.count()
    assert_records_valid()


def test_extra_event_types_get_generated_definitions() -> None:
    generate("--events", "300", "--seed", "4", "--event-types", "6")

    keys = set(EventType.objects.values_list("key", flat=True))
    assert keys == {"purchase", "login", "api_call", "signup", "generated_05", "generated_06"}
    assert Event.objects.filter(event_type__key="generated_06").exists()
    assert_records_valid()


def test_invalid_sizes_are_rejected_without_writing() -> None:
    with pytest.raises(CommandError, match="--events must be >= 0"):
        generate("--events", "-1")

    assert Event.objects.count() == 0
    assert Customer.objects.count() == 0
