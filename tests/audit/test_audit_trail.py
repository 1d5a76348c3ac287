"""The audit trail: every configuration change and every secret shown is one entry
naming its actor, with the object's state before and after and never a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from automation.schedules.services import (
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_update,
)
from automation.webhooks.models import Endpoint
from events_app.api_clients import api_client_create, api_client_revoke
from events_app.models import ApiClient, EventType
from project.audit.context import Actor, audit_actor
from project.audit.models import AuditEntry
from project.audit.services import audit_record, redact
from tests.conftest import API, basic_auth

pytestmark = pytest.mark.django_db

HOOK = "http://127.0.0.1:8599/hook"
PUBLIC_URL = "https://93.184.215.14/hook"


@pytest.fixture(autouse=True)
def allow_loopback(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def writer() -> tuple[APIClient, ApiClient]:
    client, secret = api_client_create(name="auditor", scopes=["read", "write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=basic_auth(client.name, secret))
    return api, client


@pytest.fixture
def purchase() -> EventType:
    return EventType.objects.create(key="purchase", name="Purchase")


def new_entries(after: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(pk__gt=after).order_by("pk"))


def last_id() -> int:
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def assert_no_secret(entry: AuditEntry, *secrets: str) -> None:
    stored = json.dumps([entry.before, entry.after])
    for secret in secrets:
        assert secret not in stored
    for name in ("secret", "previous_secret", "secret_hash", "secret_prefix", "webhook_secrets"):
        assert f'"{name}"' not in stored


def only(after: int) -> AuditEntry:
    entries = new_entries(after)
    assert len(entries) == 1, [(e.action, e.object_type) for e in entries]
    return entries[0]


def test_webhook_create_update_rotate_delete_are_one_entry_each_by_the_api_client(
    writer: tuple[APIClient, ApiClient], purchase: EventType
) -> None:
    api, client = writer
    mark = last_id()
    created = api.post(
        f"{API}/webhooks",
        {"webhook": {"url": HOOK, "event_types": ["purchase"], "description": "a"}},
        format="json",
    ).json()["data"]
    entry = only(mark)
    assert (entry.actor_kind, entry.actor_id, entry.actor_name) == (
        "api_client",
        str(client.pk),
        "auditor",
    )
    assert (entry.action, entry.object_type, entry.object_id) == (
        "created",
        "webhook",
        created["webhook_id"],
    )
    assert entry.before is None
    assert entry.after["url"] == HOOK
    assert entry.after["event_types"] == [purchase.pk]
    assert entry.after["description"] == "a"
    assert_no_secret(entry, created["secret"])

    mark = last_id()
    api.patch(
        f"{API}/webhooks/{created['webhook_id']}", {"webhook": {"description": "b"}}, format="json"
    )
    entry = only(mark)
    assert entry.action == "updated"
    assert (entry.before["description"], entry.after["description"]) == ("a", "b")

    mark = last_id()
    rotated = api.post(f"{API}/webhooks/{created['webhook_id']}/rotate-secret").json()["data"]
    entry = only(mark)
    assert entry.action == "secret_rotated"
    assert entry.before["previous_secret_expires_at"] is None
    assert entry.after["previous_secret_expires_at"] is not None
    assert_no_secret(entry, created["secret"], rotated["secret"])

    mark = last_id()
    api.delete(f"{API}/webhooks/{created['webhook_id']}")
    entry = only(mark)
    assert (entry.action, entry.after) == ("deleted", None)
    assert entry.before["description"] == "b"
    assert_no_secret(entry, created["secret"], rotated["secret"])


def test_workflow_changes_and_secrets_shown_are_one_entry_each(
    writer: tuple[APIClient, ApiClient], purchase: EventType
) -> None:
    api, _ = writer
    url = f"{API}/workflows"
    body = {
        "workflow": {
            "name": "w1",
            "trigger_event_types": ["purchase"],
            "actions": [{"type": "webhook", "url": HOOK}],
        }
    }
    mark = last_id()
    created = api.post(url, body, format="json").json()["data"]
    workflow_id = created["workflow_id"]
    (secret,) = created["webhook_secrets"].values()
    entry = only(mark)
    assert (entry.action, entry.object_type, entry.object_id) == (
        "created",
        "workflow",
        workflow_id,
    )
    assert entry.after["name"] == "w1"
    assert entry.after["trigger_event_types"] == [purchase.pk]
    assert entry.after["webhook_endpoints"] == list(created["webhook_secrets"])
    assert_no_secret(entry, secret)

    mark = last_id()
    api.patch(f"{url}/{workflow_id}", {"workflow": {"name": "w2"}}, format="json")
    entry = only(mark)
    assert entry.action == "updated"
    assert (entry.before["name"], entry.after["name"]) == ("w1", "w2")
    assert (entry.before["version"], entry.after["version"]) == (1, 2)

    for action, path, active in [
        ("deactivated", "deactivate", False),
        ("activated", "activate", True),
    ]:
        mark = last_id()
        api.post(f"{url}/{workflow_id}/{path}")
        entry = only(mark)
        assert entry.action == action
        assert (entry.before["active"], entry.after["active"]) == (not active, active)

    mark = last_id()
    shown = api.post(f"{url}/{workflow_id}/reveal-secrets").json()["data"]["webhook_secrets"]
    entry = only(mark)
    assert (entry.action, entry.before, entry.after) == (
        "secret_shown",
        None,
        {"webhook_endpoints": list(shown)},
    )
    assert_no_secret(entry, secret)

    mark = last_id()
    rotated = api.post(f"{url}/{workflow_id}/rotate-secrets").json()["data"]["webhook_secrets"]
    entry = only(mark)
    assert entry.action == "secret_rotated"
    assert_no_secret(entry, secret, *rotated.values())

    mark = last_id()
    api.delete(f"{url}/{workflow_id}")
    entry = only(mark)
    assert (entry.action, entry.before["name"], entry.after) == ("deleted", "w2", None)


def test_schedule_changes_are_one_entry_each_and_system_acts_without_a_request() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    mark = last_id()
    schedule = schedule_create(
        owner="o@example.com",
        end_date=now + timedelta(days=30),
        interval="* * * * *",
        callback_url=PUBLIC_URL,
        context={"user": 1},
        now=now,
    )
    entry = only(mark)
    assert (entry.actor_kind, entry.actor_id, entry.action, entry.object_type) == (
        "system",
        "",
        "created",
        "schedule",
    )
    assert entry.after["context"] == {"user": 1}

    steps = [
        ("updated", lambda: schedule_update(schedule=schedule, fields={"tags": ["x"]}, now=now)),
        ("paused", lambda: schedule_pause(schedule=schedule)),
        ("resumed", lambda: schedule_resume(schedule=schedule, now=now)),
    ]
    for action, step in steps:
        mark = last_id()
        step()
        entry = only(mark)
        assert (entry.action, entry.object_id) == (action, schedule.pk)
    assert (entry.before["status"], entry.after["status"]) == ("PAUSED", "INACTIVE")

    mark = last_id()
    schedule_delete(schedule=schedule)
    entry = only(mark)
    assert (entry.action, entry.before["tags"], entry.after) == ("deleted", ["x"], None)
    # The schedule's own endpoint is part of the schedule, not a webhook of its own.
    assert not AuditEntry.objects.filter(object_type="webhook").exists()


def test_event_type_changes_are_one_entry_each(writer: tuple[APIClient, ApiClient]) -> None:
    api, _ = writer
    url = f"{API}/event-types"
    mark = last_id()
    body = {
        "event_type": {"key": "signup", "name": "Signup"},
        "properties": [{"property_id": "plan", "type": "string"}],
    }
    response = api.post(url, body, format="json")
    assert response.status_code == 201, response.json()
    type_id = EventType.objects.get(key="signup").pk
    entry = only(mark)
    assert (entry.action, entry.object_type, entry.object_id) == ("created", "event_type", type_id)
    assert entry.after["properties"] == [
        {"property_id": "plan", "name": "", "type": "string", "required": False}
    ]

    mark = last_id()
    api.patch(f"{url}/{type_id}", {"event_type": {"name": "Sign-up"}}, format="json")
    entry = only(mark)
    assert (entry.before["name"], entry.after["name"]) == ("Signup", "Sign-up")

    mark = last_id()
    api.delete(f"{url}/{type_id}")
    entry = only(mark)
    assert (entry.action, entry.before["key"], entry.after) == ("deleted", "signup", None)


def test_customer_changes_are_one_entry_each(writer: tuple[APIClient, ApiClient]) -> None:
    api, _ = writer
    mark = last_id()
    customer_id = api.post(
        f"{API}/customers",
        {"customer": {"external_id": "c1", "email": "a@example.com"}},
        format="json",
    ).json()["data"]["customer_id"]
    entry = only(mark)
    assert (entry.action, entry.object_type, entry.object_id) == (
        "created",
        "customer",
        customer_id,
    )
    assert entry.after["email"] == "a@example.com"

    mark = last_id()
    api.patch(f"{API}/customers/{customer_id}", {"customer": {"tags": ["vip"]}}, format="json")
    entry = only(mark)
    assert (entry.before["tags"], entry.after["tags"]) == ([], ["vip"])

    mark = last_id()
    api.delete(f"{API}/customers/{customer_id}")
    entry = only(mark)
    assert (entry.action, entry.before["external_id"], entry.after) == ("deleted", "c1", None)


def test_api_client_create_and_revoke_are_recorded_without_the_secret_or_its_hash() -> None:
    mark = last_id()
    with audit_actor(Actor("admin_user", "7", "ops")):
        client, secret = api_client_create(name="ci", scopes=["read"])
    entry = only(mark)
    assert (entry.actor_kind, entry.actor_name, entry.action, entry.object_type) == (
        "admin_user",
        "ops",
        "created",
        "api_client",
    )
    assert entry.after["name"] == "ci"
    assert entry.after["scopes"] == "read"
    assert_no_secret(entry, secret, client.secret_hash, client.secret_prefix)

    mark = last_id()
    api_client_revoke(client=client)
    api_client_revoke(client=client)  # already revoked: nothing changes, nothing recorded
    entry = only(mark)
    assert entry.action == "revoked"
    assert (entry.before["revoked_at"], entry.after["revoked_at"] is not None) == (None, True)


def test_an_admin_action_is_recorded_with_the_admin_user() -> None:
    user = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-for-tests")
    endpoint = Endpoint.objects.create(url=HOOK, secret="whsec_old")
    browser = Client()
    browser.force_login(user)
    mark = last_id()
    response = browser.post(
        "/admin/automation/endpoint/",
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
        HTTP_X_REQUEST_ID="req-42",
    )
    assert response.status_code == 200
    entry = only(mark)
    assert (entry.actor_kind, entry.actor_id, entry.actor_name, entry.request_id) == (
        "admin_user",
        str(user.pk),
        "boss",
        "req-42",
    )
    assert (entry.action, entry.object_id) == ("secret_rotated", endpoint.pk)
    endpoint.refresh_from_db()
    assert_no_secret(entry, "whsec_old", endpoint.secret)


def test_redaction_drops_secret_like_keys_at_any_depth() -> None:
    assert redact({"a": 1, "Secret": "s", "x": [{"token": "t", "password": "p", "b": 2}]}) == {
        "a": 1,
        "x": [{"b": 2}],
    }
    entry = audit_record(
        action="updated", obj_type="thing", obj_id=1, after={"api_key": "k", "n": {"secret": "s"}}
    )
    entry.refresh_from_db()
    assert entry.after == {"n": {}}


def test_audit_log_lists_newest_first_with_filters_for_a_read_key(
    make_api: Any, writer: tuple[APIClient, ApiClient]
) -> None:
    AuditEntry.objects.all().delete()
    _, client = writer
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        AuditEntry.objects.create(
            at=base + timedelta(hours=i),
            actor_kind="api_client",
            actor_id=str(client.pk) if i % 2 else "99",
            actor_name="auditor" if i % 2 else "other",
            action="updated",
            object_type="webhook" if i < 3 else "workflow",
            object_id=f"obj{i}",
        )
        for i in range(5)
    ]
    reader = make_api("read")
    AuditEntry.objects.filter(object_type="api_client").delete()  # make_api's own key

    everything = reader.get(f"{API}/audit-log").json()["data"]
    assert everything["total_items"] == 5
    assert [e["id"] for e in everything["audit_log"]] == [r.pk for r in reversed(rows)]
    first = everything["audit_log"][-1]
    assert first["actor"] == {"kind": "api_client", "id": "99", "name": "other"}
    assert first["at"] == "2026-01-01T00:00:00Z"

    def ids(query: str) -> list[str]:
        response = reader.get(f"{API}/audit-log?{query}")
        assert response.status_code == 200, response.json()
        return [e["object_id"] for e in response.json()["data"]["audit_log"]]

    assert ids("actor=auditor") == ["obj3", "obj1"]
    assert ids(f"actor={client.pk}") == ["obj3", "obj1"]
    assert ids("object_type=webhook&count=2") == ["obj2", "obj1"]
    assert ids("object_type=webhook&count=2&offset=2") == ["obj0"]
    assert ids("object_type=workflow&object_id=obj4") == ["obj4"]
    assert ids("since=2026-01-01T01:00:00Z&until=2026-01-01T03:00:00Z") == ["obj2", "obj1"]
    bad = reader.get(f"{API}/audit-log?since=yesterday")
    assert bad.status_code == 400
    assert set(bad.json()["details"]) == {"since"}


def test_staff_read_the_log_in_the_admin_and_cannot_change_it() -> None:
    user = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-for-tests")
    entry = audit_record(
        action="updated", obj_type="webhook", obj_id="wh1", before={"url": "a"}, after={"url": "b"}
    )
    audit_record(action="created", obj_type="customer", obj_id="c9", after={})
    browser = Client()
    browser.force_login(user)

    found = browser.get("/admin/audit/auditentry/", {"q": "wh1"})
    assert found.status_code == 200
    assert list(found.context["cl"].result_list) == [entry]
    page = browser.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert "&quot;url&quot;: &quot;b&quot;" in page.content.decode()
    assert browser.get("/admin/audit/auditentry/add/").status_code == 403
    assert browser.post(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403
    assert AuditEntry.objects.filter(object_type__in=["webhook", "customer"]).count() == 2
