"""PostgreSQL: the rate-limit counter table is UNLOGGED.

One upsert per API request when no Redis is configured: a logged table made every
request wait for a WAL flush at commit. A crash empties an unlogged table, which
only resets the counters of the current window. SQLite: nothing to do.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def _alter(logged: bool):  # type: ignore[no-untyped-def]
    def alter(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        mode = "LOGGED" if logged else "UNLOGGED"
        schema_editor.execute(f"ALTER TABLE herald_rate_limit_counter SET {mode}")

    return alter


class Migration(migrations.Migration):
    dependencies = [("events_app", "0007_api_client_rate_limits")]

    operations = [migrations.RunPython(_alter(logged=False), _alter(logged=True))]
