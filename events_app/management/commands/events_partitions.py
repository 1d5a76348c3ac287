"""`manage.py events_partitions`: create the month partitions of events ahead now (what
the scheduler's `events.partitions` job does every hour) and list them, with the
rows PostgreSQL estimates each holds. PostgreSQL only: SQLite keeps one table.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from events_app.partitions.maintenance import month_partitions, partitions_ensure
from events_app.partitions.months import EVENT_TABLE


class Command(BaseCommand):
    help = "Create the month partitions of events ahead and list them."

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Events are partitioned on PostgreSQL only.")
        created = partitions_ensure(now=timezone.now())
        for month in created:
            self.stdout.write(f"Created the partitions of {month}.")
        names = [m.partition(EVENT_TABLE) for m in month_partitions()]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, greatest(reltuples, 0)::bigint FROM pg_class "
                "WHERE relname = ANY(%s)",
                [names],
            )
            estimates = dict(cursor.fetchall())
        for name in names:
            self.stdout.write(f"{name}: about {estimates.get(name, 0):,} events")
