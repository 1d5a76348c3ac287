"""Merge records in privacy requests: a deleted person's merges go with them, and an
export lists them."""

from __future__ import annotations

import json

import pytest

from customers.identity.models import CustomerMerge, MergedRow
from customers.identity.services import customer_merge
from customers.models import Customer
from customers.privacy.models import PrivacyExport
from customers.privacy.selectors import privacy_export_chunks
from customers.privacy.services import privacy_request_create, privacy_request_run
from tests.customers.identity.support import event_for
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def _merged_pair() -> tuple[Customer, CustomerMerge]:
    kind = EventTypeFactory()
    primary = CustomerFactory(external_id="alice")
    secondary = CustomerFactory(external_id=None, anonymous_id="visitor-1")
    event_for(secondary, kind)
    merge = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)
    assert isinstance(merge, CustomerMerge)
    return primary, merge


def test_deleting_a_merged_customer_deletes_their_merge_records():
    primary, merge = _merged_pair()
    other, _ = CustomerFactory(external_id="bob"), None
    untouched = customer_merge(
        primary_id=other.pk, secondary_id=CustomerFactory(external_id=None, anonymous_id="v2").pk
    )
    assert MergedRow.objects.filter(merge=merge).exists()

    # Filed by the anonymous id the merge made an alias of alice.
    request = privacy_request_create(
        type="delete", identifier_kind="anonymous_id", value="visitor-1"
    )
    privacy_request_run(request_id=request.pk)

    request.refresh_from_db()
    assert request.status == "done"
    assert request.counts["merge_records"] == 1
    assert not Customer.objects.filter(pk=primary.pk).exists()
    assert list(CustomerMerge.objects.values_list("pk", flat=True)) == [untouched.pk]
    assert not MergedRow.objects.filter(merge_id=merge.pk).exists()


def test_an_export_lists_the_merges_of_the_person():
    primary, merge = _merged_pair()

    request = privacy_request_create(type="export", identifier_kind="external_id", value="alice")
    privacy_request_run(request_id=request.pk)

    export = PrivacyExport.objects.get(request=request)
    document = json.loads(b"".join(privacy_export_chunks(export=export)))
    (person,) = document["customers"]
    assert person["customer_id"] == primary.pk
    assert [m["merge_id"] for m in person["merges"]] == [merge.pk]
    assert CustomerMerge.objects.filter(pk=merge.pk).exists()  # an export changes nothing
