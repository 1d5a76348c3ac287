"""POST /events/batch: every event judged on its own, refs unique per type forever."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import pytest
from django.db import DataError, connection, transaction

from customers.models import Customer
from events_app import ingest_store, ingestion
from events_app.models import Event, PropertyRecord
from events_app.schemas import EventCreateIn
from tests.conftest import API
from tests.factories import (
    CustomerFactory,
    EventFactory,
    EventTypeFactory,
    PropertyDefinitionFactory,
)

pytestmark = pytest.mark.django_db

BATCH = f"{API}/events/batch"


@pytest.fixture
def purchase():
    event_type = EventTypeFactory(key="purchase")
    PropertyDefinitionFactory(event_type=event_type, property_id="amount", value_type="number")
    PropertyDefinitionFactory(
        event_type=event_type, property_id="paid", value_type="boolean", required=True
    )
    return event_type


def item(ref: str | None, *, customer: str = "cust-1", **event: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": {"event_type": "purchase", "customer_external_id": customer, **event},
        "property_records": [
            {"property_id": "amount", "property_value": 12.5},
            {"property_id": "paid", "property_value": True},
        ],
    }
    if ref is not None:
        body["event"]["external_id"] = ref
    return body


def post_batch(api, events: list[Any]):
    return api.post(BATCH, {"events": events}, format="json")


def test_valid_batch_stores_every_event_with_its_property_records(api, purchase):
    response = post_batch(api, [item("r-1"), item("r-2", customer="cust-2")])

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["invalid_events"] == []
    assert [v["index"] for v in data["valid_events"]] == [0, 1]
    stored = {e.external_id: e for e in Event.objects.all()}
    assert set(stored) == {"r-1", "r-2"}
    first = data["valid_events"][0]
    assert first == {
        "index": 0,
        "event_id": stored["r-1"].id,
        "event_type_id": purchase.id,
        "customer_id": stored["r-1"].customer_id,
        "external_id": "r-1",
    }
    assert stored["r-1"].state == Event.State.PENDING
    assert sorted(
        PropertyRecord.objects.filter(event_id=first["event_id"]).values_list(
            "property_id", "property_value"
        )
    ) == [("amount", "12.5"), ("paid", "true")]
    assert PropertyRecord.objects.count() == 4


def test_mixed_batch_stores_valid_events_and_reports_each_invalid_one(api, purchase):
    bad_type = item("r-2")
    bad_type["event"]["event_type"] = "nope"
    missing_required = item("r-3")
    missing_required["property_records"] = []
    not_an_object = 42
    wrong_field = item("r-5")
    wrong_field["event"]["colour"] = "red"

    response = post_batch(
        api, [item("r-1"), bad_type, missing_required, not_an_object, wrong_field, item("r-6")]
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert [v["index"] for v in data["valid_events"]] == [0, 5]
    invalid = {i["index"]: i for i in data["invalid_events"]}
    assert sorted(invalid) == [1, 2, 3, 4]
    assert invalid[1]["error"] == "event.event_type: Unknown event type key 'nope'."
    assert invalid[1]["event"] == bad_type
    assert invalid[2]["details"] == {"property_records": ["Required property 'paid' is missing."]}
    assert invalid[3]["event"] == 42
    assert invalid[3]["error"] == "Expected `object`, got `int`"
    assert invalid[4]["error"] == "event: Object contains unknown field `colour`"
    assert invalid[4]["event"] == wrong_field
    assert sorted(Event.objects.values_list("external_id", flat=True)) == ["r-1", "r-6"]
    assert PropertyRecord.objects.count() == 4


def test_invalid_event_is_echoed_byte_for_byte(api, purchase):
    raw = b'{"events": [{"event": {"event_type": "nope",  "customer_id": "x"}}]}'

    response = api.post(BATCH, raw, content_type="application/json")

    assert response.status_code == 200
    assert b'"event":{"event": {"event_type": "nope",  "customer_id": "x"}}' in response.content


def test_ref_repeated_inside_one_batch_is_invalid_and_points_at_the_first(api, purchase):
    response = post_batch(api, [item("dup"), item("other"), item("dup")])

    data = response.json()["data"]
    first_id = data["valid_events"][0]["event_id"]
    assert [v["index"] for v in data["valid_events"]] == [0, 1]
    assert data["invalid_events"] == [
        {
            "index": 2,
            "event": item("dup"),
            "error": "Event ref already exists.",
            "details": {"event.external_id": ["Event ref already exists."]},
            "event_id": first_id,
        }
    ]
    assert Event.objects.filter(external_id="dup").count() == 1


def test_ref_stored_by_an_earlier_batch_is_invalid_with_the_stored_event_id(api, purchase):
    earlier = EventFactory(event_type=purchase, external_id="old")

    response = post_batch(api, [item("new"), item("old")])

    data = response.json()["data"]
    assert [v["external_id"] for v in data["valid_events"]] == ["new"]
    assert [(i["index"], i["error"], i["event_id"]) for i in data["invalid_events"]] == [
        (1, "Event ref already exists.", earlier.id)
    ]
    assert Event.objects.count() == 2


def test_same_ref_under_another_event_type_is_a_different_event(api, purchase):
    EventTypeFactory(key="login")
    login = item("shared")
    login["event"]["event_type"] = "login"
    login["property_records"] = []

    response = post_batch(api, [item("shared"), login])

    assert len(response.json()["data"]["valid_events"]) == 2
    assert Event.objects.filter(external_id="shared").count() == 2


def test_events_without_ref_are_never_duplicates(api, purchase):
    response = post_batch(api, [item(None), item(None)])

    assert len(response.json()["data"]["valid_events"]) == 2
    assert Event.objects.filter(external_id__isnull=True).count() == 2


def test_replaying_a_batch_stores_nothing_new(api, purchase):
    events = [item(f"r-{n}", customer=f"c-{n % 3}") for n in range(20)]
    first = post_batch(api, events).json()["data"]
    counts = (Event.objects.count(), PropertyRecord.objects.count(), Customer.objects.count())

    replay = post_batch(api, events).json()["data"]

    assert replay["valid_events"] == []
    assert [i["index"] for i in replay["invalid_events"]] == list(range(20))
    assert [i["event_id"] for i in replay["invalid_events"]] == [
        v["event_id"] for v in first["valid_events"]
    ]
    assert {i["error"] for i in replay["invalid_events"]} == {"Event ref already exists."}
    assert (Event.objects.count(), PropertyRecord.objects.count(), Customer.objects.count()) == (
        counts
    )
    assert counts == (20, 40, 3)


def test_unknown_customer_external_id_creates_the_customer_once(api, purchase):
    known = CustomerFactory(external_id="known")

    response = post_batch(
        api, [item("a", customer="fresh"), item("b", customer="fresh"), item("c", customer="known")]
    )

    valid = response.json()["data"]["valid_events"]
    fresh = Customer.objects.get(external_id="fresh")
    assert [v["customer_id"] for v in valid] == [fresh.id, fresh.id, known.id]
    assert Customer.objects.count() == 2


def test_event_type_by_id_and_customer_by_id_are_accepted(api, purchase):
    customer = CustomerFactory()
    by_id = item("x")
    by_id["event"] = {"event_type_id": purchase.id, "customer_id": customer.id}

    response = post_batch(api, [by_id])

    assert response.json()["data"]["valid_events"][0]["customer_id"] == customer.id


def test_unknown_customer_id_is_invalid_and_creates_nothing(api, purchase):
    bad = item("x")
    bad["event"] = {"event_type": "purchase", "customer_id": "0" * 26}

    response = post_batch(api, [bad])

    assert response.json()["data"]["invalid_events"][0]["error"] == (
        f"event.customer_id: Unknown customer '{'0' * 26}'."
    )
    assert (Event.objects.count(), Customer.objects.count()) == (0, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": []}, "Invalid input: events: Expected `array` of length >= 1"),
        ({}, "Invalid input: Object missing required field `events`"),
        ({"events": {}}, "Invalid input: events: Expected `array`, got `object`"),
        (
            {"events": [1], "x": 1},
            "Invalid input: Object contains unknown field `x`",
        ),
    ],
)
def test_batch_shape_errors_are_400_and_store_nothing(api, purchase, body, message):
    response = api.post(BATCH, body, format="json")

    assert response.status_code == 400
    assert response.json()["message"] == message
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_storage_failure_stores_none_of_the_batch(purchase, store_path):
    # transaction=True: no test transaction around the call, so only the store's
    # own atomicity can keep the first event out when the last one fails.
    prepared, invalid = ingestion.events_prepare(
        items=[services_item("a"), services_item("b"), services_item("c")]
    )
    assert invalid == []
    # Fails in the database after the events and some records were written:
    # property_id is varchar(64).
    prepared[-1].records.append(("x" * 65, "too long"))

    with pytest.raises(DataError):
        ingestion.events_store(prepared=prepared)

    assert (Event.objects.count(), PropertyRecord.objects.count()) == (0, 0)


def services_item(ref: str) -> EventCreateIn:
    return msgspec.convert(item(ref), EventCreateIn)


def test_single_post_with_an_existing_ref_is_409_with_the_stored_event_id(api, purchase):
    earlier = EventFactory(event_type=purchase, external_id="old")

    response = api.post(f"{API}/events", item("old"), format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": "Event ref already exists.",
        "statusCode": 409,
        "event_id": earlier.id,
    }
    assert Event.objects.count() == 1


def test_batch_needs_the_write_scope(make_api, purchase):
    response = post_batch(make_api("read"), [item("a")])

    assert response.status_code == 403
    assert Event.objects.count() == 0


@pytest.fixture(params=["postgresql", "portable"])
def store_path(request, monkeypatch):
    """Run a test through the set-based PostgreSQL insert and through the portable ORM path."""
    if request.param == "portable":
        monkeypatch.setattr(ingest_store.connection, "vendor", "sqlite")
    return request.param


def test_both_store_paths_skip_stored_refs_and_keep_model_defaults(purchase, store_path):
    EventFactory(event_type=purchase, external_id="old")

    result = ingestion.events_ingest_batch(
        items=[services_item("new"), services_item("old"), services_item("new")]
    )

    assert [e.external_id for e in result.stored] == ["new"]
    assert [(i.index, i.error) for i in result.invalid] == [
        (1, "Event ref already exists."),
        (2, "Event ref already exists."),
    ]
    stored = Event.objects.get(external_id="new")
    assert (stored.state, stored.is_delivered, stored.automation_pending, stored.depth) == (
        Event.State.PENDING,
        True,
        False,
        0,
    )
    assert (stored.completed_at, stored.failed_at) == (None, None)
    assert stored.data == {}
    assert PropertyRecord.objects.filter(event=stored).count() == 2


@pytest.mark.django_db(transaction=True)
def test_ref_committed_by_a_concurrent_writer_is_a_duplicate_with_the_writers_id(purchase):
    # Writer A inserts ref "race" and holds its transaction open; writer B stores the
    # same ref, waits on A's row lock, and must come back with A's event id once A
    # commits -- no IntegrityError, nothing stored twice.
    first, _ = ingestion.events_prepare(items=[services_item("race")])
    second, _ = ingestion.events_prepare(items=[services_item("race"), services_item("calm")])
    inserted, release = threading.Event(), threading.Event()
    results: dict[str, ingestion.StoreResult] = {}

    def writer_a() -> None:
        try:
            with transaction.atomic():
                results["a"] = ingestion.events_store(prepared=first)
                inserted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def writer_b() -> None:
        try:
            results["b"] = ingestion.events_store(prepared=second)
        finally:
            connection.close()

    a = threading.Thread(target=writer_a)
    a.start()
    assert inserted.wait(timeout=30)
    b = threading.Thread(target=writer_b)
    b.start()
    wait_until_a_backend_waits_on_a_lock()
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)

    winner = results["a"].stored[0].id
    assert [e.external_id for e in results["b"].stored] == ["calm"]
    assert [(d.index, d.error, d.event_id) for d in results["b"].duplicates] == [
        (0, "Event ref already exists.", winner)
    ]
    assert Event.objects.filter(external_id="race").count() == 1
    assert PropertyRecord.objects.filter(event__external_id="race").count() == 2


def wait_until_a_backend_waits_on_a_lock() -> None:
    """Poll PostgreSQL (bounded) until writer B is blocked on writer A's row."""
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
    pytest.fail("writer B never waited for writer A")


def test_an_edited_event_type_applies_to_the_very_next_batch(api, purchase):
    with_colour = item("a")
    with_colour["property_records"].append({"property_id": "colour", "property_value": "red"})
    before = post_batch(api, [with_colour]).json()["data"]
    PropertyDefinitionFactory(event_type=purchase, property_id="colour")

    after = post_batch(api, [with_colour]).json()["data"]

    assert before["invalid_events"][0]["error"] == (
        "property_records[2].property_id: Unknown property 'colour' for event type 'purchase'."
    )
    assert [v["external_id"] for v in after["valid_events"]] == ["a"]


def test_property_record_problems_are_reported_per_field(api, purchase):
    repeated = item("a")
    repeated["property_records"].append({"property_id": "amount", "property_value": 3})
    bad_required = item("b")
    bad_required["property_records"][1]["property_value"] = "maybe"

    data = post_batch(api, [repeated, bad_required]).json()["data"]

    assert [i["details"] for i in data["invalid_events"]] == [
        {"property_records[2].property_id": ["Property 'amount' is given more than once."]},
        {
            "property_records[1].property_value": [
                "Property 'paid' must be true or false, got 'maybe'."
            ]
        },
    ]
    assert Event.objects.count() == 0
