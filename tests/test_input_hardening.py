"""Input that the parser, PostgreSQL and Python disagree on: a 400 naming the field, no write.

Null characters (PostgreSQL stores none), lone surrogates, deep nesting, integers beyond
64 bits, time-zone offsets beyond +-15:59, datetimes without a UTC form in the years
1-9999, NaN and friends in event data, URLs with spaces, control characters or port 0,
and chunked bodies (read like the batch endpoint reads them).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import time_machine
from django.test.client import ClientHandler
from rest_framework.test import APIClient

from automation.schedules.models import Schedule
from automation.webhooks import guard
from automation.webhooks.models import Endpoint
from customers.models import Customer
from events_app.api_clients import api_client_create
from events_app.models import Event, EventType, PropertyDefinition
from project.api.body import MAX_DEPTH, json_too_deep
from tests.automation.schedules.conftest import PUBLIC_URL
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

NUL = "Null characters (\\u0000) are not allowed."
YEARS = "Out of range: in UTC the datetime must fall in the years 1-9999."
OFFSET = "The time-zone offset must be between -15:59 and +15:59."
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def purchase() -> EventType:
    return cast(EventType, EventTypeFactory(key="purchase"))


@pytest.fixture
def customer() -> Customer:
    return cast(Customer, CustomerFactory(external_id="c-1"))


def post_json(api: APIClient, path: str, body: Any) -> Any:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return api.post(f"{API}{path}", raw, content_type="application/json")


def event_body(event_type: EventType, customer: Customer, **event: Any) -> dict[str, Any]:
    return {"event": {"event_type_id": event_type.id, "customer_id": customer.id, **event}}


def counts() -> tuple[int, int, int, int]:
    return (
        Event.objects.count(),
        Customer.objects.count(),
        Schedule.objects.count(),
        Endpoint.objects.count(),
    )


def assert_refused(response: Any, field: str, message: str) -> None:
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["statusCode"] == 400
    assert body["details"] == {field: [message]}


# ---------------------------------------------------------------- null characters


@pytest.mark.parametrize(
    ("event", "field", "message"),
    [
        ({"data": {"a": "x\u0000"}}, "event.data.a", NUL),
        ({"data": {"a": [{"b": ["\u0000"]}]}}, "event.data.a[0].b[0]", NUL),
        ({"data": {"\u0000": 1}}, "event.data", f"Keys: {NUL}"),
        ({"external_id": "ref\u0000"}, "event.external_id", NUL),
        (
            {"customer_id": None, "customer_external_id": "\u0000"},
            "event.customer_external_id",
            NUL,
        ),
        ({"data": '{"a": "\\u0000"}'}, "event.data", f"data is not accepted (at a): {NUL[:-1]}."),
    ],
)
def test_null_character_anywhere_in_an_event_is_400_naming_the_field(
    api: APIClient, purchase: EventType, customer: Customer, event: dict, field: str, message: str
) -> None:
    before = counts()

    response = post_json(api, "/events", event_body(purchase, customer, **event))

    assert_refused(response, field, message)
    assert counts() == before


def test_null_character_in_a_property_value_is_400(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    PropertyDefinition.objects.create(event_type=purchase, property_id="note", name="note")
    body = {
        **event_body(purchase, customer),
        "property_records": [{"property_id": "note", "property_value": "a\u0000"}],
    }

    response = post_json(api, "/events", body)

    assert_refused(response, "property_records[0].property_value", NUL)
    assert Event.objects.count() == 0


def test_null_character_in_a_batch_item_makes_that_item_invalid_and_stores_the_rest(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    items = [
        event_body(purchase, customer, external_id="ok-1"),
        event_body(purchase, customer, data={"a": "\u0000"}),
        event_body(purchase, customer, external_id="ok-2"),
    ]

    response = post_json(api, "/events/batch", {"events": items})

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert [e["index"] for e in data["valid_events"]] == [0, 2]
    assert [(i["index"], i["details"]) for i in data["invalid_events"]] == [
        (1, {"event.data.a": [NUL]})
    ]
    assert set(Event.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}


def test_null_character_in_customer_attributes_is_400_and_creates_nothing(api: APIClient) -> None:
    before = counts()

    response = post_json(
        api,
        "/customers",
        {"customer": {"external_id": "c-9", "attributes": {"n": {"m": "\u0000"}}}},
    )

    assert_refused(response, "customer.attributes.n.m", NUL)
    assert counts() == before


def test_null_character_in_a_customer_patch_is_400_and_changes_nothing(
    api: APIClient, customer: Customer
) -> None:
    response = api.patch(
        f"{API}/customers/{customer.id}",
        json.dumps({"customer": {"attributes": {"a": "\u0000"}}}),
        content_type="application/json",
    )

    assert_refused(response, "customer.attributes.a", NUL)
    customer.refresh_from_db()
    assert customer.attributes == {"country": "CZ"}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/events?external_id=a%00b", "external_id"),
        ("/events?customer_id=%00", "customer_id"),
        ("/customers?email=%00", "email"),
        ("/schedules?owner=a%00b", "owner"),
        ("/webhooks?count=1&offset=0&sort_field=created_at%00", "sort_field"),
    ],
)
def test_null_character_in_a_query_parameter_is_400_naming_it(
    api: APIClient, path: str, field: str
) -> None:
    response = api.get(f"{API}{path}")

    assert_refused(response, field, NUL)


def test_null_character_in_the_json_query_parameter_of_schedules_is_400(api: APIClient) -> None:
    response = api.get(f"{API}/schedules", {"query": '{"owner": ["a\\u0000"]}'})

    assert_refused(response, "query.owner[0]", NUL)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("get", "/events/ab%00", "event_id"),
        ("get", "/customers/ab%00", "customer_id"),
        ("delete", "/customers/ab%00", "customer_id"),
        ("get", "/schedules/ab%00", "schedule_id"),
        ("delete", "/schedules/ab%00", "schedule_id"),
        ("get", "/webhooks/ab%00", "webhook_id"),
        ("get", "/customers/ab%00/events", "customer_id"),
    ],
)
def test_null_character_in_the_url_path_is_400_naming_the_segment(
    api: APIClient, method: str, path: str, field: str
) -> None:
    response = getattr(api, method)(f"{API}{path}")

    assert_refused(response, field, NUL)


# ---------------------------------------------------------------- surrogates, depth


def test_lone_surrogate_in_a_body_is_400_and_stores_nothing(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    raw = json.dumps(event_body(purchase, customer, data={"a": "PLACEHOLDER"}))

    response = post_json(api, "/events", raw.replace("PLACEHOLDER", "\\ud800"))

    assert response.status_code == 400
    assert response.json()["message"].startswith("Malformed JSON body: ")
    assert Event.objects.count() == 0


def test_lone_surrogate_in_data_sent_as_a_string_is_400(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    response = post_json(api, "/events", event_body(purchase, customer, data='{"a": "\\udc00"}'))

    assert_refused(
        response,
        "event.data",
        "data is not accepted (at a): Lone UTF-16 surrogates are not allowed.",
    )
    assert Event.objects.count() == 0


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_body_nested_deeper_than_the_limit_is_400_and_stores_nothing(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    deep = json.dumps(event_body(purchase, customer, data={"a": "X"})).replace('"X"', "[" * 3000)
    deep += "]" * 3000

    response = post_json(api, "/events", deep)

    assert response.status_code == 400
    assert response.json()["message"] == (
        f"Malformed JSON body: JSON nested deeper than {MAX_DEPTH} levels is not accepted."
    )
    assert Event.objects.count() == 0


def test_body_at_the_depth_limit_is_accepted(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    # The body's own object, `event` and `data` are three levels.
    body = event_body(purchase, customer, data={"a": nested(MAX_DEPTH - 3)})

    response = post_json(api, "/events", body)

    assert response.status_code == 201, response.json()


def test_data_string_nested_too_deep_is_400(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    data = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"

    response = post_json(api, "/events", event_body(purchase, customer, data=data))

    assert_refused(response, "event.data", f"data is nested deeper than {MAX_DEPTH} levels.")


def test_a_batch_nested_too_deep_is_refused_as_a_whole(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    items = [
        event_body(purchase, customer),
        event_body(purchase, customer, data={"a": nested(100)}),
    ]

    response = post_json(api, "/events/batch", {"events": items})

    assert response.status_code == 400
    assert Event.objects.count() == 0


def test_depth_check_ignores_brackets_inside_strings() -> None:
    assert not json_too_deep(json.dumps({"a": "[" * 500 + "{" * 500}).encode())
    assert not json_too_deep(json.dumps({"a": '\\"[[[' * 200}).encode())
    assert json_too_deep(json.dumps(nested(MAX_DEPTH + 1)).encode())
    assert not json_too_deep(json.dumps([nested(MAX_DEPTH - 1)] * 10).encode())


# ---------------------------------------------------------------- integers


@pytest.mark.parametrize("path", ["/events", "/customers", "/webhooks", "/event-types"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "offset=99999999999999999999",
            "Must be at most 9223372036854775807; got 99999999999999999999.",
        ),
        (
            "offset=9223372036854775808",
            "Must be at most 9223372036854775807; got 9223372036854775808.",
        ),
        ("count=18446744073709551617", "Must be between 1 and 1000; got 18446744073709551617."),
        ("offset=1_0", "'1_0' is not an integer."),
        ("offset=%EF%BC%91", "'\uff11' is not an integer."),
        ("count=%2B5", "'+5' is not an integer."),
        ("offset=" + "9" * 5000, "Must be at most 9223372036854775807; got " + "9" * 40 + "…."),
    ],
)
def test_integer_parameters_beyond_64_bits_or_not_plain_digits_are_400(
    api: APIClient, path: str, query: str, message: str
) -> None:
    response = api.get(f"{API}{path}?{query}")

    name = query.split("=")[0]
    assert_refused(response, name, message)


def test_schedule_limit_and_offset_beyond_64_bits_are_400(api: APIClient) -> None:
    response = api.get(f"{API}/schedules?limit=1&offset=99999999999999999999")

    assert_refused(
        response, "offset", "Must be at most 9223372036854775807; got 99999999999999999999."
    )


def test_the_largest_offset_is_an_empty_page(api: APIClient, customer: Customer) -> None:
    response = api.get(f"{API}/customers?offset=9223372036854775807")

    assert response.status_code == 200
    assert response.json()["data"] == {"customers": [], "total_items": 1}


# ---------------------------------------------------------------- datetimes


@pytest.mark.parametrize(
    ("occurred_at", "message"),
    [
        ("0001-01-01T00:00:00+01:00", YEARS),
        ("9999-12-31T23:59:59-01:00", YEARS),
        ("2024-01-01T00:00:00+16:00", OFFSET),
        ("2024-01-01T00:00:00-23:59", OFFSET),
    ],
)
def test_occurred_at_without_a_storable_utc_form_is_400_and_stores_nothing(
    api: APIClient, purchase: EventType, customer: Customer, occurred_at: str, message: str
) -> None:
    response = post_json(api, "/events", event_body(purchase, customer, occurred_at=occurred_at))

    assert_refused(response, "event.occurred_at", message)
    assert Event.objects.count() == 0


def test_occurred_at_is_stored_in_utc_and_the_event_stays_readable(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    created = post_json(
        api, "/events", event_body(purchase, customer, occurred_at="0001-01-01T15:59:00+15:59")
    )
    assert created.status_code == 201, created.json()
    event_id = created.json()["data"]["event_id"]

    assert api.get(f"{API}/events/{event_id}").json()["data"]["occurred_at"] == (
        "0001-01-01T00:00:00Z"
    )
    assert api.get(f"{API}/events").status_code == 200
    assert api.get(f"{API}/customers/{customer.id}/events").status_code == 200


def test_occurred_at_out_of_range_in_a_batch_makes_only_that_item_invalid(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    items = [
        event_body(purchase, customer, occurred_at="9999-12-31T23:59:59-01:00"),
        event_body(purchase, customer, external_id="fine"),
    ]

    response = post_json(api, "/events/batch", {"events": items})

    data = response.json()["data"]
    assert [(i["index"], i["details"]) for i in data["invalid_events"]] == [
        (0, {"event.occurred_at": [YEARS]})
    ]
    assert list(Event.objects.values_list("external_id", flat=True)) == ["fine"]


def test_datetime_property_value_without_a_utc_form_is_400(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="when", name="when", value_type="datetime"
    )
    body = {
        **event_body(purchase, customer),
        "property_records": [
            {"property_id": "when", "property_value": "0001-01-01T00:00:00+01:00"}
        ],
    }

    response = post_json(api, "/events", body)

    assert_refused(
        response,
        "property_records[0].property_value",
        f"Property 'when' must be a datetime in range, got '0001-01-01T00:00:00+01:00': {YEARS}.",
    )
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/events", "created_after"),
        ("/events", "created_before"),
        ("/events", "occurred_after"),
        ("/events", "occurred_before"),
        ("/customers", "created_after"),
        ("/customers", "updated_before"),
        ("/customers/c/events", "occurred_after"),
    ],
)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0001-01-01T00:00:00+01:00", YEARS),
        ("9999-12-31T23:59:59-01:00", YEARS),
        ("2024-01-01T00:00:00+20:00", OFFSET),
    ],
)
def test_datetime_filters_without_a_storable_utc_form_are_400(
    api: APIClient, customer: Customer, path: str, name: str, value: str, message: str
) -> None:
    path = path.replace("/c/", f"/{customer.id}/")

    response = api.get(f"{API}{path}", {name: value})

    assert_refused(response, name, message)


def test_datetime_filter_with_an_offset_compares_in_utc(api: APIClient) -> None:
    EventFactory(created_at=datetime(2024, 1, 1, 10, 0, tzinfo=UTC))

    at_ten = api.get(f"{API}/events", {"created_after": "2024-01-01T15:59:00+05:59"}).json()
    after = api.get(f"{API}/events", {"created_after": "2024-01-01T16:00:00+05:59"}).json()

    assert at_ten["data"]["total_items"] == 1
    assert after["data"]["total_items"] == 0


# ---------------------------------------------------------------- schedules


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def schedule_body(**overrides: Any) -> dict[str, Any]:
    return {
        "schedule": {
            "owner": "user@example.com",
            "end_date": "2026-09-02T05:11:59Z",
            "interval": "*/5 * * * *",
            "callback_url": PUBLIC_URL,
            **overrides,
        }
    }


@pytest.mark.parametrize(
    ("end_date", "message"),
    [
        ("9999-12-31T23:59:59-01:00", YEARS),
        ("2030-01-01T00:00:00+16:00", OFFSET),
    ],
)
def test_schedule_with_an_end_date_without_utc_form_is_400_and_nothing_is_written(
    api: APIClient, frozen: None, end_date: str, message: str
) -> None:
    before = counts()

    response = post_json(api, "/schedules", schedule_body(end_date=end_date))

    assert_refused(response, "schedule.end_date", message)
    assert counts() == before
    assert api.get(f"{API}/schedules").json()["data"] == {"schedules": [], "total_items": 0}


def test_schedule_patch_with_an_end_date_without_utc_form_changes_nothing(
    api: APIClient, frozen: None
) -> None:
    created = post_json(api, "/schedules", schedule_body()).json()["data"]
    url = f"{API}/schedules/{created['schedule_id']}"

    response = api.patch(
        url,
        json.dumps({"schedule": {"end_date": "9999-12-31T23:59:59-01:00"}}),
        content_type="application/json",
    )

    assert_refused(response, "schedule.end_date", YEARS)
    assert api.get(url).json()["data"]["end_date"] == "2026-09-02T05:11:59Z"
    assert api.get(f"{API}/schedules").status_code == 200
    assert api.delete(url).status_code == 200
    assert Schedule.objects.count() == 0


def test_schedule_end_date_with_an_offset_is_stored_in_utc(api: APIClient, frozen: None) -> None:
    response = post_json(api, "/schedules", schedule_body(end_date="2026-09-02T20:11:59+15:00"))

    assert response.status_code == 201, response.json()
    assert response.json()["data"]["end_date"] == "2026-09-02T05:11:59Z"


def test_schedule_service_refuses_an_end_date_without_utc_form(frozen: None) -> None:
    from automation.schedules.services import schedule_create
    from project.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        schedule_create(
            owner="user@example.com",
            end_date=datetime.fromisoformat("9999-12-31T23:59:59-01:00"),
            interval="*/5 * * * *",
            callback_url=PUBLIC_URL,
        )

    assert refused.value.details == {"end_date": [YEARS]}
    assert counts() == (0, 0, 0, 0)


def test_null_character_in_schedule_context_is_400_and_nothing_is_written(
    api: APIClient, frozen: None
) -> None:
    response = post_json(api, "/schedules", schedule_body(context={"user": ["\u0000"]}))

    assert_refused(response, "schedule.context.user[0]", NUL)
    assert counts() == (0, 0, 0, 0)


# ---------------------------------------------------------------- NaN and friends


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"a": NaN}', "data is not valid JSON: NaN is not a JSON number."),
        ('{"a": Infinity}', "data is not valid JSON: Infinity is not a JSON number."),
        ('{"a": [-Infinity]}', "data is not valid JSON: -Infinity is not a JSON number."),
        ('{"a": 1e400}', "data is not valid JSON: 1e400 is out of a number's range."),
        ('{"a": -1E+400}', "data is not valid JSON: -1E+400 is out of a number's range."),
    ],
)
def test_non_finite_numbers_in_data_sent_as_a_string_are_400(
    api: APIClient, purchase: EventType, customer: Customer, data: str, message: str
) -> None:
    response = post_json(api, "/events", event_body(purchase, customer, data=data))

    assert_refused(response, "event.data", message)
    assert Event.objects.count() == 0


def test_non_finite_numbers_in_a_data_object_are_400(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    raw = json.dumps(event_body(purchase, customer, data={"a": "X"}))

    nan = post_json(api, "/events", raw.replace('"X"', "NaN"))
    huge = post_json(api, "/events", raw.replace('"X"', "1e400"))

    assert nan.status_code == 400
    assert nan.json()["message"].startswith("Malformed JSON body: ")
    assert_refused(huge, "event.data[...]", "Number out of range")
    assert Event.objects.count() == 0


def test_nan_in_a_batch_item_goes_to_invalid_events_and_the_rest_is_stored(
    api: APIClient, purchase: EventType, customer: Customer
) -> None:
    items = [
        event_body(purchase, customer, data='{"a": NaN}'),
        event_body(purchase, customer, data='{"a": 1}', external_id="ok"),
    ]

    response = post_json(api, "/events/batch", {"events": items})

    data = response.json()["data"]
    assert [(i["index"], i["details"]) for i in data["invalid_events"]] == [
        (0, {"event.data": ["data is not valid JSON: NaN is not a JSON number."]})
    ]
    assert list(Event.objects.values_list("external_id", "data")) == [("ok", {"a": 1})]


# ---------------------------------------------------------------- URLs


BAD_URLS = [
    (
        "https://93.184.215.14/a\r\nX-Injected: 1",
        "URLs may not contain spaces or control characters (CR, LF, …).",
    ),
    (
        "https://93.184.215.14/a\nb",
        "URLs may not contain spaces or control characters (CR, LF, …).",
    ),
    ("https://93.184.215.14/a b", "URLs may not contain spaces or control characters (CR, LF, …)."),
    (" https://93.184.215.14/", "URLs may not contain spaces or control characters (CR, LF, …)."),
    ("https://93.184.215.14/\t", "URLs may not contain spaces or control characters (CR, LF, …)."),
    ("https://93.184.215.14:0/hook", "Port 0 cannot be called; give a port from 1 to 65535."),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_webhook_url_with_spaces_control_characters_or_port_0_is_400(
    api: APIClient, url: str, reason: str
) -> None:
    response = post_json(api, "/webhooks", {"webhook": {"url": url}})

    assert_refused(response, "url", reason)
    assert Endpoint.objects.count() == 0


@pytest.mark.parametrize(("url", "reason"), BAD_URLS[:1] + BAD_URLS[-1:])
def test_webhook_patch_to_such_a_url_is_400_and_changes_nothing(
    api: APIClient, url: str, reason: str
) -> None:
    created = post_json(api, "/webhooks", {"webhook": {"url": PUBLIC_URL}}).json()["data"]

    response = api.patch(
        f"{API}/webhooks/{created['webhook_id']}",
        json.dumps({"webhook": {"url": url}}),
        content_type="application/json",
    )

    assert_refused(response, "url", reason)
    assert list(Endpoint.objects.values_list("url", flat=True)) == [PUBLIC_URL]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_schedule_callback_url_with_spaces_control_characters_or_port_0_is_400(
    api: APIClient, frozen: None, url: str, reason: str
) -> None:
    response = post_json(api, "/schedules", schedule_body(callback_url=url))

    assert_refused(response, "callback_url", f"URL not allowed: {reason}")
    assert counts() == (0, 0, 0, 0)


def test_schedule_patch_to_a_callback_url_with_crlf_changes_nothing(
    api: APIClient, frozen: None
) -> None:
    created = post_json(api, "/schedules", schedule_body()).json()["data"]

    response = api.patch(
        f"{API}/schedules/{created['schedule_id']}",
        json.dumps({"schedule": {"callback_url": "https://93.184.215.14/a\r\nb"}}),
        content_type="application/json",
    )

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["callback_url"]
    assert list(Schedule.objects.values_list("callback_url", flat=True)) == [PUBLIC_URL]
    assert list(Endpoint.objects.values_list("url", flat=True)) == [PUBLIC_URL]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_the_guard_refuses_such_urls_at_send_too(url: str, reason: str) -> None:
    with pytest.raises(
        guard.OutboundRefused, match="^" + reason.replace("(", r"\(").replace(")", r"\)")
    ):
        guard.check_url(url, resolver=lambda host, port: ["93.184.215.14"])


# ---------------------------------------------------------------- chunked bodies


class Chunks(io.RawIOBase):
    """A WSGI input as a server hands over a de-chunked body: small pieces, no length."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def read(self, size: int | None = -1) -> bytes:
        size = len(self.data) if size is None or size < 0 else min(size, 100)
        piece = self.data[self.position : self.position + size]
        self.position += len(piece)
        return piece


