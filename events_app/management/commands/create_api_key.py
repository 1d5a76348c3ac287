"""`manage.py create_api_key NAME [--scopes read,write]`: prints the secret once, last."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from events_app.api_clients import api_client_create
from project.errors import HeraldError


class Command(BaseCommand):
    help = "Create an API client and print its secret (shown once, alone on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--scopes", default="read,write", help="Comma-separated: read,write")

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            client, secret = api_client_create(name=options["name"], scopes=scopes)
        except HeraldError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Created API client '{client.name}' with scopes {client.scopes}. "
            "The secret is shown once; use it as the Basic-auth password "
            "(username = client name) or as a Bearer token:"
        )
        self.stdout.write(secret)
