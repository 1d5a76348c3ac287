"""The segments API: the envelope, 409 on a second key, lists with member counts,
members, a customer's segments with history, preview, and refusals that write nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.segments.models import Segment, SegmentMembership
from customers.models import Customer
from events_app.models import Event, EventType
from project.audit.models import AuditEntry
from tests.conftest import API

pytestmark = pytest.mark.django_db

URL = f"{API}/segments"
BUYERS = {"count": {"event_type": "purchase"}, "op": "gte", "value": 1}


def body(key: str = "buyers", condition: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "segment": {
            "key": key,
            "name": key.title(),
            "description": "Bought at least once.",
            "condition": BUYERS if condition is None else condition,
        }
    }


def create(
    api: APIClient, capture: Any, key: str = "buyers", condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    with capture(execute=True):
        response = api.post(URL, body(key, condition), format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json()["data"])


def test_create_answers_201_then_the_built_segment_by_id_and_by_key(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ingest(customer="alice", background=False)
    created = create(contract_api, django_capture_on_commit_callbacks)
    assert created["key"] == "buyers"
    assert created["status"] == "building"  # answered before the build ran
    by_id = contract_api.get(f"{URL}/{created['segment_id']}").json()["data"]
    by_key = contract_api.get(f"{URL}/buyers").json()["data"]
    assert by_id == by_key
    assert {
        k: by_id[k] for k in ("segment_id", "key", "name", "condition", "status", "member_count")
    } == {
        "segment_id": created["segment_id"],
        "key": "buyers",
        "name": "Buyers",
        "condition": BUYERS,
        "status": "ready",
        "member_count": 1,
    }


def test_a_second_key_is_a_409_naming_the_existing_segment(
    contract_api: APIClient, purchase: EventType, django_capture_on_commit_callbacks: Any
) -> None:
    first = create(contract_api, django_capture_on_commit_callbacks)
    response = contract_api.post(URL, body(), format="json")
    assert response.status_code == 409
    assert response.json()["segment_id"] == first["segment_id"]
    assert Segment.objects.count() == 1


def test_list_pages_and_sorts_with_member_counts(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ingest(customer="alice", background=False)
    ingest(customer="bob", background=False)
    create(contract_api, django_capture_on_commit_callbacks, "buyers")
    create(contract_api, django_capture_on_commit_callbacks, "everyone", {})
    create(
        contract_api,
        django_capture_on_commit_callbacks,
        "big",
        {"count": {"event_type": "purchase"}, "op": "gte", "value": 5},
    )
    response = contract_api.get(URL, {"sort_field": "key", "sort_direction": "ASC", "count": 2})
    data = response.json()["data"]
    assert data["total_items"] == 3
    assert [(s["key"], s["member_count"]) for s in data["segments"]] == [("big", 0), ("buyers", 2)]
    page2 = contract_api.get(URL, {"sort_field": "key", "sort_direction": "ASC", "offset": 2})
    assert [(s["key"], s["member_count"]) for s in page2.json()["data"]["segments"]] == [
        ("everyone", 2)
    ]


def test_members_list_is_exact_with_customer_fields(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    segment = create(contract_api, django_capture_on_commit_callbacks)
    ingest(customer="alice")
    ingest(customer="bob")
    Customer.objects.filter(external_id="bob").update(email="bob@example.com")
    response = contract_api.get(
        f"{URL}/{segment['segment_id']}/members",
        {"sort_field": "customer_id", "sort_direction": "ASC"},
    )
    data = response.json()["data"]
    bob = Customer.objects.get(external_id="bob")
    alice = Customer.objects.get(external_id="alice")
    assert data["total_items"] == 2
    assert [(m["customer_id"], m["external_id"], m["email"]) for m in data["members"]] == sorted(
        [(alice.pk, "alice", ""), (bob.pk, "bob", "bob@example.com")]
    )
    assert all(m["entered_at"] for m in data["members"])


def test_customer_segments_show_current_and_with_history_past_stays(
    contract_api: APIClient, db: None, django_capture_on_commit_callbacks: Any
) -> None:
    create(
        contract_api,
        django_capture_on_commit_callbacks,
        "vip",
        {"customer": "tags", "op": "contains", "value": "vip"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        customer_id = contract_api.post(
            f"{API}/customers", {"customer": {"external_id": "zoe", "tags": ["vip"]}}, format="json"
        ).json()["data"]["customer_id"]
    url = f"{API}/customers/{customer_id}/segments"
    now = contract_api.get(url).json()["data"]
    assert [(s["key"], s["exited_at"]) for s in now["segments"]] == [("vip", None)]
    with django_capture_on_commit_callbacks(execute=True):
        response = contract_api.patch(
            f"{API}/customers/{customer_id}", {"customer": {"tags": []}}, format="json"
        )
        assert response.status_code == 200, response.json()
    assert contract_api.get(url).json()["data"] == {"segments": [], "total_items": 0}
    history = contract_api.get(url, {"history": "true"}).json()["data"]
    assert history["total_items"] == 1
    assert history["segments"][0]["key"] == "vip"
    assert history["segments"][0]["exited_at"] is not None
    assert contract_api.get(url, {"history": "maybe"}).status_code == 400


def test_patch_with_a_new_condition_rebuilds_in_the_background(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    segment = create(contract_api, django_capture_on_commit_callbacks)
    ingest(customer="alice")
    url = f"{URL}/{segment['segment_id']}"
    new = {"count": {"event_type": "purchase"}, "op": "gte", "value": 2}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = contract_api.patch(url, {"segment": {"condition": new}}, format="json")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "building"
    assert response.json()["data"]["version"] == 2
    for callback in callbacks:
        callback()
    data = contract_api.get(url).json()["data"]
    assert (data["status"], data["member_count"], data["condition"]) == ("ready", 0, new)
    # A rename alone keeps the membership and does not rebuild.
    renamed = contract_api.patch(url, {"segment": {"name": "Loyal"}}, format="json").json()["data"]
    assert (renamed["name"], renamed["status"], renamed["version"]) == ("Loyal", "ready", 2)


def test_delete_removes_the_segment_and_its_history_unless_another_reads_it(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    buyers = create(contract_api, django_capture_on_commit_callbacks)
    reader = create(
        contract_api, django_capture_on_commit_callbacks, "reader", {"segment": "buyers"}
    )
    ingest(customer="alice")
    refused = contract_api.delete(f"{URL}/buyers")
    assert refused.status_code == 409
    assert refused.json()["segments"] == ["reader"]
    assert contract_api.delete(f"{URL}/{reader['segment_id']}").status_code == 200
    response = contract_api.delete(f"{URL}/{buyers['segment_id']}")
    assert response.status_code == 200
    assert response.json()["data"]["key"] == "buyers"
    assert not Segment.objects.exists()
    assert not SegmentMembership.objects.exists()
    assert contract_api.get(f"{URL}/buyers").status_code == 404


def test_preview_counts_samples_and_explains_without_storing(
    contract_api: APIClient,
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ingest(customer="alice", records={"amount": "700"}, background=False)
    ingest(customer="bob", records={"amount": "20"}, background=False)
    bob = Customer.objects.get(external_id="bob")
    condition = {
        "aggregate": {"event_type": "purchase", "property": "amount", "fn": "sum"},
        "op": "gte",
        "value": 500,
    }
    before = (
        Segment.objects.count(),
        SegmentMembership.objects.count(),
        AuditEntry.objects.count(),
    )
    response = contract_api.post(
        f"{URL}/preview", {"condition": condition, "customer_id": bob.pk}, format="json"
    )
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["member_count"] == 1
    assert [c["external_id"] for c in data["sample"]] == ["alice"]
    assert data["explanation"]["matched"] is False
    assert data["explanation"]["leaves"] == [
        {
            "path": "condition",
            "aggregate": condition["aggregate"],
            "op": "gte",
            "expected": 500,
            "actual": 20,
            "missing": False,
            "matched": False,
        }
    ]
    assert (
        Segment.objects.count(),
        SegmentMembership.objects.count(),
        AuditEntry.objects.count(),
    ) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(condition={"count": {"event_type": "purchase"}, "op": "gte"}), "condition.value"),
        (body(condition={"property": "amount", "op": "eq", "value": 1}), "condition"),
        (body(key="no spaces"), None),
        ({"segment": {"key": "x", "name": "X", "condition": {}, "extra": 1}}, None),
        ({"segment": {"key": "x", "name": "X", "condition": []}}, None),
        (body(condition={"all": [{"segment": "x"}] * 3}), "condition.all[0].segment"),
    ],
)
def test_hostile_input_is_a_400_and_writes_nothing(
    contract_api: APIClient, purchase: EventType, payload: dict[str, Any], field: str | None
) -> None:
    before = (Segment.objects.count(), AuditEntry.objects.count())
    response = contract_api.post(URL, payload, format="json")
    assert response.status_code == 400, response.json()
    if field is not None:
        assert field in response.json()["details"]
    assert (Segment.objects.count(), AuditEntry.objects.count()) == before


def test_a_read_key_cannot_write(make_api: Callable[..., APIClient], purchase: EventType) -> None:
    reader = make_api("read")
    assert reader.post(URL, body(), format="json").status_code == 403
    assert reader.post(f"{URL}/preview", {"condition": {}}, format="json").status_code == 403
    assert reader.get(URL).status_code == 200
    assert not Segment.objects.exists()