@pytest.fixture
def post_chunked(db: None) -> Callable[[str, bytes], Any]:
    client, secret = api_client_create(name="chunked")
    token = base64.b64encode(f"{client.name}:{secret}".encode()).decode()

    def post(path: str, body: bytes) -> Any:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"{API}{path}",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json",
            "HTTP_TRANSFER_ENCODING": "chunked",
            "HTTP_AUTHORIZATION": f"Basic {token}",
            "wsgi.input": Chunks(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        return ClientHandler(enforce_csrf_checks=False)(environ)

    return post


def test_chunked_post_events_is_read_and_stored(
    post_chunked: Callable[[str, bytes], Any], purchase: EventType, customer: Customer
) -> None:
    body = json.dumps(event_body(purchase, customer, external_id="chunked", data={"x": "y" * 500}))

    response = post_chunked("/events", body.encode())

    assert response.status_code == 201, response.content
    assert list(Event.objects.values_list("external_id", "data")) == [("chunked", {"x": "y" * 500})]


def test_chunked_post_customers_is_read_and_stored(
    post_chunked: Callable[[str, bytes], Any],
) -> None:
    body = json.dumps({"customer": {"external_id": "streamed", "attributes": {"a": 1}}})

    response = post_chunked("/customers", body.encode())

    assert response.status_code == 201, response.content
    assert list(Customer.objects.values_list("external_id", "attributes")) == [
        ("streamed", {"a": 1})
    ]


def test_chunked_body_over_the_upload_limit_is_413_and_stores_nothing(
    post_chunked: Callable[[str, bytes], Any], settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"customer": {"external_id": "big", "attributes": {"a": "y" * 2000}}})

    response = post_chunked("/customers", body.encode())

    assert response.status_code == 413
    assert json.loads(response.content)["message"] == "The request body is larger than 1000 bytes."
    assert Customer.objects.count() == 0


# ---------------------------------------------------------------- rows stored before


@pytest.mark.django_db(transaction=True)
def test_migration_brings_a_stored_year_10000_end_date_back_into_range(
    api: APIClient, frozen: None
) -> None:
    import importlib

    from django.apps import apps
    from django.db import connection

    created = post_json(api, "/schedules", schedule_body()).json()["data"]
    with connection.cursor() as cursor:  # as stored before end dates were checked
        cursor.execute(
            "UPDATE automation_schedule SET end_date = '10000-01-01 00:59:59+00' WHERE id = %s",
            [created["schedule_id"]],
        )
    migration = importlib.import_module("automation.migrations.0010_clamp_schedule_end_dates")

    with connection.schema_editor() as editor:
        migration.clamp(apps, editor)

    url = f"{API}/schedules/{created['schedule_id']}"
    assert api.get(url).json()["data"]["end_date"] == "9999-12-31T23:59:59.999999Z"
    assert api.get(f"{API}/schedules").json()["data"]["total_items"] == 1
    assert api.delete(url).status_code == 200
    assert Schedule.objects.count() == 0
