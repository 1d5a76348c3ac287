"""Query parameters: every API route rejects the ones it does not take, with a 400.

The routes are read from the URLconf, so a new route is checked without
touching this file (a new kind of path id needs an object in `world`, a new
route with a body a valid body in `BODIES`). Each request addresses rows that
exist and carries a valid body, so it would change something if the unknown
parameter were ignored; `test_the_same_request_without_it_succeeds` proves it.
The accepted parameters are read from the served OpenAPI document, so the
check and the documentation cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.segments.models import Segment
from customers.models import Customer
from customers.privacy.services import privacy_request_run
from events_app.models import ApiClient
from project.api.strict import StrictAPIView
from tests.conftest import API
from tests.openapi_contract import served_schema

pytestmark = pytest.mark.django_db

API_PREFIX = API.lstrip("/") + "/"
# The OpenAPI document and Swagger UI: drf-spectacular's views, with their own parameters.
DOCUMENTATION_ROUTES = {"api-schema", "api-docs"}
METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC_URL = "https://93.184.215.14/hook"  # passes the outbound guard; nothing is sent


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def api_routes() -> list[tuple[str, URLPattern]]:
    return [
        (route, pattern)
        for route, pattern in _walk(get_resolver().url_patterns)
        if route.startswith(API_PREFIX) and pattern.name not in DOCUMENTATION_ROUTES
    ]


def openapi_path(route: str) -> str:
    """`rest-api/…/events/<str:event_id>` → `/rest-api/…/events/{event_id}`."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def api_operations() -> list[Any]:
    return [
        pytest.param(route, method, id=f"{method.upper()} {openapi_path(route).removeprefix(API)}")
        for route, pattern in api_routes()
        for method in METHODS
        if hasattr(pattern.callback.view_class, method)  # type: ignore[attr-defined]
    ]


def documented_query_params(route: str, method: str) -> list[dict[str, Any]]:
    operation = served_schema()["paths"][openapi_path(route)][method]
    return [p for p in operation.get("parameters", []) if p["in"] == "query"]


# A value each documented parameter accepts (the schema gives the rest: enum, type).
SAMPLE_VALUES = {
    "sort_field": "",  # the endpoint's default
    "interval": "*/5 * * * *",
    "timezone": "Europe/Paris",
    "query": '{"tags": ["prod"]}',
}


def sample_value(parameter: dict[str, Any]) -> str:
    schema = parameter["schema"]
    if parameter["name"] in SAMPLE_VALUES:
        return SAMPLE_VALUES[parameter["name"]]
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    return {"integer": "1", "boolean": "true"}.get(schema["type"], "x")


def sample_query(route: str, method: str, *, only_required: bool) -> dict[str, str]:
    return {
        p["name"]: sample_value(p)
        for p in documented_query_params(route, method)
        if p.get("required") or not only_required
    }


