"""Automation admin as a product surface: big lists that never count or list whole tables,
actions that call the services, secrets shown once, and the dashboard's automation figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.test import Client
from django.utils import timezone

from automation.due import due_events_process_and_run
from automation.schedules.services import schedule_create
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one
from automation.webhooks.services import endpoint_create, endpoint_disable
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.models import Event
from tests.admin_support import get_with_queries, treat_as_big_table, uncapped_counts
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.django_db

DELIVERIES = "/admin/automation/delivery/"
ENDPOINTS = "/admin/automation/endpoint/"
RUNS = "/admin/automation/workflowrun/"


@pytest.fixture
def receiver(admin_receiver: Receiver) -> Receiver:
    return admin_receiver


@pytest.fixture
def make_endpoint(receiver: Receiver) -> Callable[[str], Endpoint]:
    def make(path: str = "/hook") -> Endpoint:
        return endpoint_create(url=receiver.url(path))[0]

    return make


def new_delivery(endpoint: Endpoint, **payload: Any) -> Delivery:
    with transaction.atomic():
        return delivery_create(endpoint=endpoint, payload=payload)


def ids(response: Any) -> list[str]:
    return [row.pk for row in response.context["cl"].result_list]


def test_delivery_list_filters_by_endpoint_and_recent_window_without_counting_the_table(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint], monkeypatch: Any
) -> None:
    shop, crm = make_endpoint("/shop"), make_endpoint("/crm")
    now = timezone.now()

    def made_at(moment: Any, endpoint: Endpoint, n: int) -> Delivery:
        # Distinct milliseconds: ids made in the same one order by their random part.
        with time_machine.travel(moment, tick=False):
            return new_delivery(endpoint, n=n)

    old = made_at(now - timedelta(days=2), shop, 0)
    recent_shop = made_at(now - timedelta(minutes=2), shop, 1)
    recent_crm = made_at(now - timedelta(minutes=1), crm, 2)
    treat_as_big_table("automation_delivery", monkeypatch, exact_below=2)

    everything, queries = get_with_queries(admin_client, DELIVERIES)
    by_endpoint, endpoint_queries = get_with_queries(
        admin_client, DELIVERIES, {"endpoint": shop.pk}
    )
    recent = admin_client.get(DELIVERIES, {"created": "24h"})

    assert ids(everything) == [recent_crm.pk, recent_shop.pk, old.pk]
    assert uncapped_counts(queries + endpoint_queries, "automation_delivery") == []
    assert ids(by_endpoint) == [recent_shop.pk, old.pk]
    # The sidebar offers the endpoint in use only, never a list of every endpoint.
    assert "http://127.0.0.1" in by_endpoint.content.decode().split('id="changelist-filter"')[1]
    assert not any('FROM "automation_endpoint"' in q and "LIMIT" not in q for q in endpoint_queries)
    assert ids(recent) == [recent_crm.pk, recent_shop.pk]


def test_delivery_search_matches_exact_ids_with_equality_not_upper(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint]
) -> None:
    endpoint = make_endpoint("/hook")
    wanted, other = new_delivery(endpoint, n=1), new_delivery(endpoint, n=2)

    by_message, queries = get_with_queries(admin_client, DELIVERIES, {"q": wanted.message_id})
    by_id = admin_client.get(DELIVERIES, {"q": other.pk})

    assert ids(by_message) == [wanted.pk]
    assert ids(by_id) == [other.pk]
    assert not any("UPPER(" in q for q in queries)


def test_rotating_a_secret_in_the_admin_shows_the_new_one_once_and_keeps_the_old_signing(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint]
) -> None:
    endpoint = make_endpoint("/hook")
    old_secret = endpoint.secret

    response = admin_client.post(
        ENDPOINTS, {"action": "rotate_secret", "_selected_action": [endpoint.pk]}
    )

    endpoint.refresh_from_db()
    assert response.status_code == 200
    assert endpoint.secret != old_secret
    assert endpoint.previous_secret == old_secret
    assert endpoint.signing_secrets(timezone.now()) == [endpoint.secret, old_secret]
    assert f">{endpoint.secret}</code>" in response.content.decode()
    assert "no-cache" in response["Cache-Control"]
    page = admin_client.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()
    assert endpoint.secret not in page
    assert endpoint.secret[:10] in page  # the hint only


def test_endpoint_added_in_the_admin_is_created_by_the_service_and_its_secret_shown_once(
    admin_client: Client, receiver: Receiver
) -> None:
    purchase = EventTypeFactory(key="purchase")
    response = admin_client.post(
        f"{ENDPOINTS}add/",
        {
            "kind": "subscription",
            "url": receiver.url("/new"),
            "description": "CRM",
            "event_types": [purchase.pk],
            "active": "on",
        },
    )

    endpoint = Endpoint.objects.get()
    assert response.status_code == 200
    assert endpoint.secret.startswith("whsec_")
    assert f">{endpoint.secret}</code>" in response.content.decode()
    assert [t.key for t in endpoint.event_types.all()] == ["purchase"]


def test_enable_action_reactivates_a_disabled_endpoint_with_fresh_health(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint], receiver: Receiver
) -> None:
    receiver.reply(Reply(status=500))
    endpoint = make_endpoint("/hook")
    deliver_one(new_delivery(endpoint, n=1).pk)
    endpoint_disable(endpoint=endpoint, reason="410 Gone")
    endpoint.refresh_from_db()
    assert endpoint.first_failure_at is not None

    admin_client.post(ENDPOINTS, {"action": "enable_endpoints", "_selected_action": [endpoint.pk]})

    endpoint.refresh_from_db()
    assert (endpoint.active, endpoint.disabled_reason) == (True, "")
    assert endpoint.first_failure_at is None


def test_unticking_active_on_the_endpoint_page_disables_it_and_fails_pending_deliveries(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint]
) -> None:
    endpoint = make_endpoint("/hook")
    pending = new_delivery(endpoint, n=1)

    admin_client.post(
        f"{ENDPOINTS}{endpoint.pk}/change/",
        {"url": endpoint.url, "description": "", "event_types": []},  # "active" unticked
    )

    endpoint.refresh_from_db()
    pending.refresh_from_db()
    assert endpoint.active is False
    assert endpoint.disabled_reason == "Disabled by admin."
    assert pending.status == Delivery.Status.FAILED


def test_workflow_deactivate_and_activate_actions_call_the_service(admin_client: Client) -> None:
    EventTypeFactory(key="purchase")
    workflow = workflow_create(
        data=WorkflowInput(name="w", trigger_event_types=["purchase"], conditions={}, actions=[])
    )

    admin_client.post(
        "/admin/automation/workflow/", {"action": "deactivate", "_selected_action": [workflow.pk]}
    )
    workflow.refresh_from_db()
    assert (workflow.active, workflow.version) == (False, 2)

    admin_client.post(
        "/admin/automation/workflow/", {"action": "activate", "_selected_action": [workflow.pk]}
    )
    workflow.refresh_from_db()
    assert (workflow.active, workflow.version) == (True, 3)


def make_runs(count: int) -> tuple[Workflow, list[Event]]:
    purchase = EventTypeFactory(key="purchase")
    workflow = workflow_create(
        data=WorkflowInput(name="w", trigger_event_types=["purchase"], conditions={}, actions=[])
    )
    customer = CustomerFactory()
    events = [
        EventFactory(event_type=purchase, customer=customer, automation_pending=True)
        for _ in range(count)
    ]
    active_workflows_forget()  # the cache is dropped on commit, which a `db` test never reaches
    due_events_process_and_run(event_ids=[e.pk for e in events])
    return workflow, events


def test_run_list_by_outcome_and_by_workflow_never_counts_the_whole_table(
    admin_client: Client, monkeypatch: Any
) -> None:
    workflow, events = make_runs(3)
    WorkflowRun.objects.filter(event=events[1]).update(status="failed", error="boom")
    treat_as_big_table("automation_workflowrun", monkeypatch, exact_below=2)

    failed, queries = get_with_queries(admin_client, RUNS, {"status__exact": "failed"})
    by_workflow, more = get_with_queries(admin_client, RUNS, {"workflow__id__exact": workflow.pk})
    by_event = admin_client.get(RUNS, {"q": events[2].pk})

    assert [r.event_id for r in failed.context["cl"].result_list] == [events[1].pk]
    assert len(by_workflow.context["cl"].result_list) == 3
    assert [r.event_id for r in by_event.context["cl"].result_list] == [events[2].pk]
    assert uncapped_counts(queries + more, "automation_workflowrun") == []


def test_dashboard_shows_failing_webhooks_failed_deliveries_and_recent_runs(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint], receiver: Receiver
) -> None:
    receiver.reply(Reply(status=400))
    failing = make_endpoint("/failing")
    deliver_one(new_delivery(failing, n=1).pk)  # 400: failed for good
    make_endpoint("/healthy")
    make_runs(2)

    page = admin_client.get("/admin/")

    figures = page.context["automation"]
    assert (str(figures.endpoints_failing), str(figures.deliveries_failed_recent)) == ("1", "1")
    assert (figures.workflows_active, str(figures.runs_recent)) == (1, "2")
    assert (str(figures.runs_failed_recent), str(figures.runs_waiting)) == ("0", "0")
    assert [e.pk for e in figures.failing_endpoints] == [failing.pk]
    content = page.content.decode()
    assert '<span class="value" id="figure-endpoints-failing">1</span>' in content
    assert receiver.url("/failing") in content


def test_deleting_a_webhook_summarises_its_deliveries_and_deletes_through_the_service(
    admin_client: Client, make_endpoint: Callable[[str], Endpoint]
) -> None:
    endpoint = make_endpoint("/hook")
    deliveries = [new_delivery(endpoint, n=n) for n in range(3)]
    url = f"{ENDPOINTS}{endpoint.pk}/delete/"

    page = admin_client.get(url)
    confirm = page.content.decode()
    assert page.context["deleted_objects"][1:] == [
        "3 deliveries",
        "0 delivery attempts",
        "0 workflow endpoints",  # the link a workflow's own endpoint has
    ]
    assert not any(d.pk in confirm for d in deliveries)  # no line per delivery

    admin_client.post(url, {"post": "yes"})
    assert (Endpoint.objects.count(), Delivery.objects.count()) == (0, 0)


def test_a_schedules_endpoint_is_not_deleted_from_the_endpoint_admin(
    admin_client: Client,
) -> None:
    schedule = schedule_create(
        owner="owner@example.com",
        end_date=timezone.now() + timedelta(days=1),
        interval="0 9 * * *",
        callback_url="https://93.184.215.14/hook",
        context={},
        tags=[],
    )
    url = f"{ENDPOINTS}{schedule.endpoint_id}/delete/"

    confirm = admin_client.get(url).content.decode()
    admin_client.post(url, {"post": "yes"})

    assert "belongs to a schedule" in confirm
    assert Endpoint.objects.filter(pk=schedule.endpoint_id).exists()


def test_deleting_a_workflow_summarises_its_runs_instead_of_listing_them(
    admin_client: Client,
) -> None:
    workflow, events = make_runs(2)
    url = f"/admin/automation/workflow/{workflow.pk}/delete/"

    confirm = admin_client.get(url).content.decode()
    admin_client.post(url, {"post": "yes"})

    assert "2 workflow runs" in confirm
    assert events[0].pk not in confirm
    assert (Workflow.objects.count(), WorkflowRun.objects.count()) == (0, 0)
