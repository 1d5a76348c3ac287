"""`manage.py seed_demo`: demo data, an admin login and an API key for the embedded default.

In automation: the demo has workflows too (the layers below never import automation).

Idempotent: event types and customers are created once; each run sets a new
admin password and a new API key, and prints both.
"""

from __future__ import annotations

import os
import random
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from automation.workflows.models import Workflow
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.api_clients import api_client_create, api_client_revoke
from events_app.demo import DEMO_TYPES, demo_event_type_ensure
from events_app.ingestion import events_prepare, events_store
from events_app.models import ApiClient, Event
from events_app.schemas import EventCreateIn, EventIn, PropertyRecordIn


def _record_values(key: str, rng: random.Random) -> list[PropertyRecordIn]:
    now = timezone.now()
    if key == "purchase":
        return [
            PropertyRecordIn("amount", round(rng.uniform(5, 500), 2)),
            PropertyRecordIn("currency", rng.choice(["EUR", "USD", "CZK"])),
            PropertyRecordIn("has_purchase", True),
        ]
    if key == "login":
        return [PropertyRecordIn("method", rng.choice(["password", "sso", "magic_link"]))]
    if key == "api_call":
        return [
            PropertyRecordIn("processing_duration", rng.randint(3, 900)),
            PropertyRecordIn("api_url", rng.choice(["/v1/orders", "/v1/users", "/v1/search"])),
        ]
    return [
        PropertyRecordIn("plan", rng.choice(["free", "pro", "team"])),
        PropertyRecordIn("trial_ends_at", (now + timedelta(days=14)).isoformat()),
    ]


class Command(BaseCommand):
    help = "Load demo data and print an admin login and an API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=3000)
        parser.add_argument("--customers", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(4)
        for key, name, props in DEMO_TYPES:
            demo_event_type_ensure(key, name, props)
        self._create_demo_workflows()
        if not Event.objects.exists():
            self._load_events(rng, options["events"], options["customers"])

        user_model = get_user_model()
        password = secrets.token_urlsafe(12)
        admin, _ = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        admin.set_password(password)
        admin.save()

        for old in ApiClient.objects.filter(name="demo", revoked_at__isnull=True):
            api_client_revoke(client=old)
        ApiClient.objects.filter(name="demo").update(name=f"demo-revoked-{secrets.token_hex(3)}")
        client, secret = api_client_create(name="demo", scopes=["read", "write"])

        base = os.environ.get("HERALD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
        self.stdout.write(
            "\nHerald is ready.\n"
            f"  Admin:    {base}/admin/  user: admin  password: {password}\n"
            f"  API docs: {base}/rest-api/enterprise-interface/v1.0/docs/\n"
            f"  API key:  client name '{client.name}', secret {secret}\n"
            f"  Try:      curl -u {client.name}:{secret} "
            f"{base}/rest-api/enterprise-interface/v1.0/events?count=2\n"
        )

    def _create_demo_workflows(self) -> None:
        """Two example rules, so the demo events leave workflow runs to browse."""
        demo = [
            WorkflowInput(
                name="Tag big spenders as VIP",
                trigger_event_types=["purchase"],
                conditions={"all": [{"property": "amount", "op": "gte", "value": 300}]},
                actions=[{"type": "add_tags", "tags": ["vip"]}],
                active=True,
                reentry="once_per_customer",
            ),
            WorkflowInput(
                name="Mark engaged after 3 logins in a week",
                trigger_event_types=["login"],
                conditions={
                    "count": {"event_type": "login", "within": "P7D"},
                    "op": "gte",
                    "value": 3,
                },
                actions=[{"type": "update_customer", "attributes": {"engaged": True}}],
                active=True,
                reentry="once_per_customer",
            ),
        ]
        for data in demo:
            if not Workflow.objects.filter(name=data.name).exists():
                workflow_create(data=data)

    def _load_events(self, rng: random.Random, total: int, customers: int) -> None:
        keys = [key for key, _, _ in DEMO_TYPES]
        now = timezone.now()
        items: list[EventCreateIn] = []
        for n in range(total):
            key = rng.choices(keys, weights=[3, 5, 8, 1])[0]
            items.append(
                EventCreateIn(
                    event=EventIn(
                        event_type=key,
                        customer_external_id=f"customer_{rng.randint(1, customers):05d}",
                        external_id=f"demo-{n:06d}",
                        data={"channel": rng.choice(["web", "ios", "android"])},
                        occurred_at=now - timedelta(minutes=rng.randint(0, 60 * 24 * 30)),
                    ),
                    property_records=_record_values(key, rng),
                )
            )
        for start in range(0, len(items), 500):
            prepared, invalid = events_prepare(items=items[start : start + 500])
            assert not invalid, invalid
            events_store(prepared=prepared)
        self.stdout.write(f"Loaded {total} demo events for {customers} customers.")