def every_row() -> dict[str, list[dict[str, Any]]]:
    """Every row Herald stores, API keys aside (authenticating records when a key was used)."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for label in ("events_app", "customers", "automation")
        for model in apps.get_app_config(label).get_models()
        if model is not ApiClient
    }


# ---------------------------------------------------------------- one of everything


def _created(response: Any, key: str) -> str:
    assert response.status_code == 201, response.json()
    return str(response.json()["data"][key])


def _schedule_body(**fields: Any) -> dict[str, Any]:
    end = (timezone.now() + timedelta(days=30)).isoformat()
    schedule = {"owner": "o@example.com", "end_date": end, "interval": "*/5 * * * *"}
    return {"schedule": {**schedule, "callback_url": PUBLIC_URL, "tags": ["prod"], **fields}}


WORKFLOW = {
    "workflow": {
        "name": "Big spenders",
        "trigger_event_types": ["purchase"],
        "conditions": {"all": [{"property": "amount", "op": "gte", "value": 100}]},
        "actions": [{"type": "add_tags", "tags": ["big"]}],
    }
}


def _event(ref: str) -> dict[str, Any]:
    return {
        "event": {"event_type": "purchase", "customer_external_id": "alice", "external_id": ref},
        "property_records": [{"property_id": "amount", "property_value": 120}],
    }


# A valid body for each route and method that reads one.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("events", "post"): _event("new"),
    ("events-batch", "post"): {"events": [_event("batch")]},
    ("event-detail", "patch"): {"status": "completed"},
    ("event-types", "post"): {"event_type": {"key": "signup", "name": "Signup"}},
    ("event-type-detail", "patch"): {"event_type": {"name": "Renamed"}},
    ("customers", "post"): {"customer": {"external_id": "bob"}},
    ("customer-detail", "patch"): {"customer": {"email": "a@example.com"}},
    ("webhooks", "post"): {"webhook": {"url": PUBLIC_URL}},
    ("webhook-detail", "patch"): {"webhook": {"description": "changed"}},
    ("schedules", "post"): _schedule_body(),
    ("schedule-detail", "patch"): {"schedule": {"tags": ["changed"]}},
    ("workflows", "post"): WORKFLOW,
    ("workflow-detail", "patch"): {"workflow": {**WORKFLOW["workflow"], "name": "Renamed"}},
    ("segments", "post"): {"segment": {"key": "new_segment", "name": "New", "condition": {}}},
    ("segment-detail", "patch"): {"segment": {"name": "Renamed"}},
    ("segments-preview", "post"): {"condition": {}},
    ("delivery-policies", "post"): {"policy": {"key": "new_policy"}},
    ("delivery-policy-detail", "patch"): {"policy": {"on_blocked": "defer"}},
    ("delivery-policy-detail", "put"): {"policy": {"key": "default"}},
    ("privacy-requests", "post"): {"type": "export", "customer": {"external_id": "bob"}},
}


@dataclass
class World:
    api: APIClient
    ids: dict[str, str]
    paused_schedule_id: str
    bodies: dict[tuple[str, str], dict[str, Any]]

    def path_ids(self, name: str) -> dict[str, str]:
        # Resuming needs a paused schedule; every other route takes the same objects.
        if name == "schedule-resume":
            return {**self.ids, "schedule_id": self.paused_schedule_id}
        return self.ids


@pytest.fixture
def world(api: APIClient, contract_api: APIClient) -> World:
    """One of every resource, made through the API (so the URLs below address real rows).

    Made with a plain client (fast); the requests under test go through `contract_api`.
    """
    purchase = {
        "event_type": {"key": "purchase", "name": "Purchase"},
        "properties": [{"property_id": "amount", "type": "number"}],
    }
    _created(api.post(f"{API}/event-types", purchase, format="json"), "event_type_id")
    # Without events, so that DELETE /event-types/{id} would succeed.
    spare = {"event_type": {"key": "spare", "name": "Spare"}}
    event_type_id = _created(api.post(f"{API}/event-types", spare, format="json"), "event_type_id")
    webhook_id = _created(
        api.post(f"{API}/webhooks", BODIES["webhooks", "post"], format="json"), "webhook_id"
    )
    # Stores the event, then claims its due work as the worker its commit wakes would:
    # its delivery to the webhook is made (sending happens after commit: never here).
    event_id = _created(api.post(f"{API}/events", _event("first"), format="json"), "event_id")
    due_events_process()
    event = api.get(f"{API}/events/{event_id}").json()["data"]
    delivery = api.get(f"{API}/deliveries", {"event_id": event_id}).json()["data"]["deliveries"]
    schedules = [
        _created(api.post(f"{API}/schedules", _schedule_body(), format="json"), "schedule_id")
        for _ in range(2)
    ]
    assert api.post(f"{API}/schedules/{schedules[1]}/pause").status_code == 200
    workflow_id = _created(api.post(f"{API}/workflows", WORKFLOW, format="json"), "workflow_id")
    segment = {"segment": {"key": "buyers", "name": "Buyers", "condition": {}}}
    segment_id = _created(api.post(f"{API}/segments", segment, format="json"), "segment_id")
    # Its build runs after commit (never in this test): ready, so that it can broadcast.
    Segment.objects.filter(pk=segment_id).update(status=Segment.Status.READY)
    policy = {"policy": {"key": "default"}}
    policy_id = _created(
        api.post(f"{API}/delivery-policies", policy, format="json"), "delivery_policy_id"
    )
    period = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    simulate = {"workflow_id": workflow_id, **period}
    response = api.post(f"{API}/workflows/simulate", simulate, format="json")
    simulation_id = response.json()["data"]["simulation_id"]
    response = api.post(
        f"{API}/workflows/{workflow_id}/backfill", {"from": period["from"]}, format="json"
    )
    backfill_id = response.json()["data"]["backfill_id"]
    broadcast = {"workflow_id": workflow_id, "broadcast_key": "world"}
    response = api.post(f"{API}/segments/{segment_id}/broadcast", broadcast, format="json")
    assert response.status_code == 202, response.json()
    # An export, run as its worker would (after commit: never here), so it can be fetched.
    privacy = {"type": "export", "customer": {"customer_id": event["customer_id"]}}
    response = api.post(f"{API}/privacy-requests", privacy, format="json")
    assert response.status_code == 202, response.json()
    privacy_request_id = response.json()["data"]["request_id"]
    privacy_request_run(request_id=privacy_request_id)
    # A merge to show and undo, and a customer to merge in a dry run.
    merged = Customer.objects.create(external_id="world-merged")
    spare_customer = Customer.objects.create(external_id="world-spare")
    merge = {"primary": event["customer_id"], "secondary": merged.pk, "force": True}
    response = api.post(f"{API}/customers/merge", merge, format="json")
    assert response.status_code == 200, response.json()
    merge_id = response.json()["data"]["merge_id"]
    return World(
        api=contract_api,
        ids={
            "event_id": event_id,
            "event_type_id": event_type_id,
            "customer_id": event["customer_id"],
            "webhook_id": webhook_id,
            "delivery_id": delivery[0]["delivery_id"],
            "schedule_id": schedules[0],
            "workflow_id": workflow_id,
            "segment_id": segment_id,
            "broadcast_key": "world",
            "policy_id": policy_id,
            "privacy_request_id": privacy_request_id,
            "merge_id": merge_id,
            "simulation_id": simulation_id,
            "backfill_id": backfill_id,
        },
        paused_schedule_id=schedules[1],
        bodies={
            **BODIES,
            ("workflow-test", "post"): {"event_id": event_id},
            ("workflows-simulate", "post"): simulate,
            # A backfill of the workflow is running: a dry run answers all the same.
            ("workflow-backfill", "post"): {"from": period["from"], "dry_run": True},
            # The same key again: 200 with the broadcast, nothing started.
            ("segment-broadcast", "post"): broadcast,
            ("customers-merge", "post"): {
                "primary": event["customer_id"],
                "secondary": spare_customer.pk,
                "dry_run": True,
                "force": True,
            },
            ("customers-identify", "post"): {
                "anonymous_id": "world-visitor",
                "external_id": "world-user",
            },
        },
    )


def send(world: World, route: str, method: str, query: dict[str, str]) -> Any:
    name = dict(api_routes())[route].name or ""
    url = openapi_path(route).format(**world.path_ids(name))
    if query:
        url += "?" + urlencode(query)
    return getattr(world.api, method)(url, world.bodies.get((name, method)), format="json")


# ---------------------------------------------------------------- every route


@pytest.mark.parametrize(("route", "method"), api_operations())
def test_unknown_query_parameter_is_400_naming_it_and_changes_nothing(
    world: World, route: str, method: str
) -> None:
    query = sample_query(route, method, only_required=True)
    before = every_row()

    response = send(world, route, method, {**query, "sort_feild": "created_at"})

    assert response.status_code == 400
    accepted = sorted(p["name"] for p in documented_query_params(route, method))
    allowed = (
        f"Allowed: {', '.join(accepted)}."
        if accepted
        else "This endpoint takes no query parameters."
    )
    assert response.json() == {
        "error": "Bad Request",
        "message": "Unknown query parameter(s): sort_feild.",
        "statusCode": 400,
        "details": {"sort_feild": [allowed]},
    }
    assert every_row() == before


@pytest.mark.parametrize(("route", "method"), api_operations())
def test_the_same_request_without_it_succeeds(world: World, route: str, method: str) -> None:
    """So the test above rejected a request that would have done its work."""
    response = send(world, route, method, sample_query(route, method, only_required=True))

    assert 200 <= response.status_code < 300, response.json()


@pytest.mark.parametrize(
    ("route", "method"), [p for p in api_operations() if documented_query_params(*p.values)]
)
def test_every_documented_parameter_is_accepted(world: World, route: str, method: str) -> None:
    response = send(world, route, method, sample_query(route, method, only_required=False))

    assert response.status_code == 200, response.json()


def test_the_routes_checked_here_are_the_documented_ones() -> None:
    routes = {openapi_path(route) for route, _ in api_routes()}

    assert routes == {path for path in served_schema()["paths"] if path.startswith(API)}


def test_every_api_route_is_a_strict_view() -> None:
    views = {route: pattern.callback.view_class for route, pattern in api_routes()}  # type: ignore[attr-defined]

    assert [route for route, view in views.items() if not issubclass(view, StrictAPIView)] == []


# ---------------------------------------------------------------- order of the checks


def test_credentials_are_checked_before_query_parameters(db: None) -> None:
    response = APIClient().get(f"{API}/events", {"sort_feild": "x"})

    assert response.status_code == 401


def test_a_method_the_route_lacks_is_405_whatever_the_query(api: APIClient) -> None:
    response = api.put(f"{API}/events?sort_feild=x", {}, format="json")

    assert response.status_code == 405


def test_format_is_an_unknown_parameter_like_any_other(api: APIClient) -> None:
    """DRF reads `?format=` as a renderer choice (`xml` was a bare 404); the API is JSON only."""
    response = api.get(f"{API}/events", {"format": "xml"})

    assert response.status_code == 400
    assert response.json()["message"] == "Unknown query parameter(s): format."


def test_several_unknown_parameters_are_named_together(api: APIClient) -> None:
    response = api.post(f"{API}/events?b=1&a=2&a=3", _event("x"), format="json")

    assert response.status_code == 400
    assert response.json()["message"] == "Unknown query parameter(s): a, b."
    assert set(response.json()["details"]) == {"a", "b"}


# ---------------------------------------------------------------- not the API


def test_schema_and_swagger_views_keep_their_own_parameters(db: None) -> None:
    schema = Client().get(f"{API}/schema/", {"format": "json", "lang": "en", "other": "1"})
    docs = Client().get(f"{API}/docs/", {"other": "1"})

    assert schema.status_code == 200
    assert schema["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert docs.status_code == 200


def test_admin_lists_keep_their_query_parameters(admin_client: Client) -> None:
    response = admin_client.get("/admin/customers/customer/", {"q": "alice", "o": "1"})

    assert response.status_code == 200
