"""generate_events: COPY on PostgreSQL, batched INSERTs elsewhere; lists count the result."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from customers.models import Customer
from events_app.models import Event, EventType
from tests.sqlite.conftest import get, ok

pytestmark = pytest.mark.django_db


def test_generated_events_are_stored_and_counted_per_type(api):
    out = StringIO()

    call_command("generate_events", "--events", "60", "--customers", "4", "--seed", "7", stdout=out)

    assert "Generated 60 events" in out.getvalue()
    assert (Event.objects.count(), Customer.objects.count()) == (60, 4)
    assert ok(get(api, "/events", {"count": 1}))["total_items"] == 60
    per_type = {
        t.pk: ok(get(api, "/events", {"event_type_id": t.pk, "count": 1}))["total_items"]
        for t in EventType.objects.all()
    }
    assert per_type == {
        t.pk: Event.objects.filter(event_type=t).count() for t in EventType.objects.all()
    }
    assert sum(per_type.values()) == 60
