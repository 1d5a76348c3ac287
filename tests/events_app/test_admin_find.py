"""Finding events in the admin: prefix search, the filters a marketer uses, key property
values in the list, and paging to any depth by keyset."""

from __future__ import annotations

import json
from base64 import urlsafe_b64encode
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.test import Client

from events_app.admin import EventAdmin
from events_app.models import Event
from project.admin.lists import EstimatedCountPaginator
from tests.admin_support import marketer_client, treat_as_big_table
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory, PropertyRecordFactory

pytestmark = pytest.mark.django_db

EVENTS = "/admin/events_app/event/"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def marketer() -> Client:
    return marketer_client(["events_app.view_event", "customers.view_customer"])


def result_ids(response) -> list[str]:
    return [str(obj.pk) for obj in response.context["cl"].result_list]


# ---------------------------------------------------------------- search


@pytest.mark.parametrize(
    "term",
    ["ORDER-2026", "order-2026-11", "customer_0", "CUSTOMER_001", "Ann@Shop", "purch", "Purchase"],
)
def test_event_search_finds_the_start_of_a_ref_customer_email_or_type_in_any_case(marketer, term):
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    ann = CustomerFactory(external_id="customer_001", email="ann@shop.example")
    wanted = EventFactory(event_type=purchase, customer=ann, external_id="order-2026-11-0001")
    EventFactory(event_type=EventTypeFactory(key="login"), external_id="x-order-2026")

    response = marketer.get(EVENTS, {"q": term})

    assert result_ids(response) == [wanted.pk]


@pytest.mark.parametrize("term", ["2026-11", "ustomer", "shop.example", "%", "_rder"])
def test_event_search_does_not_match_inside_a_value(marketer, term):
    ann = CustomerFactory(external_id="customer_001", email="ann@shop.example")
    EventFactory(customer=ann, external_id="order-2026-11-0001")

    response = marketer.get(EVENTS, {"q": term})

    assert result_ids(response) == []


# ---------------------------------------------------------------- filters and columns


def test_event_list_filters_by_status_set_by_the_integration(marketer):
    pending = EventFactory()
    failed = EventFactory(state=Event.State.FAILED, failed_at=NOW)

    response = marketer.get(EVENTS, {"state__exact": str(Event.State.FAILED)})
    everything = marketer.get(EVENTS)

    assert result_ids(response) == [failed.pk]
    assert pending.pk in result_ids(everything)
    assert "By status set by integration" in everything.text
    assert "status set by integration" in everything.text


def test_event_list_filters_by_a_created_date_range_with_both_days_included(marketer):
    days = {day: EventFactory(created_at=NOW.replace(day=day)) for day in (17, 18, 19, 20)}

    response = marketer.get(EVENTS, {"created_from": "2026-11-18", "created_to": "2026-11-19"})
    open_ended = marketer.get(EVENTS, {"created_from": "2026-11-19"})
    not_a_date = marketer.get(EVENTS, {"created_from": "yesterday"})

    assert result_ids(response) == [days[19].pk, days[18].pk]
    assert result_ids(open_ended) == [days[20].pk, days[19].pk]
    assert not_a_date.status_code == 200
    assert len(result_ids(not_a_date)) == 4
    assert 'value="2026-11-18"' in response.text


def test_date_range_form_keeps_the_other_filters(marketer):
    purchase = EventTypeFactory(key="purchase")

    response = marketer.get(EVENTS, {"event_type__id__exact": purchase.pk, "q": "ord"})

    assert f'<input type="hidden" name="event_type__id__exact" value="{purchase.pk}">' in (
        response.text
    )
    assert '<input type="hidden" name="q" value="ord">' in response.text


def test_event_list_shows_key_property_values(marketer):
    event = EventFactory()
    for property_id, value in [("amount", "42.5"), ("currency", "EUR"), ("sku", "A-1"), ("z", "9")]:
        PropertyRecordFactory(event=event, property_id=property_id, property_value=value)

    response = marketer.get(EVENTS)

    row = unescape(response.text.split('class="field-key_properties"')[1].split("</td>")[0])
    assert "amount</span> = 42.5" in row
    assert "currency</span> = EUR" in row
    assert "sku</span> = A-1" in row
    assert "z</span>" not in row  # three per row; the event's page has them all


def test_event_page_says_who_sets_the_status_and_whether_automation_processed_it(marketer):
    event = EventFactory(automation_pending=False)

    response = marketer.get(f"{EVENTS}{event.pk}/change/")

    assert "Set by your integration (PATCH /events/{id})" in unescape(response.text)
    assert "Status set by integration" in response.text
    assert "Automation processed" in response.text


# ---------------------------------------------------------------- paging to any depth


def walk(client: Client, url: str, params: dict[str, str]) -> tuple[list[str], int]:
    """Follow "next page" from the first page to the last: the ids seen, and the pages."""
    response = client.get(url, params)
    seen, pages = result_ids(response), 1
    while response.context["cl"].next_url:
        response = client.get(url + unescape(response.context["cl"].next_url))
        assert response.status_code == 200
        seen += result_ids(response)
        pages += 1
    return seen, pages


def test_next_page_reaches_every_row_past_the_count_cap_once_in_order(marketer, monkeypatch):
    # Three events share each instant: the id must break the ties.
    events = [EventFactory(created_at=NOW - timedelta(minutes=n // 3)) for n in range(13)]
    treat_as_big_table("events_app_event", monkeypatch)
    monkeypatch.setattr(EstimatedCountPaginator, "filtered_count_cap", 4)
    monkeypatch.setattr(EventAdmin, "list_per_page", 2)

    seen, pages = walk(marketer, EVENTS, {})

    expected = sorted(events, key=lambda e: (e.created_at, e.pk), reverse=True)
    assert seen == [e.pk for e in expected]
    assert pages == 7


def test_next_page_keeps_the_search_and_filters(marketer, monkeypatch):
    purchase = EventTypeFactory(key="purchase")
    wanted = [EventFactory(event_type=purchase, external_id=f"ord-{n}") for n in range(5)]
    EventFactory(event_type=purchase, external_id="other")
    EventFactory(external_id="ord-elsewhere")
    monkeypatch.setattr(EventAdmin, "list_per_page", 2)

    seen, pages = walk(marketer, EVENTS, {"q": "ord", "event_type__id__exact": purchase.pk})

    assert sorted(seen) == sorted(e.pk for e in wanted)
    assert pages == 3


def cursor(values: object) -> str:
    return urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-base64-json!",
        cursor(["2026-11-20T12:00:00+00:00"]),  # one value short
        cursor(["2026-11-20T12:00:00", "abc"]),  # a naive time
        cursor(["0001-01-01T00:00:00+14:00", "abc"]),  # before the year 1 in UTC
        cursor(["2026-11-20T12:00:00+00:00", "a\x00b"]),
        cursor([1, 2]),
    ],
)
def test_a_hand_made_next_page_link_shows_the_first_page(marketer, token):
    events = [EventFactory() for _ in range(3)]

    response = marketer.get(EVENTS, {"after": token})

    assert response.status_code == 200
    assert sorted(result_ids(response)) == sorted(e.pk for e in events)
