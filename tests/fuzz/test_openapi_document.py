"""The OpenAPI document tells the truth the fuzzer (scripts/fuzz) checks answers against:
ranges, required bodies, refused extra keys, non-empty filters, every status code."""

from __future__ import annotations

from typing import Any

import pytest

from customers.models import Customer
from project.api.schema import MAX_OFFSET
from tests.conftest import API
from tests.factories import CustomerFactory
from tests.openapi_contract import served_schema

pytestmark = pytest.mark.django_db


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in served_schema()["paths"].items()
        for method, operation in methods.items()
    ]


def parameter(path: str, method: str, name: str) -> dict[str, Any]:
    found = [p for p in served_schema()["paths"][path][method]["parameters"] if p["name"] == name]
    assert len(found) == 1
    return found[0]


def test_every_operation_documents_the_answers_any_request_can_get() -> None:
    for path, method, operation in operations():
        assert {"400", "401", "403", "429", "503"} <= set(operation["responses"]), (method, path)


def test_every_operation_with_a_path_id_documents_404_and_a_non_empty_id() -> None:
    for path, method, operation in operations():
        ids = [p for p in operation.get("parameters", []) if p["in"] == "path"]
        if ids:
            assert "404" in operation["responses"], (method, path)
            assert all(p["schema"]["minLength"] == 1 for p in ids), (method, path)


def test_every_body_is_required_json_and_documents_413_and_415() -> None:
    bodies = [(p, m, o) for p, m, o in operations() if "requestBody" in o]
    # With POST /segments, PATCH /segments/{id}, POST /segments/preview and
    # POST /segments/{id}/broadcast; POST, PATCH and PUT /delivery-policies; POST
    # /privacy-requests; POST /customers/identify and POST /customers/merge; POST
    # /workflows/simulate and POST /workflows/{id}/backfill.
    assert len(bodies) == 26
    for path, method, operation in bodies:
        assert operation["requestBody"]["required"] is True, (method, path)
        assert list(operation["requestBody"]["content"]) == ["application/json"], (method, path)
        assert {"400", "413", "415"} <= set(operation["responses"]), (method, path)


def test_every_request_body_refuses_keys_it_does_not_declare() -> None:
    schemas = served_schema()["components"]["schemas"]
    for path, method, operation in operations():
        if "requestBody" not in operation:
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        component = schemas[ref.rsplit("/", 1)[1]]
        assert component["additionalProperties"] is False, (method, path)


def test_paging_parameters_declare_their_ranges() -> None:
    count = parameter(f"{API}/customers", "get", "count")["schema"]
    limit = parameter(f"{API}/schedules", "get", "limit")["schema"]
    offset = parameter(f"{API}/events", "get", "offset")["schema"]

    assert count == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert limit == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert offset == {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/customers", "email"),
        ("/customers", "created_after"),
        ("/events", "external_id"),
        ("/events", "status"),
        ("/event-types", "key"),
        ("/deliveries", "webhook_id"),
        ("/schedules", "tags"),
        ("/workflows", "active"),
    ],
)
def test_a_filter_declared_non_empty_refuses_an_empty_value(api: Any, path: str, name: str) -> None:
    schema = parameter(f"{API}{path}", "get", name)["schema"]
    assert schema.get("minLength") == 1 or schema["type"] == "boolean" or "enum" in schema

    response = api.get(f"{API}{path}?{name}=")

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == f"Empty query parameter(s): {name}."
    assert body["details"] == {name: ["May not be empty."]}


def test_an_empty_filter_among_valid_ones_is_refused_and_nothing_is_listed(api: Any) -> None:
    CustomerFactory(email="a@example.com")

    response = api.get(f"{API}/customers?email=a@example.com&external_id=&count=")

    assert response.status_code == 400
    assert response.json()["details"] == {"external_id": ["May not be empty."]}
    assert Customer.objects.count() == 1


def test_empty_paging_values_still_mean_the_default(api: Any) -> None:
    CustomerFactory()

    response = api.get(f"{API}/customers?count=&offset=&sort_field=&sort_direction=")

    assert response.status_code == 200
    assert response.json()["data"]["total_items"] == 1


def test_every_schema_extension_is_resolved_before_the_first_request() -> None:
    # Resolved lazily, two threads generating the first document at once race and one
    # answers 500: start-up resolves them all (project.api.schema.schema_extensions_load).
    from drf_spectacular.plumbing import OpenApiGeneratorExtension

    kinds = OpenApiGeneratorExtension.__subclasses__()
    extensions = [e for kind in kinds for e in kind._registry]
    assert extensions
    assert [e.__name__ for e in extensions if isinstance(e.target_class, str)] == []
