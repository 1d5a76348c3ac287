"""Merge admin: merge two customers with a dry-run preview and a confirm step; a
merge's page with its undo button; a customer's aliases and merges on their page."""

from __future__ import annotations

import pytest
from django.test import Client

from customers.identity.models import CustomerMerge
from customers.models import Customer
from tests.admin_support import marketer_client
from tests.customers.identity.support import event_for
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

MERGES = "/admin/customers/customermerge/"


@pytest.fixture
def marketer() -> Client:
    return marketer_client(
        [
            "customers.view_customer",
            "customers.change_customer",
            "customers.delete_customer",
            "customers.view_customermerge",
            "customers.add_customermerge",
        ]
    )


def test_merging_shows_the_preview_first_and_merges_only_on_confirm(marketer: Client):
    primary = CustomerFactory(external_id="keep-me", attributes={"plan": "pro"})
    secondary = CustomerFactory(external_id=None, anonymous_id="v-1", attributes={"plan": "x"})
    event_for(secondary, EventTypeFactory())

    preview = marketer.get(f"{MERGES}add/", {"primary": primary.pk, "secondary": secondary.pk})

    assert preview.status_code == 200
    page = preview.content.decode()
    assert "Confirm merge" in page
    assert "1 events" in page
    assert "plan" in page
    assert Customer.objects.count() == 2

    merged = marketer.post(
        f"{MERGES}add/", {"primary": primary.pk, "secondary": secondary.pk, "confirm": "1"}
    )

    merge = CustomerMerge.objects.get()
    assert merged.status_code == 302
    assert merged["Location"] == f"{MERGES}{merge.pk}/change/"
    assert not Customer.objects.filter(pk=secondary.pk).exists()


def test_a_refused_merge_shows_why_and_changes_nothing(marketer: Client):
    a, b = CustomerFactory(external_id="u1"), CustomerFactory(external_id="u2")

    response = marketer.get(f"{MERGES}add/", {"primary": a.pk, "secondary": b.pk})

    assert response.status_code == 200
    assert "force" in response.content.decode()
    assert "Confirm merge" not in response.content.decode()
    assert Customer.objects.count() == 2


def test_the_merge_page_undoes_and_the_customer_page_lists_aliases_and_merges(
    marketer: Client,
):
    primary = CustomerFactory()
    secondary = CustomerFactory(external_id=None, anonymous_id="v-1")
    marketer.post(
        f"{MERGES}add/", {"primary": primary.pk, "secondary": secondary.pk, "confirm": "1"}
    )
    merge = CustomerMerge.objects.get()

    customer_page = marketer.get(f"/admin/customers/customer/{primary.pk}/change/")
    merge_page = marketer.get(f"{MERGES}{merge.pk}/change/")
    undone = marketer.post(f"{MERGES}{merge.pk}/undo/")

    assert "v-1" in customer_page.content.decode()
    assert merge.pk in customer_page.content.decode()
    assert f'action="{MERGES}{merge.pk}/undo/"' in customer_page.content.decode()
    assert "Undo this merge" in merge_page.content.decode()
    assert undone.status_code == 302
    merge.refresh_from_db()
    assert merge.status == CustomerMerge.Status.UNDONE
    assert Customer.objects.filter(pk=secondary.pk).exists()
