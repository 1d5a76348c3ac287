"""Contract of /event-types: create, list, get, PATCH, delete."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from events_app.models import EventType, PropertyDefinition
from tests.conftest import API
from tests.factories import EventFactory, EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

PURCHASE = {
    "event_type": {"key": "purchase", "name": "Purchase", "description": "A paid order."},
    "properties": [
        {
            "property_id": "has_purchase",
            "name": "Has purchase",
            "type": "boolean",
            "required": False,
        },
        {"property_id": "amount", "name": "Amount", "type": "number", "required": True},
    ],
}


def _definitions(event_type_id: str) -> list[tuple[str, str, str, bool]]:
    return list(
        PropertyDefinition.objects.filter(event_type_id=event_type_id)
        .order_by("property_id")
        .values_list("property_id", "name", "value_type", "required")
    )


# ---------------------------------------------------------------- create


def test_created_event_type_has_its_property_definitions(contract_api):
    response = contract_api.post(f"{API}/event-types", PURCHASE, format="json")

    assert response.status_code == 201
    event_type_id = response.json()["data"]["event_type_id"]
    assert response.json() == {"data": {"event_type_id": event_type_id}}
    event_type = EventType.objects.get(pk=event_type_id)
    assert (event_type.key, event_type.name, event_type.description) == (
        "purchase",
        "Purchase",
        "A paid order.",
    )
    assert _definitions(event_type_id) == [
        ("amount", "Amount", "number", True),
        ("has_purchase", "Has purchase", "boolean", False),
    ]


def test_properties_and_description_are_optional(contract_api):
    response = contract_api.post(
        f"{API}/event-types", {"event_type": {"key": "login", "name": "Login"}}, format="json"
    )

    assert response.status_code == 201
    event_type = EventType.objects.get(key="login")
    assert event_type.description == ""
    assert _definitions(event_type.id) == []


def test_property_type_defaults_to_string(contract_api):
    contract_api.post(
        f"{API}/event-types",
        {"event_type": {"key": "x", "name": "X"}, "properties": [{"property_id": "p"}]},
        format="json",
    )

    assert _definitions(EventType.objects.get().id) == [("p", "", "string", False)]


def test_taken_key_is_409_naming_the_existing_type(contract_api):
    existing = EventTypeFactory(key="purchase")

    response = contract_api.post(f"{API}/event-types", PURCHASE, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": "An event type with key 'purchase' already exists.",
        "statusCode": 409,
        "event_type_id": existing.id,
    }
    assert EventType.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"event_type": ["This field is required."]}),
        (
            {"key": "purchase", "name": "Purchase"},
            {
                "event_type": ["This field is required."],
                "key": ["Unknown field."],
                "name": ["Unknown field."],
            },
        ),
        (
            {"event_type": {"key": "purchase", "name": "P", "desc": "typo"}},
            {"event_type.desc": ["Unknown field."]},
        ),
        (
            {"event_type": {"key": "has space", "name": ""}},
            {
                "event_type.key": [
                    'Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.'
                ],
                "event_type.name": ["This field may not be blank."],
            },
        ),
        (
            {
                "event_type": {"key": "a", "name": "A"},
                "properties": [{"property_id": "p", "type": "money", "requird": True}],
            },
            {
                "properties[0].type": ['"money" is not a valid choice.'],
                "properties[0].requird": ["Unknown field."],
            },
        ),
        (
            {"event_type": {"key": "a", "name": "A"}, "properties": {"property_id": "p"}},
            {"properties": ['Expected a list of items but got type "dict".']},
        ),
        (
            {"event_type": "purchase"},
            {"event_type": ["Invalid data. Expected a dictionary, but got str."]},
        ),
    ],
)
def test_invalid_create_body_is_400_naming_fields_and_creates_nothing(contract_api, body, details):
    response = contract_api.post(f"{API}/event-types", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == details
    first_field, messages = next(iter(details.items()))
    assert response.json()["message"] == f"Invalid input: {first_field}: {messages[0]}"
    assert EventType.objects.count() == 0


def test_duplicate_property_ids_are_400(contract_api):
    body = {
        "event_type": {"key": "a", "name": "A"},
        "properties": [{"property_id": "p"}, {"property_id": "p", "type": "number"}],
    }

    response = contract_api.post(f"{API}/event-types", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {"properties": ["Duplicate property_id 'p'."]}
    assert EventType.objects.count() == 0


# ---------------------------------------------------------------- list / get


def test_list_is_sorted_by_key_with_total(contract_api):
    b = EventTypeFactory(key="b")
    a = EventTypeFactory(key="a")
    PropertyDefinitionFactory(event_type=a, property_id="p", name="P", value_type="datetime")

    response = contract_api.get(f"{API}/event-types")

    assert response.status_code == 200
    data = response.json()["data"]
    assert [t["event_type_id"] for t in data["event_types"]] == [a.id, b.id]
    assert data["event_types"][0]["properties"] == [
        {"property_id": "p", "name": "P", "type": "datetime", "required": False}
    ]
    assert data["total_items"] == 2


def test_list_pages_sorts_and_filters_by_key(contract_api):
    types = [EventTypeFactory(key=f"k{i}") for i in range(4)]

    page = contract_api.get(
        f"{API}/event-types", {"count": 2, "offset": 1, "sort_direction": "desc"}
    )
    by_key = contract_api.get(f"{API}/event-types", {"key": "k2"})

    assert [t["key"] for t in page.json()["data"]["event_types"]] == ["k2", "k1"]
    assert page.json()["data"]["total_items"] == 4
    assert [t["event_type_id"] for t in by_key.json()["data"]["event_types"]] == [types[2].id]


def test_list_pages_never_repeat_when_names_tie(contract_api):
    ids = [EventTypeFactory(name="Same").id for _ in range(5)]

    seen = []
    for offset in range(0, 5, 2):
        page = contract_api.get(
            f"{API}/event-types", {"sort_field": "name", "count": 2, "offset": offset}
        )
        seen += [t["event_type_id"] for t in page.json()["data"]["event_types"]]

    assert seen == sorted(ids)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"sort_field": "description"}, "Unknown sort_field 'description'."),
        ({"count": "0"}, "Query parameter 'count' must be between 1 and 1000."),
        ({"offset": "-5"}, "Query parameter 'offset' must be at least 0."),
        ({"name": "Purchase"}, "Unknown query parameter(s): name."),
    ],
)
def test_bad_list_parameter_is_400(contract_api, query, message):
    response = contract_api.get(f"{API}/event-types", query)

    assert response.status_code == 400
    assert response.json()["message"] == message


def test_event_type_is_returned_with_properties(contract_api):
    with time_machine.travel(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), tick=False):
        event_type = EventTypeFactory(key="purchase", name="Purchase", description="d")
        PropertyDefinitionFactory(
            event_type=event_type,
            property_id="has_purchase",
            name="Has purchase",
            value_type="boolean",
        )

    response = contract_api.get(f"{API}/event-types/{event_type.id}")

    assert response.json() == {
        "data": {
            "event_type_id": event_type.id,
            "key": "purchase",
            "name": "Purchase",
            "description": "d",
            "properties": [
                {
                    "property_id": "has_purchase",
                    "name": "Has purchase",
                    "type": "boolean",
                    "required": False,
                }
            ],
            "created_at": "2024-01-02T03:04:05Z",
            "updated_at": "2024-01-02T03:04:05Z",
        }
    }


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_unknown_event_type_id_is_404(contract_api, method):
    # A body only where one is read: on a GET the test client sends it as query parameters.
    body = {"event_type": {"name": "x"}} if method == "patch" else None
    response = getattr(contract_api, method)(f"{API}/event-types/nope", body, format="json")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "Event type 'nope' not found.",
        "statusCode": 404,
    }


# ---------------------------------------------------------------- PATCH


def test_patch_changes_only_the_given_fields(contract_api):
    event_type = EventTypeFactory(key="purchase", name="Purchase", description="keep")
    PropertyDefinitionFactory(event_type=event_type, property_id="p")

    response = contract_api.patch(
        f"{API}/event-types/{event_type.id}", {"event_type": {"name": "Order"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["data"]["name"] == "Order"
    event_type.refresh_from_db()
    assert (event_type.key, event_type.name, event_type.description) == (
        "purchase",
        "Order",
        "keep",
    )
    assert [p["property_id"] for p in response.json()["data"]["properties"]] == ["p"]


def test_patch_properties_replaces_the_whole_list(contract_api):
    event_type = EventTypeFactory()
    PropertyDefinitionFactory(event_type=event_type, property_id="kept", value_type="string")
    PropertyDefinitionFactory(event_type=event_type, property_id="dropped")

    response = contract_api.patch(
        f"{API}/event-types/{event_type.id}",
        {
            "properties": [
                {"property_id": "kept", "type": "number", "required": True},
                {"property_id": "added", "type": "boolean"},
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    assert _definitions(event_type.id) == [
        ("added", "", "boolean", False),
        ("kept", "", "number", True),
    ]
    assert [p["property_id"] for p in response.json()["data"]["properties"]] == ["added", "kept"]


def test_patch_with_empty_properties_removes_all_definitions(contract_api):
    event_type = EventTypeFactory()
    PropertyDefinitionFactory(event_type=event_type)

    response = contract_api.patch(
        f"{API}/event-types/{event_type.id}", {"properties": []}, format="json"
    )

    assert response.status_code == 200
    assert _definitions(event_type.id) == []


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"non_field_errors": ["Give `event_type`, `properties` or both."]}),
        ({"event_type": {}}, {"event_type": ["Give at least one field to change."]}),
        ({"event_type": {"nme": "x"}}, {"event_type.nme": ["Unknown field."]}),
        ({"name": "x"}, {"name": ["Unknown field."]}),
        ({"event_type": {"key": None}}, {"event_type.key": ["This field may not be null."]}),
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(contract_api, body, details):
    event_type = EventTypeFactory(key="purchase", name="Purchase")
    PropertyDefinitionFactory(event_type=event_type, property_id="p")

    response = contract_api.patch(f"{API}/event-types/{event_type.id}", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == details
    event_type.refresh_from_db()
    assert (event_type.key, event_type.name) == ("purchase", "Purchase")
    assert [d[0] for d in _definitions(event_type.id)] == ["p"]


def test_patch_to_a_taken_key_is_409_and_keeps_properties(contract_api):
    taken = EventTypeFactory(key="taken")
    event_type = EventTypeFactory(key="mine")
    PropertyDefinitionFactory(event_type=event_type, property_id="p")

    response = contract_api.patch(
        f"{API}/event-types/{event_type.id}",
        {"event_type": {"key": "taken"}, "properties": []},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["message"] == "An event type with key 'taken' already exists."
    assert response.json()["event_type_id"] == taken.id
    assert EventType.objects.get(pk=event_type.id).key == "mine"
    assert [d[0] for d in _definitions(event_type.id)] == ["p"]


# ---------------------------------------------------------------- DELETE


def test_delete_returns_the_deleted_event_type(contract_api):
    event_type = EventTypeFactory(key="gone")
    PropertyDefinitionFactory(event_type=event_type, property_id="p")
    before = contract_api.get(f"{API}/event-types/{event_type.id}").json()

    response = contract_api.delete(f"{API}/event-types/{event_type.id}")

    assert response.status_code == 200
    assert response.json() == before
    assert not EventType.objects.filter(pk=event_type.id).exists()
    assert PropertyDefinition.objects.count() == 0
    assert contract_api.get(f"{API}/event-types/{event_type.id}").status_code == 404


def test_deleting_an_event_type_that_has_events_is_409(contract_api):
    event = EventFactory()

    response = contract_api.delete(f"{API}/event-types/{event.event_type_id}")

    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": f"Event type '{event.event_type_id}' has events and cannot be deleted.",
        "statusCode": 409,
    }
    assert EventType.objects.filter(pk=event.event_type_id).exists()
