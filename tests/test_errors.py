"""One error shape everywhere, the OpenAPI document and the docs page."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml
from django.test import Client
from openapi_core.validation.response.exceptions import InvalidData
from openapi_spec_validator import validate

from customers.models import Customer
from tests.conftest import API
from tests.openapi_contract import assert_matches_openapi

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"error", "message", "statusCode"}


def test_malformed_json_is_400_in_the_error_shape(contract_api):
    response = contract_api.post(
        f"{API}/customers", data='{"customer": {', content_type="application/json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert body["statusCode"] == 400
    assert body["message"].startswith("Malformed JSON body: ")
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "got"), [("[]", "array"), ('"customer"', "str"), ("1", "int"), ("null", "null")]
)
def test_json_that_is_not_an_object_is_400(contract_api, body, got):
    response = contract_api.post(f"{API}/customers", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": f"Invalid input: Expected `object`, got `{got}`",
        "statusCode": 400,
        "details": {"non_field_errors": [f"Expected `object`, got `{got}`"]},
    }


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/events", "text/plain"),
        ("/events", "application/x-www-form-urlencoded"),
        ("/customers", "multipart/form-data; boundary=x"),
        ("/event-types", "application/json; charset=latin-1"),
    ],
)
def test_body_that_is_not_json_is_415(contract_api, path, content_type):
    response = contract_api.post(f"{API}{path}", data="x=1", content_type=content_type)

    assert response.status_code == 415
    assert response.json()["error"] == "Unsupported Media Type"
    assert response.json()["statusCode"] == 415


def test_body_over_the_size_limit_is_413(api, settings):
    # `api`, not `contract_api`: the schema check would itself read the oversized body.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"customer": {"external_id": "1", "attributes": {"x": "y" * 1000}}})

    response = api.post(f"{API}/customers", data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {
        "error": "Request Entity Too Large",
        "message": "Request body is larger than 1000 bytes.",
        "statusCode": 413,
    }
    assert Customer.objects.count() == 0


def test_json_content_type_with_utf8_charset_is_accepted(contract_api):
    response = contract_api.post(
        f"{API}/customers",
        data=json.dumps({"customer": {"external_id": "1"}}),
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/events", "GET, POST, HEAD, OPTIONS"),
        ("delete", "/events/abc", "GET, PATCH, HEAD, OPTIONS"),
        ("post", "/events/abc/property-records", "GET, HEAD, OPTIONS"),
        ("put", "/event-types/abc", "GET, PATCH, DELETE, HEAD, OPTIONS"),
        ("delete", "/customers", "GET, POST, HEAD, OPTIONS"),
        ("patch", "/customers/abc/events", "GET, HEAD, OPTIONS"),
    ],
)
def test_wrong_method_is_405_in_the_error_shape(contract_api, method, path, allowed):
    response = getattr(contract_api, method)(f"{API}{path}", {}, format="json")

    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response.json() == {
        "error": "Method Not Allowed",
        "message": f'Method "{method.upper()}" not allowed.',
        "statusCode": 405,
    }


@pytest.mark.parametrize("path", ["/nope", "/events/", "/events/abc/nope", "/customers/a/b/c", ""])
def test_unknown_api_path_is_json_404_never_html(contract_api, path):
    response = contract_api.get(f"{API}{path}")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "Not Found",
        "message": f"No endpoint at {API}{path}.",
        "statusCode": 404,
    }


def test_unknown_api_path_without_credentials_is_still_json():
    response = Client().post(f"{API}/nothing-here", data="<xml/>", content_type="text/xml")

    assert response.status_code == 404
    assert set(response.json()) == ERROR_KEYS


def test_served_schema_is_valid_openapi_3():
    response = Client().get(f"{API}/schema/")

    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    validate(document)
    assert document["openapi"].startswith("3.0")
    assert set(document["components"]["securitySchemes"]) == {"apiKeyBasic", "apiKeyBearer"}


def test_schema_generation_has_no_warnings():
    """drf-spectacular warnings (name collisions, views it cannot read) mean a wrong schema."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)


def test_served_schema_documents_every_endpoint_of_this_api():
    document = yaml.safe_load(Client().get(f"{API}/schema/", {"format": "json"}).content)
    operations = {
        (path.removeprefix(API), method)
        for path, item in document["paths"].items()
        for method in item
        if path.startswith(API)
    }

    assert {
        ("/events", "get"),
        ("/events", "post"),
        ("/events/{event_id}", "get"),
        ("/events/{event_id}/property-records", "get"),
        ("/event-types", "get"),
        ("/event-types", "post"),
        ("/event-types/{event_type_id}", "get"),
        ("/event-types/{event_type_id}", "patch"),
        ("/event-types/{event_type_id}", "delete"),
        ("/customers", "get"),
        ("/customers", "post"),
        ("/customers/{customer_id}", "get"),
        ("/customers/{customer_id}", "patch"),
        ("/customers/{customer_id}", "delete"),
        ("/customers/{customer_id}/events", "get"),
    } <= operations
    for path, method in operations:
        responses = document["paths"][API + path][method]["responses"]
        assert {"401", "403"} <= set(responses), (path, method)


def test_response_checker_rejects_a_body_the_schema_does_not_describe(contract_api):
    # The contract check itself must be able to fail: a list without
    # `total_items` is not what the document promises.
    response = contract_api.get(f"{API}/customers")
    response.content = json.dumps({"data": {"customers": []}}).encode()

    with pytest.raises(InvalidData):
        assert_matches_openapi(response)


def test_docs_page_loads_only_local_static_assets():
    page = Client().get(f"{API}/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4
    assert not re.search(r"https?://|//cdn|unpkg|jsdelivr", html)
    for asset in assets:
        # The Swagger UI's settings script is the docs page's own (the split view keeps
        # inline scripts out of the page for the Content-Security-Policy).
        assert asset.startswith(("/static/", f"{API}/docs/?")), asset
        served = Client().get(asset)
        assert served.status_code == 200, asset
