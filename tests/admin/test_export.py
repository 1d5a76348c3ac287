"""The CSV export of a changelist: its filters and search, every row in keyset chunks,
streamed, and only for staff who may view the list."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.workflows.models import Workflow, WorkflowRun
from project.admin import export
from tests.admin_support import marketer_client
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def rows_of(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_events_export_has_the_lists_filter_and_every_row_in_chunks(monkeypatch):
    monkeypatch.setattr(export, "EXPORT_CHUNK", 2)
    purchase, login = EventTypeFactory(key="purchase"), EventTypeFactory(key="login")
    alice = CustomerFactory(external_id="alice")
    bought = [
        EventFactory(event_type=purchase, customer=alice, data={"sku": "A-1"}) for _ in range(5)
    ]
    EventFactory.create_batch(3, event_type=login, customer=alice)
    staff = marketer_client(["events_app.view_event"])

    with CaptureQueriesContext(connection) as queries:
        rows = rows_of(
            staff.get("/admin/events_app/event/export.csv", {"event_type__id__exact": purchase.pk})
        )

    assert [r["id"] for r in rows] == sorted(e.id for e in bought)
    assert {r["event_type__key"] for r in rows} == {"purchase"}
    assert {r["customer__external_id"] for r in rows} == {"alice"}
    assert rows[0]["data"] == '{"sku": "A-1"}'
    chunk_reads = [q for q in queries.captured_queries if "LIMIT 2" in q["sql"]]
    assert len(chunk_reads) == 3  # 2 + 2 + 1 rows


def test_customers_export_follows_the_search():
    CustomerFactory(external_id="alice", email="alice@example.com")
    CustomerFactory(external_id="bob")
    staff = marketer_client(["customers.view_customer"])

    rows = rows_of(staff.get("/admin/customers/customer/export.csv", {"q": "alice"}))

    assert [r["external_id"] for r in rows] == ["alice"]
    assert rows[0]["email"] == "alice@example.com"


def test_workflow_runs_export_has_the_workflows_name():
    event = EventFactory()
    workflow = Workflow.objects.create(name="Welcome")
    WorkflowRun.objects.create(
        workflow=workflow,
        event=event,
        customer=event.customer,
        status=WorkflowRun.Status.FAILED,
        created_at=timezone.now() - timedelta(minutes=1),
    )
    staff = marketer_client(["automation.view_workflowrun"])

    rows = rows_of(staff.get("/admin/automation/workflowrun/export.csv"))

    assert [(r["workflow__name"], r["status"], r["event_id"]) for r in rows] == [
        ("Welcome", "failed", event.id)
    ]


def test_the_changelist_links_to_the_export_with_its_filters():
    staff = marketer_client(["customers.view_customer"])

    page = staff.get("/admin/customers/customer/", {"q": "ali"})

    assert 'href="/admin/customers/customer/export.csv?q=ali"' in page.text


def test_staff_without_view_permission_cannot_export():
    EventFactory()
    staff = marketer_client(["customers.view_customer"])

    assert staff.get("/admin/events_app/event/export.csv").status_code == 403
