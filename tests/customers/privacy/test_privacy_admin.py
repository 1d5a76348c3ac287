"""Privacy requests in the admin: operators file one with a form and read the records,
which show the identifier only hashed."""

from __future__ import annotations

import pytest

from customers.models import Customer
from customers.privacy.hashing import identifier_digest
from customers.privacy.models import PrivacyRequest
from tests.admin_support import marketer_client
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

REQUESTS = "/admin/customers/privacyrequest/"


@pytest.fixture
def operator():
    return marketer_client(["customers.view_privacyrequest", "customers.add_privacyrequest"])


def test_an_operator_files_a_delete_that_runs_and_is_listed_hashed(
    operator, django_capture_on_commit_callbacks
):
    CustomerFactory(external_id="alice")

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            f"{REQUESTS}add/",
            {"type": "delete", "identifier_kind": "external_id", "identifier": "alice"},
        )

    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.status, request.counts["customers"], request.identifier_value) == (
        "done",
        1,
        "",
    )
    assert request.actor_kind == "admin_user"
    assert Customer.objects.count() == 0
    listed = operator.get(REQUESTS).content.decode()
    detail = operator.get(f"{REQUESTS}{request.pk}/change/").content.decode()
    assert identifier_digest("external_id", "alice")[:12] in listed
    assert identifier_digest("external_id", "alice") in detail
    assert "alice" not in listed.replace("privacy", "")
    assert ">alice<" not in detail


def test_a_form_with_a_null_character_files_nothing(operator):
    response = operator.post(
        f"{REQUESTS}add/",
        {"type": "delete", "identifier_kind": "external_id", "identifier": "a\x00b"},
    )

    assert response.status_code == 200
    assert PrivacyRequest.objects.count() == 0
