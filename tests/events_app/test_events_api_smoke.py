from __future__ import annotations

import pytest

from events_app.models import Event
from tests.conftest import API
from tests.factories import EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db


def test_created_event_can_be_listed_and_fetched(api):
    event_type = EventTypeFactory(key="purchase")
    PropertyDefinitionFactory(
        event_type=event_type, property_id="has_purchase", value_type="boolean"
    )

    created = api.post(
        f"{API}/events",
        {
            "event": {
                "event_type_id": event_type.id,
                "customer_external_id": "157613",
                "external_id": "aaabbbccc",
            },
            "property_records": [{"property_id": "has_purchase", "property_value": "true"}],
        },
        format="json",
    )

    assert created.status_code == 201, created.json()
    event_id = created.json()["data"]["event_id"]
    listed = api.get(f"{API}/events", {"event_type_id": event_type.id}).json()["data"]
    assert listed["total_items"] == 1
    assert listed["events"][0]["event_id"] == event_id
    assert api.get(f"{API}/events/{event_id}").json()["data"]["external_id"] == "aaabbbccc"
    records = api.get(f"{API}/events/{event_id}/property-records").json()["data"]
    assert records == {
        "property_records": [
            {"event_id": event_id, "property_id": "has_purchase", "property_value": "true"}
        ],
        "total_items": 1,
    }
    assert Event.objects.count() == 1
