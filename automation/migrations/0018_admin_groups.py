"""Two groups of admin users, so that giving someone the right access is one checkbox:

* "Marketer": views events (with their types and property values) and customers;
  adds, edits and deletes workflows, segments and schedules, and views what they did
  (runs, memberships).
* "Operator": API clients, webhook endpoints (whose signing secrets are shown on
  their page) and their deliveries.

Data only: inserts the groups and their rows of auth_group_permissions (a few dozen
rows; no lock on any other table). Here in automation, the last app to migrate, so
the permissions of every model exist; Django creates permissions only after all
migrations ran (post_migrate), so they are created first for a new database.

Idempotent: an existing group keeps the permissions it has and gains the missing ones.
Reversing deletes both groups (users keep their own permissions).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# (app label, model) -> the actions the group may take on it.
MARKETER = {
    ("events_app", "event"): ("view",),
    ("events_app", "eventtype"): ("view",),
    ("events_app", "propertydefinition"): ("view",),
    ("events_app", "propertyrecord"): ("view",),
    ("customers", "customer"): ("view",),
    ("automation", "workflow"): ("view", "add", "change", "delete"),
    ("automation", "workflowrun"): ("view",),
    ("automation", "segment"): ("view", "add", "change", "delete"),
    ("automation", "segmentmembership"): ("view",),
    ("automation", "segmentbroadcast"): ("view",),
    ("automation", "schedule"): ("view", "add", "change", "delete"),
    ("automation", "schedulerun"): ("view",),
}
OPERATOR = {
    ("events_app", "apiclient"): ("view", "add", "change"),
    ("automation", "endpoint"): ("view", "add", "change", "delete"),
    ("automation", "delivery"): ("view", "change"),
    ("automation", "deliveryattempt"): ("view",),
}
GROUPS = {"Marketer": MARKETER, "Operator": OPERATOR}


def groups_create(apps: Any, schema_editor: Any) -> None:
    from django.contrib.auth.management import create_permissions

    database = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # The historical app configs carry no models module; create_permissions skips
        # an app without one. Restored after, whatever registry this was called with.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, verbosity=0, using=database, apps=apps)
        finally:
            app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in GROUPS.items():
        group, _ = Group.objects.using(database).get_or_create(name=name)
        codenames = {
            (app_label, f"{action}_{model}")
            for (app_label, model), actions in grants.items()
            for action in actions
        }
        permissions = [
            permission
            for permission in Permission.objects.using(database).select_related("content_type")
            if (permission.content_type.app_label, permission.codename) in codenames
        ]
        missing = codenames - {(p.content_type.app_label, p.codename) for p in permissions}
        if missing:
            raise RuntimeError(f"Permissions missing for group {name}: {sorted(missing)}")
        group.permissions.add(*permissions)


def groups_delete(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("customers", "0001_initial"),
        ("events_app", "0018_backfill_event_count_ingested"),
        ("automation", "0017_backfill_activity_hour_counts"),
    ]

    operations = [migrations.RunPython(groups_create, groups_delete)]
