"""Single and batch ingestion: the reference read and the insert (ORM path on SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from customers.models import Customer, CustomerAlias, SuppressedIdentifier
from customers.privacy.hashing import identifier_digest
from events_app.models import Event, PropertyRecord
from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db


def batch(api: APIClient, items: list[dict[str, Any]]) -> dict[str, Any]:
    return ok(post(api, "/events/batch", {"events": items}))


def test_single_event_is_stored_with_its_records_and_a_new_customer(api, purchase):
    data = ok(post(api, "/events", purchase_item("alice", ref="order-1", amount=12.5)), 201)

    event = ok(get(api, f"/events/{data['event_id']}"))
    records = ok(get(api, f"/events/{data['event_id']}/property-records"))
    customer = Customer.objects.get(external_id="alice")
    assert (event["event_type_id"], event["customer_id"], event["external_id"]) == (
        purchase,
        customer.pk,
        "order-1",
    )
    assert (event["status"], event["is_delivered"]) == ("pending", True)
    assert records == {
        "property_records": [
            {"event_id": data["event_id"], "property_id": "amount", "property_value": "12.5"}
        ],
        "total_items": 1,
    }


def test_single_event_by_ids_finds_the_stored_type_and_customer(api, purchase):
    first = ok(post(api, "/events", purchase_item("alice")), 201)["event_id"]
    customer_id = Event.objects.get(pk=first).customer_id
    body = {
        "event": {"event_type_id": purchase, "customer_id": customer_id},
        "property_records": [{"property_id": "amount", "property_value": "3"}],
    }

    second = ok(post(api, "/events", body), 201)["event_id"]

    assert Event.objects.get(pk=second).customer_id == customer_id
    assert Customer.objects.count() == 1


def test_invalid_single_event_is_400_and_stores_nothing(api, purchase):
    body = {"event": {"event_type": "purchase", "customer_external_id": "alice"}}

    response = post(api, "/events", body)

    assert response.status_code == 400
    assert response.json()["details"] == {
        "property_records": ["Required property 'amount' is missing."]
    }
    assert (Event.objects.count(), Customer.objects.count()) == (0, 0)


def test_unknown_event_type_is_400_and_stores_nothing(api, purchase):
    response = post(api, "/events", {"event": {"event_type": "refund", "customer_id": "nope"}})

    assert response.status_code == 400
    assert Event.objects.count() == 0


def test_single_event_with_a_stored_ref_is_409_naming_the_stored_event(api, purchase):
    stored = ok(post(api, "/events", purchase_item("alice", ref="order-1")), 201)["event_id"]

    response = post(api, "/events", purchase_item("bob", ref="order-1"))

    assert response.status_code == 409
    assert (response.json()["message"], response.json()["event_id"]) == (
        "Event ref already exists.",
        stored,
    )
    assert Event.objects.count() == 1


def test_batch_stores_valid_events_and_reports_invalid_and_duplicate_ones(api, purchase):
    stored = ok(post(api, "/events", purchase_item("alice", ref="old")), 201)["event_id"]

    data = batch(
        api,
        [
            purchase_item("alice", ref="new-1", amount=1),
            purchase_item("bob", ref="old"),  # stored already
            purchase_item("carol", amount="lots"),  # not a number
            purchase_item("bob", ref="new-1"),  # repeats index 0 in this batch
            purchase_item("bob", amount=2),  # no ref: never a duplicate
            purchase_item("bob", amount=2),
        ],
    )

    valid = data["valid_events"]
    assert [v["index"] for v in valid] == [0, 4, 5]
    invalid = {i["index"]: (i["error"], i.get("event_id")) for i in data["invalid_events"]}
    assert invalid == {
        1: ("Event ref already exists.", stored),
        2: (
            "property_records[0].property_value: Property 'amount' must be a number, got 'lots'.",
            None,
        ),
        3: ("Event ref already exists.", valid[0]["event_id"]),
    }
    assert Event.objects.count() == 4
    assert PropertyRecord.objects.count() == 4
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["alice", "bob"]
    assert list(Event.objects.filter(external_id="new-1").values_list("customer__external_id")) == [
        ("alice",)
    ]


def test_replayed_batch_stores_nothing_and_names_every_stored_event(api, purchase):
    items = [purchase_item("alice", ref=f"r{n}") for n in range(3)]
    first = batch(api, items)

    replay = batch(api, items)

    assert replay["valid_events"] == []
    assert [(i["index"], i["event_id"]) for i in replay["invalid_events"]] == [
        (v["index"], v["event_id"]) for v in first["valid_events"]
    ]
    assert Event.objects.count() == 3


def test_batch_mixes_types_and_customers_by_id_and_by_key(api, purchase):
    login = ok(post(api, "/event-types", {"event_type": {"key": "login", "name": "Login"}}), 201)
    alice = ok(post(api, "/customers", {"customer": {"external_id": "alice"}}), 201)["customer_id"]
    items = [
        {"event": {"event_type_id": login["event_type_id"], "customer_id": alice}},
        {"event": {"event_type": "login", "customer_external_id": "bob"}},
        purchase_item("alice", ref="same"),
        {"event": {"event_type": "login", "customer_external_id": "alice", "external_id": "same"}},
        {"event": {"event_type": "login", "customer_id": "0" * 26}},
    ]

    data = batch(api, items)

    assert [v["index"] for v in data["valid_events"]] == [0, 1, 2, 3]
    assert [(i["index"], i["error"]) for i in data["invalid_events"]] == [
        (4, f"event.customer_id: Unknown customer '{'0' * 26}'.")
    ]
    assert Event.objects.filter(customer_id=alice).count() == 3


def test_refused_events_create_no_customer_and_stored_ones_do(api, purchase):
    ok(post(api, "/events", purchase_item("alice", ref="taken")), 201)
    before = (Customer.objects.count(), Event.objects.count())

    conflict = post(api, "/events", purchase_item("bob", ref="taken"))
    invalid = post(api, "/events", purchase_item("carol", amount="lots"))
    data = batch(
        api,
        [
            purchase_item("dave", ref="taken"),  # stored already
            purchase_item("erin", amount="lots"),  # not a number
            purchase_item("frank", ref="fresh"),
            purchase_item("frank", ref="fresh"),  # repeats index 2
        ],
    )

    assert (conflict.status_code, invalid.status_code) == (409, 400)
    assert [v["index"] for v in data["valid_events"]] == [2]
    assert [i["index"] for i in data["invalid_events"]] == [0, 1, 3]
    assert (Customer.objects.count(), Event.objects.count()) == (before[0] + 1, before[1] + 1)
    assert sorted(Customer.objects.values_list("external_id", flat=True)) == ["alice", "frank"]
    assert data["valid_events"][0]["customer_id"] == Customer.objects.get(external_id="frank").pk


def test_anonymous_ids_aliases_and_suppressed_ids_resolve_in_the_one_reference_read(api, purchase):
    alice = Customer.objects.create(external_id="alice")
    CustomerAlias.objects.create(customer=alice, kind="external", value="alice-crm")
    SuppressedIdentifier.objects.create(
        kind="anonymous_id", digest=identifier_digest("anonymous_id", "gone")
    )

    first = ok(
        post(api, "/events", purchase_item(customer_external_id=None, anonymous_id="v-1")), 201
    )
    data = batch(
        api,
        [
            purchase_item(customer_external_id=None, anonymous_id="v-1", ref="o-2"),
            purchase_item("alice-crm", ref="o-3"),
            purchase_item(customer_external_id=None, anonymous_id="gone", ref="o-4"),
        ],
    )
    refused = post(api, "/events", purchase_item(customer_external_id=None, anonymous_id="gone"))

    anonymous = Customer.objects.get(anonymous_id="v-1")
    assert anonymous.external_id is None
    assert Event.objects.get(pk=first["event_id"]).customer_id == anonymous.pk
    assert [(e["index"], e["customer_id"]) for e in data["valid_events"]] == [
        (0, anonymous.pk),
        (1, alice.pk),
    ]
    assert [(i["index"], i["error"]) for i in data["invalid_events"]] == [
        (2, "customer is suppressed")
    ]
    assert (refused.status_code, refused.json()["message"]) == (403, "customer is suppressed")
    assert (Customer.objects.count(), Event.objects.count()) == (2, 3)
