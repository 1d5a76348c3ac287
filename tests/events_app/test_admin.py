"""Admin for events, event types and API clients, driven through the Django test client."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events_app.admin import EventAdmin
from events_app.api_clients import api_client_authenticate, api_client_create
from events_app.models import ApiClient, Event, EventType, PropertyDefinition
from project.admin.lists import EstimatedCountPaginator
from tests.admin_support import (
    get_with_queries,
    marketer_client,
    treat_as_big_table,
    uncapped_counts,
)
from tests.conftest import API, basic_auth
from tests.factories import (
    ApiClientFactory,
    CustomerFactory,
    EventFactory,
    EventTypeFactory,
    PropertyDefinitionFactory,
    PropertyRecordFactory,
)

pytestmark = pytest.mark.django_db

EVENTS = "/admin/events_app/event/"
EVENT_TYPES = "/admin/events_app/eventtype/"
API_CLIENTS = "/admin/events_app/apiclient/"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

MARKETER_PERMS = [
    "events_app.view_event",
    "events_app.view_eventtype",
    "events_app.add_eventtype",
    "events_app.change_eventtype",
    "events_app.delete_eventtype",
    "events_app.view_propertydefinition",
    "events_app.add_propertydefinition",
    "events_app.change_propertydefinition",
    "events_app.delete_propertydefinition",
    "events_app.view_apiclient",
    "events_app.add_apiclient",
    "events_app.change_apiclient",
    "customers.view_customer",
]


@pytest.fixture
def marketer() -> Client:
    return marketer_client(MARKETER_PERMS)


def result_ids(response) -> list[str]:
    """Primary keys of the changelist rows, in display order."""
    return [str(obj.pk) for obj in response.context["cl"].result_list]


# ---------------------------------------------------------------- pages render


def test_every_events_app_changelist_and_change_page_renders_for_staff(marketer):
    event = EventFactory()
    PropertyRecordFactory(event=event)
    client = ApiClientFactory()
    pages = [
        "/admin/",
        EVENTS,
        f"{EVENTS}{event.pk}/change/",
        EVENT_TYPES,
        f"{EVENT_TYPES}{event.event_type_id}/change/",
        f"{EVENT_TYPES}add/",
        API_CLIENTS,
        f"{API_CLIENTS}{client.pk}/change/",
        f"{API_CLIENTS}add/",
    ]

    statuses = {page: marketer.get(page).status_code for page in pages}

    assert statuses == dict.fromkeys(pages, 200)


def test_admin_is_branded_herald(marketer):
    response = marketer.get("/admin/")

    assert response.context["site_header"] == "Herald"
    assert "<title>Dashboard | Herald</title>" in response.text


# ---------------------------------------------------------------- event list


def test_event_list_shows_the_columns_marketers_need(marketer):
    customer = CustomerFactory(external_id="157613")
    event = EventFactory(customer=customer, external_id="aaabbbccc")

    response = marketer.get(EVENTS)

    row = re.search(r"<tr[^>]*>.*?</tr>", response.text.split("<tbody>")[1], re.S).group(0)
    for value in (event.pk, event.event_type.key, "157613", "aaabbbccc", "pending"):
        assert value in row


def test_event_list_filters_by_event_type(marketer):
    purchase, login = EventTypeFactory(key="purchase"), EventTypeFactory(key="login")
    wanted = [EventFactory(event_type=purchase) for _ in range(2)]
    EventFactory(event_type=login)

    response = marketer.get(EVENTS, {"event_type__id__exact": purchase.pk})

    assert sorted(result_ids(response)) == sorted(e.pk for e in wanted)


def test_event_type_page_links_to_its_events(marketer):
    event_type = EventTypeFactory()

    response = marketer.get(f"{EVENT_TYPES}{event_type.pk}/change/")

    assert f'href="{EVENTS}?event_type__id__exact={event_type.pk}"' in response.text


def test_event_list_filters_by_state(marketer):
    pending = EventFactory(state=Event.State.PENDING)
    EventFactory(state=Event.State.COMPLETED)

    response = marketer.get(EVENTS, {"state__exact": Event.State.PENDING})

    assert result_ids(response) == [pending.pk]


def test_event_list_filters_by_created_window(marketer):
    with time_machine.travel(NOW, tick=False):
        recent = EventFactory(created_at=NOW - timedelta(hours=2))
        week_old = EventFactory(created_at=NOW - timedelta(days=6))
        EventFactory(created_at=NOW - timedelta(days=40))

        last_day = marketer.get(EVENTS, {"created": "24h"})
        last_week = marketer.get(EVENTS, {"created": "7d"})

    assert result_ids(last_day) == [recent.pk]
    assert result_ids(last_week) == [recent.pk, week_old.pk]


def test_event_list_filtered_by_customer_names_the_customer(marketer):
    customer = CustomerFactory(external_id="vip-42")
    mine = EventFactory(customer=customer)
    EventFactory()

    response = marketer.get(EVENTS, {"customer": customer.pk})

    assert result_ids(response) == [mine.pk]
    assert "vip-42" in response.text


@pytest.mark.parametrize("field", ["event_id", "external_id", "customer_external_id"])
def test_event_search_finds_exact_value_of_each_indexed_column(marketer, field):
    target = EventFactory(external_id="ref-target", customer=CustomerFactory(external_id="c-77"))
    EventFactory(external_id="ref-other")
    term = {"event_id": target.pk, "external_id": "ref-target", "customer_external_id": "c-77"}

    response = marketer.get(EVENTS, {"q": term[field]})

    assert result_ids(response) == [target.pk]


def test_event_page_shows_property_records_and_readable_data(marketer):
    event = EventFactory(data={"cart": {"items": 2}, "coupon": "XMAS"})
    PropertyRecordFactory(event=event, property_id="amount", property_value="12.5")

    response = marketer.get(f"{EVENTS}{event.pk}/change/")

    assert response.status_code == 200
    assert "amount" in response.text
    assert "12.5" in response.text
    assert "{\n  &quot;cart&quot;: {\n    &quot;items&quot;: 2\n  }," in response.text


def test_ingested_events_cannot_be_added_edited_or_deleted(marketer, admin_client):
    event = EventFactory(external_id="keep-me")

    add = admin_client.get(f"{EVENTS}add/")
    edit = admin_client.post(f"{EVENTS}{event.pk}/change/", {"external_id": "changed"})
    delete = admin_client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"})

    assert (add.status_code, edit.status_code, delete.status_code) == (403, 403, 403)
    event.refresh_from_db()
    assert event.external_id == "keep-me"
    assert Event.objects.count() == 1


def test_unfiltered_event_list_uses_the_planner_estimate_not_count(marketer, monkeypatch):
    for _ in range(12):
        EventFactory()
    treat_as_big_table("events_app_event", monkeypatch)

    response, queries = get_with_queries(marketer, EVENTS)

    assert response.status_code == 200
    assert uncapped_counts(queries, "events_app_event") == []
    assert any("reltuples" in sql for sql in queries)
    assert "about 12 events" in response.text
    assert "results (" not in response.text  # no count next to the search box


def test_filtered_event_list_counts_only_up_to_the_cap(marketer, monkeypatch):
    event_type = EventTypeFactory()
    for _ in range(5):
        EventFactory(event_type=event_type)
    EventFactory()  # another type, so the type filter is drawn and applies
    monkeypatch.setattr(EstimatedCountPaginator, "filtered_count_cap", 3)

    response, queries = get_with_queries(marketer, EVENTS, {"event_type__id__exact": event_type.pk})

    assert uncapped_counts(queries, "events_app_event") == []
    assert [sql for sql in queries if "LIMIT 4) subquery" in sql]
    assert "more than 3 events" in response.text


def test_event_list_query_count_does_not_grow_with_rows(marketer, django_assert_max_num_queries):
    for _ in range(30):
        PropertyRecordFactory()

    # session, user, permissions, count, page, the page's property values, filters:
    # no query per row.
    with django_assert_max_num_queries(9):
        response = marketer.get(EVENTS)

    assert len(result_ids(response)) == 30


def test_customer_autocomplete_matches_the_start_of_an_external_id(marketer):
    wanted = CustomerFactory(external_id="alice")
    CustomerFactory(external_id="bob-alice")

    response = marketer.get(
        "/admin/autocomplete/",
        {
            "app_label": "events_app",
            "model_name": "event",
            "field_name": "customer",
            "term": "alice",
        },
    )

    assert response.status_code == 200
    assert response.json() == {
        "results": [{"id": wanted.pk, "text": "alice"}],
        "pagination": {"more": False},
    }


# ---------------------------------------------------------------- event types


def inline_post(key: str, properties: list[tuple[str, str]]) -> dict[str, str]:
    data = {
        "key": key,
        "name": key.title(),
        "description": "",
        "properties-TOTAL_FORMS": str(len(properties)),
        "properties-INITIAL_FORMS": "0",
        "properties-MIN_NUM_FORMS": "0",
        "properties-MAX_NUM_FORMS": "1000",
    }
    for i, (property_id, value_type) in enumerate(properties):
        data[f"properties-{i}-property_id"] = property_id
        data[f"properties-{i}-name"] = property_id
        data[f"properties-{i}-value_type"] = value_type
    return data


def test_event_type_is_created_with_its_property_definitions(marketer):
    response = marketer.post(
        f"{EVENT_TYPES}add/", inline_post("purchase", [("amount", "number"), ("sku", "string")])
    )

    assert response.status_code == 302
    event_type = EventType.objects.get(key="purchase")
    assert sorted(event_type.properties.values_list("property_id", "value_type")) == [
        ("amount", "number"),
        ("sku", "string"),
    ]


def test_event_type_edit_replaces_definitions_and_is_logged(marketer):
    event_type = EventTypeFactory(key="purchase", name="Purchase")
    amount = PropertyDefinitionFactory(event_type=event_type, property_id="amount")
    sku = PropertyDefinitionFactory(event_type=event_type, property_id="sku")
    data = inline_post("purchase", [("amount", "number"), ("sku", "string"), ("coupon", "string")])
    data.update(
        {
            "name": "Order placed",
            "properties-INITIAL_FORMS": "2",
            "properties-0-id": str(amount.pk),
            "properties-0-event_type": event_type.pk,
            "properties-1-id": str(sku.pk),
            "properties-1-event_type": event_type.pk,
            "properties-1-DELETE": "on",
            "properties-2-event_type": event_type.pk,
        }
    )

    response = marketer.post(f"{EVENT_TYPES}{event_type.pk}/change/", data)

    assert response.status_code == 302
    event_type.refresh_from_db()
    assert event_type.name == "Order placed"
    assert sorted(event_type.properties.values_list("property_id", "value_type")) == [
        ("amount", "number"),
        ("coupon", "string"),
    ]
    [entry] = LogEntry.objects.filter(object_id=event_type.pk)
    assert entry.get_change_message() == "Changed Name and property definitions."


def test_event_type_with_duplicate_property_id_is_rejected(marketer):
    response = marketer.post(
        f"{EVENT_TYPES}add/", inline_post("purchase", [("amount", "number"), ("amount", "string")])
    )

    assert response.status_code == 200
    assert "Please correct the duplicate data for property_id" in response.text
    assert EventType.objects.count() == 0
    assert PropertyDefinition.objects.count() == 0


def test_deleting_event_type_with_events_explains_instead_of_failing(marketer):
    event_type = EventTypeFactory(key="purchase")
    EventFactory(event_type=event_type)

    page = marketer.get(f"{EVENT_TYPES}{event_type.pk}/delete/")
    post = marketer.post(f"{EVENT_TYPES}{event_type.pk}/delete/", {"post": "yes"})

    assert page.status_code == 200
    assert page.context["protected"] == [
        "Cannot delete some event types: events refer to them through the protected "
        "foreign key 'Event.event_type'. Referring events: 1."
    ]
    assert "would require deleting the following protected related objects" in page.text
    assert post.status_code == 200
    assert EventType.objects.filter(pk=event_type.pk).exists()
    assert Event.objects.count() == 1


def test_unused_event_type_can_be_deleted(marketer):
    event_type = EventTypeFactory()
    PropertyDefinitionFactory(event_type=event_type)

    response = marketer.post(f"{EVENT_TYPES}{event_type.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert EventType.objects.count() == 0
    assert PropertyDefinition.objects.count() == 0


def test_bulk_delete_of_event_types_skips_none_and_refuses_types_in_use(marketer):
    used, unused = EventTypeFactory(), EventTypeFactory()
    EventFactory(event_type=used)

    response = marketer.post(
        EVENT_TYPES,
        {"action": "delete_selected", "_selected_action": [used.pk, unused.pk], "post": "yes"},
    )

    assert response.status_code == 200
    assert "protected related objects" in response.text
    assert EventType.objects.count() == 2


# ---------------------------------------------------------------- API clients


def test_created_api_key_secret_is_shown_once_and_works(marketer):
    response = marketer.post(f"{API_CLIENTS}add/", {"name": "crm-sync", "scope_choices": ["read"]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'<code id="api-secret"[^>]*>([^<]+)</code>', response.text).group(1)
    client = ApiClient.objects.get(name="crm-sync")
    assert client.scopes == "read"
    assert api_client_authenticate(secret=secret, name="crm-sync") == client
    assert client.secret_hash not in response.text
    change_page = marketer.get(f"{API_CLIENTS}{client.pk}/change/")
    listing = marketer.get(API_CLIENTS)
    for page in (change_page, listing):
        assert secret not in page.text
        assert client.secret_hash not in page.text


def test_api_key_with_taken_name_is_rejected_without_a_second_row(marketer):
    api_client_create(name="crm-sync")

    response = marketer.post(f"{API_CLIENTS}add/", {"name": "crm-sync", "scope_choices": ["read"]})

    assert response.status_code == 200
    assert "API client with this Name already exists." in response.text
    assert ApiClient.objects.count() == 1


def test_revoke_action_revokes_selected_keys_and_api_rejects_them(marketer):
    revoked, revoked_secret = api_client_create(name="old-key", scopes=["read"])
    kept, kept_secret = api_client_create(name="new-key", scopes=["read"])

    response = marketer.post(
        API_CLIENTS, {"action": "revoke", "_selected_action": [revoked.pk]}, follow=True
    )

    assert "Revoked 1 API key(s); requests with them get 401 within 1 second." in response.text
    revoked.refresh_from_db()
    kept.refresh_from_db()
    assert revoked.revoked_at is not None
    assert kept.revoked_at is None
    api = Client()
    denied = api.get(f"{API}/events", HTTP_AUTHORIZATION=basic_auth("old-key", revoked_secret))
    allowed = api.get(f"{API}/events", HTTP_AUTHORIZATION=basic_auth("new-key", kept_secret))
    assert (denied.status_code, allowed.status_code) == (401, 200)


def test_revoke_button_on_change_page_revokes_that_key(marketer):
    client, _ = api_client_create(name="one-key")

    page = marketer.get(f"{API_CLIENTS}{client.pk}/change/")
    response = marketer.post(f"{API_CLIENTS}{client.pk}/revoke/")

    assert 'id="revoke-api-key"' in page.text
    assert response.status_code == 302
    client.refresh_from_db()
    assert client.revoked_at is not None


def test_revoke_needs_change_permission(db):
    client, _ = api_client_create(name="one-key")
    viewer = marketer_client(["events_app.view_apiclient"], username="viewer")

    button = viewer.post(f"{API_CLIENTS}{client.pk}/revoke/")
    action = viewer.post(API_CLIENTS, {"action": "revoke", "_selected_action": [client.pk]})

    assert button.status_code == 403
    assert action.status_code == 200  # Django answers "No action selected."
    client.refresh_from_db()
    assert client.revoked_at is None


def test_api_keys_cannot_be_deleted(admin_client):
    client, _ = api_client_create(name="audit-me")

    response = admin_client.post(f"{API_CLIENTS}{client.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert ApiClient.objects.count() == 1


# ---------------------------------------------------------------- dashboard


def test_dashboard_shows_recent_pending_and_per_type_figures(marketer):
    purchase = EventTypeFactory(key="purchase", name="Purchase")
    with time_machine.travel(NOW, tick=False):
        EventFactory(event_type=purchase, created_at=NOW - timedelta(hours=1))
        EventFactory(event_type=purchase, created_at=NOW - timedelta(hours=3))
        EventFactory(
            event_type=purchase, created_at=NOW - timedelta(days=3), state=Event.State.COMPLETED
        )

        response = marketer.get("/admin/")

    dashboard = response.context["dashboard"]
    assert str(dashboard.events_recent) == "2"
    assert str(dashboard.events_pending) == "2"
    assert str(dashboard.events_total) == "3"
    assert [(row.event_type.key, str(row.recent)) for row in dashboard.by_type] == [
        ("purchase", "2")
    ]
    assert len(dashboard.latest_events) == 3
    assert f'href="{EVENTS}?created=24h"' in response.text


def test_dashboard_never_counts_the_whole_events_table(marketer, monkeypatch):
    for _ in range(12):
        EventFactory()
    treat_as_big_table("events_app_event", monkeypatch)

    response, queries = get_with_queries(marketer, "/admin/")

    assert uncapped_counts(queries, "events_app_event") == []
    assert str(response.context["dashboard"].events_total) == "~12"


def test_dashboard_is_hidden_from_staff_who_cannot_view_events(db):
    outsider = marketer_client(["customers.view_customer"], username="outsider")

    response = outsider.get("/admin/")

    assert response.status_code == 200
    assert "dashboard" not in response.context


def test_typed_in_sort_on_a_column_without_index_is_ignored(marketer):
    EventFactory()

    with CaptureQueriesContext(connection) as queries:
        # Column 1 is the event type: sorting by it would join and sort every event.
        response = marketer.get(EVENTS, {"o": "-1"})

    assert response.status_code == 200
    page_query = [
        q["sql"] for q in queries if q["sql"].startswith('SELECT "events_app_event"."id"')
    ]
    assert len(page_query) == 1
    # Falls back to the (indexed, time-ordered) primary key.
    assert page_query[0].endswith('ORDER BY "events_app_event"."id" DESC')


def test_big_event_list_offers_no_page_past_the_cap(marketer, monkeypatch):
    for _ in range(12):
        EventFactory()
    treat_as_big_table("events_app_event", monkeypatch)
    monkeypatch.setattr(EstimatedCountPaginator, "filtered_count_cap", 4)
    monkeypatch.setattr(EventAdmin, "list_per_page", 2)

    last = marketer.get(EVENTS, {"p": "2"})
    beyond = marketer.get(EVENTS, {"p": "3"})

    assert last.status_code == 200
    assert len(last.context["cl"].result_list) == 2
    assert "about 12 events" in last.text
    assert "numbered pages reach the first 4; “next page” goes on from any page" in last.text
    # Django's answer to a page that does not exist: back to the list with ?e=1.
    assert (beyond.status_code, beyond["Location"]) == (302, f"{EVENTS}?e=1")


def test_an_api_clients_rate_budgets_are_edited_on_its_page_and_apply_at_once(marketer):
    client, secret = api_client_create(name="shop")
    assert api_client_authenticate(secret=secret) is not None  # cached in this process
    page = marketer.get(f"{API_CLIENTS}{client.pk}/change/")
    assert 'name="ingest_rate_limit"' in page.text
    assert 'name="api_rate_limit"' in page.text
    assert 'name="name"' not in page.text  # the rest stays read-only

    saved = marketer.post(
        f"{API_CLIENTS}{client.pk}/change/",
        {"ingest_rate_limit": "50", "api_rate_limit": "", "name": "renamed", "scopes": "read"},
    )

    assert saved.status_code == 302
    client.refresh_from_db()
    assert (client.name, client.scopes) == ("shop", "read,write")
    assert (client.ingest_rate_limit, client.api_rate_limit) == (50, None)
    authenticated = api_client_authenticate(secret=secret)
    assert authenticated is not None
    assert authenticated.ingest_rate_limit == 50
