"""Once-only under concurrency: 50 simultaneous PATCHes, one winner, on real PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from events_app.api_clients import api_client_create
from events_app.models import Event
from tests.conftest import API, basic_auth
from tests.factories import EventFactory

THREADS = 50


@pytest.mark.xdist_group("races")  # 50 connections each: one such race at a time
@pytest.mark.parametrize("round_", range(3))
def test_fifty_concurrent_patches_give_exactly_one_200(transactional_db, round_):
    # transactional_db: rows are committed, so the threads' own connections see them.
    event = EventFactory()
    client, secret = api_client_create(name=f"race-{round_}")
    auth = basic_auth(client.name, secret)
    start = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def racer(n: int) -> None:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=auth)
        status = "completed" if n % 2 else "failed"
        try:
            start.wait(timeout=30)
            response = api.patch(f"{API}/events/{event.id}", {"status": status}, format="json")
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()  # each thread has its own connection; close it

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert Counter(statuses) == {200: 1, 409: THREADS - 1}
    stored = Event.objects.get(pk=event.id)
    assert stored.state in (Event.State.COMPLETED, Event.State.FAILED)
    assert (stored.completed_at is None) != (stored.failed_at is None)
