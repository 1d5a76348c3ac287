"""GET /metrics on both databases: the events ingested come from the event counters on
PostgreSQL and from COUNT(*) on SQLite (events_app.selectors.event_count), and every
backlog query runs on SQLite's partial indexes too."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.sqlite.conftest import ok, post, purchase_item

pytestmark = pytest.mark.django_db


def test_metrics_count_the_events_ingested_and_every_source_answers(
    api: APIClient, purchase: str, client: Client
):
    ok(post(api, "/events/batch", {"events": [purchase_item("alice"), purchase_item("bob")]}))
    ok(post(api, "/events", purchase_item("carol")), 201)

    response = client.get("/metrics")

    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    assert samples[("herald_events_ingested_total", ())] == 3
    assert samples[("herald_pending_work", ("deliveries",))] == 0
    up = [value for (name, _), value in samples.items() if name == "herald_metrics_source_up"]
    assert up == [1] * 7
