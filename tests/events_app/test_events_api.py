"""Contract of the events endpoints (seed 004): create, list, get, property records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from events_app.models import Event, PropertyRecord
from tests.conftest import API
from tests.factories import (
    CustomerFactory,
    EventFactory,
    EventTypeFactory,
    PropertyDefinitionFactory,
    PropertyRecordFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def purchase():
    event_type = EventTypeFactory(key="purchase")
    PropertyDefinitionFactory(
        event_type=event_type, property_id="has_purchase", value_type="boolean"
    )
    PropertyDefinitionFactory(
        event_type=event_type, property_id="amount", value_type="number", required=True
    )
    return event_type


@pytest.fixture
def customer():
    return CustomerFactory(external_id="157613")


def _body(event_type, customer, **event):
    return {
        "event": {"event_type_id": event_type.id, "customer_id": customer.id, **event},
        "property_records": [
            {"property_id": "amount", "property_value": "12.50"},
            {"property_id": "has_purchase", "property_value": True},
        ],
    }


# ---------------------------------------------------------------- POST /events


def test_created_event_is_stored_with_its_property_records(contract_api, purchase, customer):
    response = contract_api.post(
        f"{API}/events", _body(purchase, customer, external_id="aaabbbccc"), format="json"
    )

    assert response.status_code == 201
    event_id = response.json()["data"]["event_id"]
    assert response.json() == {"data": {"event_id": event_id}}
    event = Event.objects.get(pk=event_id)
    assert (event.event_type_id, event.customer_id, event.external_id) == (
        purchase.id,
        customer.id,
        "aaabbbccc",
    )
    assert event.state == Event.State.PENDING
    assert sorted(PropertyRecord.objects.values_list("property_id", "property_value")) == [
        ("amount", "12.50"),
        ("has_purchase", "true"),
    ]


def test_data_given_as_json_encoded_string_is_returned_as_object(contract_api, purchase, customer):
    created = contract_api.post(
        f"{API}/events",
        _body(purchase, customer, data='{"test":10,"test2":20}'),
        format="json",
    )
    event_id = created.json()["data"]["event_id"]

    fetched = contract_api.get(f"{API}/events/{event_id}")

    assert created.status_code == 201
    assert fetched.json()["data"]["data"] == {"test": 10, "test2": 20}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[1, 2]", "data must be a JSON object."),
        ("{not json", "data is not valid JSON: Expecting property name enclosed in double quotes."),
    ],
)
def test_data_string_that_is_not_a_json_object_is_400(
    contract_api, purchase, customer, data, message
):
    response = contract_api.post(
        f"{API}/events", _body(purchase, customer, data=data), format="json"
    )

    assert response.status_code == 400
    assert response.json()["details"] == {"event.data": [message]}
    assert Event.objects.count() == 0


def test_missing_event_wrapper_is_400(contract_api):
    response = contract_api.post(
        f"{API}/events", {"event_type_id": "x", "customer_id": "y"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": "Invalid input: Object contains unknown field `event_type_id`",
        "statusCode": 400,
        "details": {"non_field_errors": ["Object contains unknown field `event_type_id`"]},
    }


def test_unknown_key_inside_event_is_400_naming_it(contract_api, purchase, customer):
    body = _body(purchase, customer)
    body["event"]["extrnal_id"] = "typo"

    response = contract_api.post(f"{API}/events", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {"event": ["Object contains unknown field `extrnal_id`"]}
    assert Event.objects.count() == 0


def test_wrong_json_type_is_400_with_field_path(contract_api, purchase, customer):
    body = _body(purchase, customer)
    body["property_records"][0]["property_id"] = 5

    response = contract_api.post(f"{API}/events", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {
        "property_records[0].property_id": ["Expected `str`, got `int`"]
    }


def test_unknown_event_type_and_customer_are_400_with_details(contract_api):
    response = contract_api.post(
        f"{API}/events",
        {"event": {"event_type_id": "nope", "customer_id": "nobody"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["details"] == {
        "event.event_type_id": ["Unknown event type 'nope'."],
        "event.customer_id": ["Unknown customer 'nobody'."],
    }


def test_property_records_are_validated_against_the_type(contract_api, purchase, customer):
    response = contract_api.post(
        f"{API}/events",
        {
            "event": {"event_type_id": purchase.id, "customer_id": customer.id},
            "property_records": [
                {"property_id": "has_purchase", "property_value": "maybe"},
                {"property_id": "colour", "property_value": "red"},
            ],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["details"] == {
        "property_records[0].property_value": [
            "Property 'has_purchase' must be true or false, got 'maybe'."
        ],
        "property_records[1].property_id": ["Unknown property 'colour' for event type 'purchase'."],
        "property_records": ["Required property 'amount' is missing."],
    }
    assert PropertyRecord.objects.count() == 0


def test_second_event_with_the_same_ref_is_409_naming_the_first(contract_api, purchase, customer):
    first = contract_api.post(
        f"{API}/events", _body(purchase, customer, external_id="r1"), format="json"
    )

    second = contract_api.post(
        f"{API}/events", _body(purchase, customer, external_id="r1"), format="json"
    )

    assert second.status_code == 409
    assert second.json() == {
        "error": "Conflict",
        "message": "Event ref already exists.",
        "statusCode": 409,
        "event_id": first.json()["data"]["event_id"],
    }
    assert Event.objects.count() == 1


# ---------------------------------------------------------------- GET /events/{id}


def test_event_is_returned_with_iso_utc_timestamps(contract_api, purchase, customer):
    event = EventFactory(
        event_type=purchase,
        customer=customer,
        external_id="157613",
        data={"test": 10},
        occurred_at=T0,
        created_at=T0 + timedelta(seconds=1),
    )

    response = contract_api.get(f"{API}/events/{event.id}")

    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "event_id": event.id,
            "event_type_id": purchase.id,
            "customer_id": customer.id,
            "external_id": "157613",
            "secondary_external_id": None,
            "data": {"test": 10},
            "occurred_at": "2024-05-01T12:00:00Z",
            "created_at": "2024-05-01T12:00:01Z",
            "state": 1,
            "status": "pending",
            "completed_at": None,
            "failed_at": None,
            "is_delivered": True,
        }
    }


def test_unknown_event_id_is_404(contract_api):
    response = contract_api.get(f"{API}/events/8bed991c68a470e7aaeffbf048")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "Event '8bed991c68a470e7aaeffbf048' not found.",
        "statusCode": 404,
    }


# ---------------------------------------------------------------- GET /events


def test_list_defaults_to_newest_first_with_total(contract_api):
    old = EventFactory(created_at=T0)
    new = EventFactory(created_at=T0 + timedelta(minutes=1))

    response = contract_api.get(f"{API}/events")

    assert response.status_code == 200
    data = response.json()["data"]
    assert [e["event_id"] for e in data["events"]] == [new.id, old.id]
    assert data["total_items"] == 2


def test_count_and_offset_page_through_the_list(contract_api):
    events = [EventFactory(created_at=T0 + timedelta(seconds=i)) for i in range(5)]

    response = contract_api.get(f"{API}/events", {"count": 2, "offset": 1, "sort_direction": "asc"})

    data = response.json()["data"]
    assert [e["event_id"] for e in data["events"]] == [events[1].id, events[2].id]
    assert data["total_items"] == 5


def test_offset_past_the_end_is_an_empty_page_with_the_total(contract_api):
    EventFactory()

    response = contract_api.get(f"{API}/events", {"offset": 10})

    assert response.json() == {"data": {"events": [], "total_items": 1}}


@pytest.mark.parametrize("direction", ["asc", "ASC", "Asc", "aSc"])
def test_sort_direction_is_case_insensitive(contract_api, direction):
    first = EventFactory(created_at=T0)
    second = EventFactory(created_at=T0 + timedelta(seconds=1))

    response = contract_api.get(f"{API}/events", {"sort_direction": direction})

    assert [e["event_id"] for e in response.json()["data"]["events"]] == [first.id, second.id]


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_pages_never_repeat_or_skip_events_with_equal_sort_values(contract_api, direction):
    # Seven events with the same created_at: only the id tie-breaker orders them.
    ids = [EventFactory(created_at=T0).id for _ in range(7)]
    seen: list[str] = []

    for offset in range(0, 7, 2):
        page = contract_api.get(
            f"{API}/events", {"count": 2, "offset": offset, "sort_direction": direction}
        )
        seen += [e["event_id"] for e in page.json()["data"]["events"]]

    assert seen == sorted(ids, reverse=direction == "DESC")


def test_sort_by_external_id_breaks_ties_by_id(contract_api):
    a = EventFactory(external_id="b-ref")
    b = EventFactory(external_id="a-ref")
    c = EventFactory(external_id=None)

    response = contract_api.get(
        f"{API}/events", {"sort_field": "external_id", "sort_direction": "ASC"}
    )

    assert [e["event_id"] for e in response.json()["data"]["events"]] == [b.id, a.id, c.id]


@pytest.mark.parametrize(
    ("query", "message", "details"),
    [
        (
            {"count": "0"},
            "Query parameter 'count' must be between 1 and 1000.",
            {"count": ["Must be between 1 and 1000; got 0."]},
        ),
        (
            {"count": "1001"},
            "Query parameter 'count' must be between 1 and 1000.",
            {"count": ["Must be between 1 and 1000; got 1001."]},
        ),
        (
            {"count": "ten"},
            "Query parameter 'count' must be an integer.",
            {"count": ["'ten' is not an integer."]},
        ),
        (
            {"count": "2.5"},
            "Query parameter 'count' must be an integer.",
            {"count": ["'2.5' is not an integer."]},
        ),
        (
            {"offset": "-1"},
            "Query parameter 'offset' must be at least 0.",
            {"offset": ["Must be at least 0; got -1."]},
        ),
        (
            {"sort_field": "data"},
            "Unknown sort_field 'data'.",
            {"sort_field": ["One of: created_at, event_id, external_id, occurred_at."]},
        ),
        (
            {"sort_direction": "up"},
            "sort_direction must be ASC or DESC.",
            {"sort_direction": ["'up' is not ASC or DESC."]},
        ),
        (
            {"created_after": "yesterday"},
            "Invalid query parameter 'created_after': Enter a valid date/time.",
            {"created_after": ["Enter a valid date/time."]},
        ),
        (
            {"status": "done"},
            "Invalid query parameter 'status': "
            "Select a valid choice. done is not one of the available choices.",
            {"status": ["Select a valid choice. done is not one of the available choices."]},
        ),
    ],
)
def test_bad_list_parameter_is_400_with_details(contract_api, query, message, details):
    response = contract_api.get(f"{API}/events", query)

    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": message,
        "statusCode": 400,
        "details": details,
    }


def test_unknown_query_parameter_is_400_not_ignored(contract_api):
    EventFactory()

    response = contract_api.get(f"{API}/events", {"event_typeid": "x"})

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Unknown query parameter(s): event_typeid."
    assert list(body["details"]) == ["event_typeid"]


def test_count_1000_is_the_largest_page(contract_api):
    response = contract_api.get(f"{API}/events", {"count": 1000})

    assert response.status_code == 200


def test_filters_by_event_type_customer_and_ref(contract_api, purchase, customer):
    match = EventFactory(event_type=purchase, customer=customer, external_id="r1")
    EventFactory(event_type=purchase, external_id="r2")
    EventFactory(customer=customer, external_id="r1")

    def ids(**query):
        response = contract_api.get(f"{API}/events", query)
        return [e["event_id"] for e in response.json()["data"]["events"]]

    assert ids(event_type_id=purchase.id, customer_id=customer.id, external_id="r1") == [match.id]
    assert len(ids(event_type_id=purchase.id)) == 2
    assert len(ids(customer_id=customer.id)) == 2
    assert len(ids(external_id="r1")) == 2
    assert ids(event_type_id="8bed991c68a470e7aaeffbf048") == []


def test_time_range_filters_are_inclusive_below_and_exclusive_above(contract_api):
    events = [
        EventFactory(created_at=T0 + timedelta(hours=h), occurred_at=T0 - timedelta(hours=h))
        for h in range(4)
    ]

    created = contract_api.get(
        f"{API}/events",
        {
            "created_after": "2024-05-01T13:00:00Z",
            "created_before": "2024-05-01T15:00:00+00:00",
            "sort_direction": "ASC",
        },
    )
    occurred = contract_api.get(
        f"{API}/events",
        {"occurred_after": "2024-05-01T10:00:00Z", "occurred_before": "2024-05-01T12:00:00Z"},
    )

    assert [e["event_id"] for e in created.json()["data"]["events"]] == [
        events[1].id,
        events[2].id,
    ]
    assert created.json()["data"]["total_items"] == 2
    assert [e["event_id"] for e in occurred.json()["data"]["events"]] == [
        events[2].id,
        events[1].id,
    ]


def test_status_filter_uses_state_names(contract_api):
    pending = EventFactory(state=Event.State.PENDING)
    EventFactory(state=Event.State.COMPLETED, completed_at=T0)

    response = contract_api.get(f"{API}/events", {"status": "pending"})

    assert [e["event_id"] for e in response.json()["data"]["events"]] == [pending.id]


# ---------------------------------------------------------------- property records


def test_property_records_are_listed_by_property_id(contract_api):
    event = EventFactory()
    PropertyRecordFactory(event=event, property_id="b", property_value="2")
    PropertyRecordFactory(event=event, property_id="a", property_value="1")
    PropertyRecordFactory(property_id="a")  # another event's

    response = contract_api.get(f"{API}/events/{event.id}/property-records", {"count": 1})

    assert response.json() == {
        "data": {
            "property_records": [{"event_id": event.id, "property_id": "a", "property_value": "1"}],
            "total_items": 2,
        }
    }


def test_property_records_of_unknown_event_is_404(contract_api):
    response = contract_api.get(f"{API}/events/nope/property-records")

    assert response.status_code == 404
    assert response.json()["message"] == "Event 'nope' not found."


def test_property_records_reject_event_filters(contract_api):
    event = EventFactory()

    response = contract_api.get(f"{API}/events/{event.id}/property-records", {"event_type_id": "x"})

    assert response.status_code == 400
    assert response.json()["message"] == "Unknown query parameter(s): event_type_id."


@pytest.mark.parametrize(
    ("occurred_at", "stored"),
    [
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00Z"),
        ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),
        ("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00.250000Z"),
    ],
)
def test_occurred_at_is_stored_and_returned_in_utc(
    contract_api, purchase, customer, occurred_at, stored
):
    created = contract_api.post(
        f"{API}/events", _body(purchase, customer, occurred_at=occurred_at), format="json"
    )

    event = contract_api.get(f"{API}/events/{created.json()['data']['event_id']}")

    assert event.json()["data"]["occurred_at"] == stored


def test_occurred_at_defaults_to_the_time_of_receipt(contract_api, purchase, customer):
    with time_machine.travel(T0, tick=False):
        created = contract_api.post(f"{API}/events", _body(purchase, customer), format="json")

    event = contract_api.get(f"{API}/events/{created.json()['data']['event_id']}")

    assert event.json()["data"]["occurred_at"] == "2024-05-01T12:00:00Z"
    assert event.json()["data"]["created_at"] == "2024-05-01T12:00:00Z"
