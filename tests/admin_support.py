"""Helpers for admin tests: a marketer (staff, not superuser) and query inspection."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

MARKETER_PASSWORD = "marketer-pass-123"

# Django's changelist count (whole table, or every filtered row); capped
# counts are `SELECT COUNT(*) FROM (SELECT … LIMIT n) subquery` and do not match.
UNCAPPED_COUNT_RE = r'^SELECT COUNT\(\*\) AS "__count" FROM "{table}"'


def marketer_client(perms: Iterable[str], username: str = "marketer") -> Client:
    """A logged-in staff user holding exactly these `app_label.codename` permissions."""
    user = get_user_model().objects.create_user(
        username=username, password=MARKETER_PASSWORD, is_staff=True
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def uncapped_counts(queries: Iterable[dict[str, str]], table: str) -> list[str]:
    """The queries that count every matching row of `table` (what big lists must avoid)."""
    pattern = re.compile(UNCAPPED_COUNT_RE.format(table=table))
    return [q["sql"] for q in queries if pattern.search(q["sql"])]
