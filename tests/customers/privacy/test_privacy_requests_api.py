"""Privacy requests end to end: filed through the API, run in the background, read back
as their audit record; exact counts, and nothing of the person left in clear."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from automation.privacy import REDACTED_PAYLOAD
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.workflows.models import WorkflowRun
from customers.models import Customer, CustomerAlias
from customers.privacy import services as privacy_services
from customers.privacy.hashing import identifier_digest
from customers.privacy.models import PrivacyExport, PrivacyRequest, SuppressedIdentifier
from customers.privacy.services import privacy_exports_expire
from events_app.models import Event, PropertyRecord
from project.audit.models import AuditEntry
from tests.customers.conftest import History
from tests.customers.privacy.conftest import PRIVACY, File, privacy_request_text, stored_text
from tests.deletes import row_counts

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ZERO_DELETE = {
    "customers": 0,
    "customer_aliases": 0,
    "events": 0,
    "property_records": 0,
    "workflow_runs": 0,
    "segment_memberships": 0,
    "deliveries_redacted": 0,
    "deliveries_cancelled": 0,
    "merge_records": 0,
}


def test_delete_removes_exactly_the_person_and_finishes_with_exact_counts(
    customer_history: History, file_request: File
):
    alice = customer_history("alice", 3)
    customer_history("bob", 2)
    CustomerAlias.objects.create(customer=alice, kind="anonymous", value="visitor-1")

    done = file_request("delete", external_id="alice")

    assert done["status"] == "done"
    assert done["type"] == "delete"
    assert done["counts"] == {
        **ZERO_DELETE,
        "customers": 1,
        "customer_aliases": 1,
        "events": 3,
        "property_records": 6,
        "workflow_runs": 3,
        "deliveries_redacted": 3,
        "deliveries_cancelled": 3,
    }
    assert done["identifier"] == {
        "kind": "external_id",
        "digest": identifier_digest("external_id", "alice"),
    }
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert done["error"] == ""
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["bob"]
    assert set(Event.objects.values_list("customer__external_id", flat=True)) == {"bob"}
    assert PropertyRecord.objects.count() == 4
    assert WorkflowRun.objects.count() == 2
    # Her deliveries stay as counts: redacted, cancelled, detached from the events.
    kept = Delivery.objects.filter(event__isnull=True)
    assert [(d.status, d.payload) for d in kept] == [("cancelled", REDACTED_PAYLOAD)] * 3
    assert DeliveryAttempt.objects.count() == 5


def test_a_done_delete_keeps_no_clear_identifier_in_its_record_or_the_audit_log(
    customer_history: History, file_request: File, api
):
    alice = customer_history("alice@example.com", 1)
    Customer.objects.filter(pk=alice.pk).update(email="alice@example.com")
    api.patch(  # an audited change whose snapshot names her
        f"{PRIVACY.rsplit('/', 1)[0]}/customers/{alice.pk}",
        {"customer": {"attributes": {"name": "Alice"}}},
        format="json",
    )

    done = file_request("delete", email="alice@example.com")

    assert done["counts"]["customers"] == 1
    row = privacy_request_text()
    assert "alice" not in row.lower()
    assert identifier_digest("email", "alice@example.com") in row
    assert "alice" not in json.dumps(api.get(f"{PRIVACY}/{done['request_id']}").json())
    entries = AuditEntry.objects.filter(object_type="customer", object_id=alice.pk)
    assert list(entries.values_list("action", "before", "after").order_by("at", "id")) == [
        ("updated", None, None),
        ("deleted", None, None),
    ]
    assert "alice" not in stored_text(AuditEntry._meta.db_table).lower()


def test_delete_of_an_unknown_person_is_done_with_zero_counts(file_request: File):
    done = file_request("delete", customer_id="0" * 26)

    assert (done["status"], done["counts"]) == ("done", ZERO_DELETE)
    assert PrivacyRequest.objects.get().identifier_value == ""


def test_suppress_lists_every_identifier_as_a_keyed_hash_and_deletes_the_person(
    customer_history: History, file_request: File
):
    alice = customer_history("alice", 2)
    Customer.objects.filter(pk=alice.pk).update(email="Alice@Example.com", anonymous_id="anon-1")
    CustomerAlias.objects.create(customer=alice, kind="external", value="alice-old")

    done = file_request("suppress", email="alice@example.com")

    assert done["status"] == "done"
    assert done["counts"] == {
        **ZERO_DELETE,
        "identifiers_suppressed": 4,
        "customers": 1,
        "customer_aliases": 1,
        "events": 2,
        "property_records": 4,
        "workflow_runs": 2,
        "deliveries_redacted": 2,
        "deliveries_cancelled": 2,
    }
    listed = set(SuppressedIdentifier.objects.values_list("kind", "digest", "request_id"))
    assert listed == {
        (kind, identifier_digest(kind, value), done["request_id"])
        for kind, value in [
            ("email", "alice@example.com"),
            ("email", "Alice@Example.com"),  # the same digest: emails hash lower-cased
            ("external_id", "alice"),
            ("external_id", "alice-old"),
            ("anonymous_id", "anon-1"),
        ]
    }
    assert len(listed) == 4
    text = stored_text(SuppressedIdentifier._meta.db_table) + privacy_request_text()
    assert "alice" not in text.lower()
    assert "anon-1" not in text
    assert Customer.objects.count() == 0


def test_suppress_of_an_unknown_identifier_still_lists_it(file_request: File):
    done = file_request("suppress", external_id="never-seen")

    assert done["counts"] == {**ZERO_DELETE, "identifiers_suppressed": 1}
    assert list(SuppressedIdentifier.objects.values_list("kind", "digest")) == [
        ("external_id", identifier_digest("external_id", "never-seen"))
    ]


def test_unsuppress_lifts_every_identifier_the_suppress_listed(
    customer_history: History, file_request: File
):
    alice = customer_history("alice", 1)
    Customer.objects.filter(pk=alice.pk).update(anonymous_id="anon-1", email="a@example.com")
    file_request("suppress", external_id="alice")
    other = file_request("suppress", external_id="carol")
    assert SuppressedIdentifier.objects.count() == 4  # alice, her email, anon-1; carol

    done = file_request("unsuppress", anonymous_id="anon-1")

    assert (done["status"], done["counts"]) == ("done", {"identifiers_unsuppressed": 3})
    assert list(SuppressedIdentifier.objects.values_list("request_id", flat=True)) == [
        other["request_id"]
    ]


def test_export_is_one_document_of_everything_held_downloadable_with_a_read_key(
    customer_history: History, file_request: File, make_api
):
    alice = customer_history("alice", 2)
    customer_history("bob", 1)
    CustomerAlias.objects.create(customer=alice, kind="anonymous", value="visitor-1")

    with time_machine.travel(T0, tick=False):
        done = file_request("export", external_id="alice")
        response = make_api("read").get(f"{PRIVACY}/{done['request_id']}/export")

    assert done["status"] == "done"
    assert done["counts"] == {
        "customers": 1,
        "customer_aliases": 1,
        "events": 2,
        "workflow_runs": 2,
        "segment_memberships": 0,
        "deliveries": 2,
        "merges": 0,
    }
    assert done["export_expires_at"] == "2026-03-09T12:00:00Z"
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    document = json.loads(body)["data"]
    assert document["request_id"] == done["request_id"]
    (person,) = document["customers"]
    assert (person["customer_id"], person["external_id"]) == (alice.pk, "alice")
    assert [a["value"] for a in person["aliases"]] == ["visitor-1"]
    assert sorted(
        sorted((r["property_id"], r["property_value"]) for r in e["property_records"])
        for e in person["events"]
    ) == [[("amount", "0"), ("currency", "EUR")], [("amount", "1"), ("currency", "EUR")]]
    assert {e["customer_id"] for e in person["events"]} == {alice.pk}
    assert len(person["workflow_runs"]) == 2
    assert sorted(d["payload"]["event_id"] for d in person["deliveries"]) == sorted(
        e["event_id"] for e in person["events"]
    )
    assert Customer.objects.count() == 2  # an export changes nothing


def test_export_expires_after_the_configured_days_and_is_then_deleted(
    customer_history: History, file_request: File, api
):
    customer_history("alice", 1)
    with time_machine.travel(T0, tick=False):
        done = file_request("export", external_id="alice")
    url = f"{PRIVACY}/{done['request_id']}/export"

    with time_machine.travel(T0 + timedelta(days=7) - timedelta(seconds=1), tick=False):
        assert api.get(url).status_code == 200
        assert privacy_exports_expire(datetime.now(tz=UTC)) == 0
    with time_machine.travel(T0 + timedelta(days=7), tick=False):
        gone = api.get(url)
        assert privacy_exports_expire(datetime.now(tz=UTC)) == 1

    assert gone.status_code == 404
    assert gone.json()["message"].endswith("has expired.")
    assert PrivacyExport.objects.count() == 0
    assert api.get(url).status_code == 404
    assert PrivacyRequest.objects.get().status == "done"  # the audit record stays


def test_export_download_is_404_before_the_request_ran_and_for_other_types(
    api, django_capture_on_commit_callbacks, file_request: File
):
    with django_capture_on_commit_callbacks(execute=False):
        pending = api.post(
            PRIVACY, {"type": "export", "customer": {"external_id": "x"}}, format="json"
        ).json()["data"]
    deleted = file_request("delete", external_id="x")

    assert api.get(f"{PRIVACY}/{pending['request_id']}/export").status_code == 404
    assert api.get(f"{PRIVACY}/{deleted['request_id']}/export").status_code == 404
    assert api.get(f"{PRIVACY}/{'f' * 26}/export").status_code == 404


def test_requests_are_listed_newest_first(file_request: File, api):
    first = file_request("delete", external_id="a")
    second = file_request("export", email="b@example.com")

    listed = api.get(PRIVACY).json()["data"]

    assert listed["total_items"] == 2
    assert [r["request_id"] for r in listed["privacy_requests"]] == [
        second["request_id"],
        first["request_id"],
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "forget", "customer": {"external_id": "a"}}, "type"),
        ({"type": "delete", "customer": {}}, "customer"),
        (
            {"type": "delete", "customer": {"external_id": "a", "email": "a@example.com"}},
            "customer",
        ),
        ({"type": "delete", "customer": {"phone": "1"}}, "customer.phone"),
        ({"type": "delete", "customer": {"external_id": 7}}, "customer.external_id"),
        ({"type": "delete", "customer": {"external_id": "a\u0000b"}}, "customer.external_id"),
        ({"type": "delete"}, "customer"),
        ({"type": "delete", "customer": {"external_id": "a"}, "why": "x"}, "why"),
    ],
)
def test_a_bad_request_is_a_400_and_files_nothing(api, body, field):
    response = api.post(PRIVACY, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["details"]
    assert PrivacyRequest.objects.count() == 0


def test_a_lone_surrogate_is_a_400_and_files_nothing(api):
    body = b'{"type": "delete", "customer": {"external_id": "a\\ud800"}}'

    response = api.post(PRIVACY, body, content_type="application/json")

    assert response.status_code == 400
    assert PrivacyRequest.objects.count() == 0


def test_filing_needs_write_and_downloading_needs_read(make_api, file_request: File):
    done = file_request("export", external_id="a")
    read_only, write_only = make_api("read"), make_api("write")

    refused = read_only.post(
        PRIVACY, {"type": "delete", "customer": {"external_id": "a"}}, format="json"
    )

    assert refused.status_code == 403
    assert write_only.get(f"{PRIVACY}/{done['request_id']}/export").status_code == 403
    assert read_only.get(f"{PRIVACY}/{done['request_id']}/export").status_code == 200
    assert PrivacyRequest.objects.count() == 1
    assert row_counts(PrivacyExport) == {"customers.PrivacyExport": 1}


def test_an_export_larger_than_a_part_is_stored_in_parts_and_served_whole(
    customer_history: History, file_request: File, make_api, monkeypatch: pytest.MonkeyPatch
):
    # Parts of 512 bytes: the document of one person with a few events spans several.
    monkeypatch.setattr(privacy_services, "EXPORT_PART_BYTES", 512)
    alice = customer_history("alice", 6)

    with time_machine.travel(T0, tick=False):
        done = file_request("export", external_id="alice")
        response = make_api("read").get(f"{PRIVACY}/{done['request_id']}/export")

    export = PrivacyExport.objects.get(request_id=done["request_id"])
    parts = list(export.parts.order_by("position").values_list("position", "data"))
    assert len(parts) > 2
    assert [position for position, _ in parts] == list(range(len(parts)))
    assert all(len(bytes(data)) >= 512 for _, data in parts[:-1])
    stored = b"".join(bytes(data) for _, data in parts)
    assert export.size == len(stored)
    # The document is what json.dumps makes of it whole, byte for byte.
    document = json.loads(stored)
    assert json.dumps(document).encode() == stored
    assert [p["customer_id"] for p in document["customers"]] == [alice.pk]
    assert len(document["customers"][0]["events"]) == done["counts"]["events"] == 6
    assert b"".join(response.streaming_content) == b'{"data":' + stored + b"}"
