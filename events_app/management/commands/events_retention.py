"""`manage.py events_retention [--dry-run] [--retention P13M]`: drop the months of events
past retention now (what the scheduler's `events.partitions` job does every hour).

--dry-run lists the months that would go, with their events and property records,
and changes nothing. --retention overrides HERALD_EVENT_RETENTION (e.g. to see what
a shorter retention would drop). PostgreSQL only: SQLite keeps one table.
"""

from __future__ import annotations

from typing import Any

import isodate
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from events_app.partitions.maintenance import (
    retention_apply,
    retention_cutoff,
    retention_expired,
    retention_parse,
    retention_setting,
)


class Command(BaseCommand):
    help = "Drop the month partitions of events older than HERALD_EVENT_RETENTION."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be dropped; drop nothing."
        )
        parser.add_argument(
            "--retention", default=None, help="An ISO 8601 duration instead of the setting."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Retention drops month partitions: PostgreSQL only.")
        try:
            retention = (
                retention_parse(options["retention"])
                if options["retention"]
                else retention_setting()
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if retention is None:
            self.stdout.write("HERALD_EVENT_RETENTION is not set: events are kept forever.")
            return
        now = timezone.now()
        cutoff = retention_cutoff(now=now, retention=retention)
        dry_run = options["dry_run"]
        months = (
            retention_expired(now=now, retention=retention)
            if dry_run
            else retention_apply(now=now, retention=retention)
        )
        verb = "Would drop" if dry_run else "Dropped"
        self.stdout.write(
            f"Retention {isoformat(retention)}: months entirely before {cutoff.isoformat()}."
        )
        if not months:
            self.stdout.write("Nothing to drop.")
            return
        for month in months:
            self.stdout.write(f"{verb} {month.describe()}")
        events = sum(m.events for m in months)
        self.stdout.write(f"{verb} {len(months)} months, {events:,} events in total.")


def isoformat(duration: Any) -> str:
    return str(isodate.duration_isoformat(duration))
