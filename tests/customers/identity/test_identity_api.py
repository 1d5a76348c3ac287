"""The identity API: identify, merge (and dry run), merge records and undo, checked
against the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from customers.identity.models import CustomerMerge
from customers.models import Customer, CustomerAlias
from tests.conftest import API
from tests.customers.identity.support import event_for, own_events
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def _post(api: APIClient, path: str, body: Any = None) -> Any:
    return api.post(f"{API}/{path}", body, format="json")


def test_merge_answers_the_primary_and_the_merge_id(contract_api: APIClient):
    primary = CustomerFactory(external_id="p")
    secondary = CustomerFactory(external_id=None, anonymous_id="a")
    event_for(secondary, EventTypeFactory())

    response = _post(
        contract_api, "customers/merge", {"primary": primary.pk, "secondary": secondary.pk}
    )

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["customer"]["customer_id"] == primary.pk
    assert data["merge"]["moved"] == {"events": 1}
    merge_id = data["merge_id"]
    shown = contract_api.get(f"{API}/customers/merges/{merge_id}")
    assert shown.status_code == 200
    assert shown.json()["data"]["secondary_customer_id"] == secondary.pk
    listed = contract_api.get(f"{API}/customers/merges", {"customer_id": secondary.pk})
    assert [m["merge_id"] for m in listed.json()["data"]["merges"]] == [merge_id]


def test_dry_run_answers_the_preview_and_writes_nothing(contract_api: APIClient):
    primary = CustomerFactory(external_id=None)
    secondary = CustomerFactory(attributes={"country": "SK"})
    event_for(secondary, EventTypeFactory())

    response = _post(
        contract_api,
        "customers/merge",
        {"primary": primary.pk, "secondary": secondary.pk, "dry_run": True},
    )

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["dry_run"] is True
    assert data["moved"] == {"events": 1}
    assert data["attribute_conflicts"] == {"country": {"primary": "CZ", "secondary": "SK"}}
    assert Customer.objects.count() == 2
    assert set(own_events().values_list("customer_id", flat=True)) == {secondary.pk}
    assert CustomerMerge.objects.count() == 0


def test_merging_two_identified_customers_is_409_naming_both(contract_api: APIClient):
    primary, secondary = CustomerFactory(external_id="u1"), CustomerFactory(external_id="u2")

    response = _post(
        contract_api, "customers/merge", {"primary": primary.pk, "secondary": secondary.pk}
    )

    assert response.status_code == 409
    body = response.json()
    assert "u1" in body["message"]
    assert "u2" in body["message"]
    assert Customer.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"primary": "same", "secondary": "same"}, 400),
        ({"primary": "0" * 26, "secondary": "1" * 26}, 404),
        ({"primary": "a\u0000", "secondary": "b"}, 400),
        ({"primary": "a", "secondary": "b", "dry_run": "yes"}, 400),
        ({"primary": "a", "secondary": "b", "extra": 1}, 400),
        ({"primary": "a"}, 400),
    ],
)
def test_bad_merge_requests_answer_in_the_error_shape(
    contract_api: APIClient, body: dict[str, Any], status: int
):
    response = _post(contract_api, "customers/merge", body)

    assert response.status_code == status
    assert set(response.json()) >= {"error", "message", "statusCode"}
    assert CustomerMerge.objects.count() == 0


def test_undo_answers_the_record_and_a_second_undo_is_409(contract_api: APIClient):
    primary = CustomerFactory()
    secondary = CustomerFactory(external_id=None, anonymous_id="a")
    merged = _post(
        contract_api, "customers/merge", {"primary": primary.pk, "secondary": secondary.pk}
    )
    merge_id = merged.json()["data"]["merge_id"]

    undone = _post(contract_api, f"customers/merges/{merge_id}/undo")
    again = _post(contract_api, f"customers/merges/{merge_id}/undo")

    assert undone.status_code == 200
    assert undone.json()["data"]["status"] == "undone"
    assert again.status_code == 409
    assert Customer.objects.filter(pk=secondary.pk, anonymous_id="a").exists()
    assert contract_api.get(f"{API}/customers/merges/nope").status_code == 404


def test_identify_turns_the_anonymous_customer_into_the_new_external_id(contract_api: APIClient):
    anonymous = CustomerFactory(external_id=None, anonymous_id="visitor-1", attributes={})
    body = {"anonymous_id": "visitor-1", "external_id": "u-1", "attributes": {"plan": "pro"}}

    first = _post(contract_api, "customers/identify", body)
    again = _post(contract_api, "customers/identify", body)

    assert first.status_code == 200, first.json()
    assert first.json()["data"]["merge_id"] is None
    assert first.json()["data"]["customer"]["customer_id"] == anonymous.pk
    anonymous.refresh_from_db()
    assert (anonymous.external_id, anonymous.attributes) == ("u-1", {"plan": "pro"})
    assert again.json() == first.json()


def test_identify_merges_the_anonymous_customer_into_the_known_one(contract_api: APIClient):
    known = CustomerFactory(external_id="u-1")
    anonymous = CustomerFactory(external_id=None, anonymous_id="visitor-1")
    event_for(anonymous, EventTypeFactory())
    body = {"anonymous_id": "visitor-1", "external_id": "u-1"}

    first = _post(contract_api, "customers/identify", body)
    again = _post(contract_api, "customers/identify", body)

    assert first.status_code == 200, first.json()
    assert first.json()["data"]["customer"]["customer_id"] == known.pk
    assert first.json()["data"]["merge_id"] == CustomerMerge.objects.get().pk
    assert not Customer.objects.filter(pk=anonymous.pk).exists()
    assert own_events().get().customer_id == known.pk
    assert CustomerAlias.objects.filter(customer=known, value="visitor-1").exists()
    assert again.status_code == 200
    assert again.json()["data"]["merge_id"] is None
    assert CustomerMerge.objects.count() == 1


def test_identify_with_no_customer_creates_the_identified_one(contract_api: APIClient):
    response = _post(contract_api, "customers/identify", {"anonymous_id": "v", "external_id": "u"})

    assert response.status_code == 200
    customer = Customer.objects.get()
    assert (customer.external_id, customer.anonymous_id) == ("u", "v")


def test_identify_of_an_anonymous_id_identified_as_someone_else_is_409(contract_api: APIClient):
    CustomerFactory(external_id="u-1", anonymous_id="v")

    response = _post(
        contract_api, "customers/identify", {"anonymous_id": "v", "external_id": "u-2"}
    )

    assert response.status_code == 409
    assert Customer.objects.get().external_id == "u-1"
