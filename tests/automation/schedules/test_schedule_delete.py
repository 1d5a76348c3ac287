"""Deleting a schedule: its runs, endpoint and delivery log go, set-based; another's stay."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.services import schedule_delete
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from tests.deletes import row_counts, schedule_history

pytestmark = pytest.mark.django_db

TABLES = (Schedule, ScheduleRun, Endpoint, Delivery, DeliveryAttempt)
# Locking the schedule and reading its endpoint, then two set-based deletes (the
# schedule's, the endpoint's, which first locks the endpoint and what it cascades to),
# and the audit entry: a fixed number whatever the runs and deliveries.
MAX_QUERIES = 26


def test_deleting_a_schedule_removes_exactly_its_rows_and_nothing_of_another(
    make_schedule: Callable[..., Schedule],
):
    gone, kept = make_schedule(), make_schedule()
    schedule_history(gone, 3)
    schedule_history(kept, 2)

    deleted = schedule_delete(schedule=gone)

    assert deleted.pk == gone.pk
    assert row_counts(*TABLES) == {
        "automation.Schedule": 1,
        "automation.ScheduleRun": 2,
        "automation.Endpoint": 1,
        "automation.Delivery": 2,
        "automation.DeliveryAttempt": 2,
    }
    assert set(ScheduleRun.objects.values_list("schedule_id", flat=True)) == {kept.pk}
    assert set(Delivery.objects.values_list("endpoint_id", flat=True)) == {kept.endpoint_id}


@pytest.mark.parametrize("runs", [1, 200])
def test_delete_takes_the_same_queries_whatever_the_number_of_runs(
    make_schedule: Callable[..., Schedule], django_assert_max_num_queries, runs: int
):
    schedule = make_schedule()
    schedule_history(schedule, runs)

    with django_assert_max_num_queries(MAX_QUERIES) as queries:
        schedule_delete(schedule=schedule)

    # No run, delivery or attempt is read: they go by subquery (the endpoint delete's
    # locks, project.cascade.cascade_lock, return one count each, no row).
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and not q["sql"].endswith("FOR UPDATE) AS locked")
    ]
    assert [sql for sql in reads if "schedulerun" in sql.split(" WHERE ")[0]] == []
    assert [sql for sql in reads if "delivery" in sql.split(" WHERE ")[0]] == []
    assert row_counts(*TABLES) == dict.fromkeys(row_counts(*TABLES), 0)
