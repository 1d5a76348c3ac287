"""The "Marketer" and "Operator" groups the data migration creates: what each may do in
the admin, and that the migration can run twice and be reversed."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

pytestmark = pytest.mark.django_db

groups_migration = importlib.import_module("automation.migrations.0018_admin_groups")


def migration_apps():
    """The models as the migration sees them (the historical registry, as `migrate` passes)."""
    state = MigrationExecutor(connection).loader.project_state(
        ("automation", "0018_admin_groups"), at_end=True
    )
    return state.apps


def member_of(group: str) -> Client:
    user = get_user_model().objects.create_user(username=group.lower(), is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def codenames(group: str) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in Group.objects.get(name=group).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_marketer_views_events_and_customers_and_edits_workflows_segments_schedules():
    marketer = member_of("Marketer")

    pages = {
        url: marketer.get(url).status_code
        for url in [
            "/admin/events_app/event/",
            "/admin/customers/customer/",
            "/admin/automation/workflow/add/",
            "/admin/automation/segment/add/",
            "/admin/automation/schedule/",
            "/admin/events_app/apiclient/",
            "/admin/automation/endpoint/",
            "/admin/customers/customer/add/",
        ]
    }

    assert pages == {
        "/admin/events_app/event/": 200,
        "/admin/customers/customer/": 200,
        "/admin/automation/workflow/add/": 200,
        "/admin/automation/segment/add/": 200,
        "/admin/automation/schedule/": 200,
        "/admin/events_app/apiclient/": 403,
        "/admin/automation/endpoint/": 403,
        "/admin/customers/customer/add/": 403,
    }


def test_operator_manages_api_clients_and_endpoints_but_not_marketing():
    operator = member_of("Operator")

    pages = {
        url: operator.get(url).status_code
        for url in [
            "/admin/events_app/apiclient/add/",
            "/admin/automation/endpoint/",
            "/admin/automation/delivery/",
            "/admin/events_app/event/",
            "/admin/automation/workflow/",
        ]
    }

    assert pages == {
        "/admin/events_app/apiclient/add/": 200,
        "/admin/automation/endpoint/": 200,
        "/admin/automation/delivery/": 200,
        "/admin/events_app/event/": 403,
        "/admin/automation/workflow/": 403,
    }


def test_running_the_migration_again_keeps_added_permissions_and_adds_nothing_twice():
    editor = SimpleNamespace(connection=connection)
    extra = Permission.objects.get(content_type__app_label="audit", codename="view_auditentry")
    Group.objects.get(name="Operator").permissions.add(extra)
    before = {name: codenames(name) for name in ("Marketer", "Operator")}

    groups_migration.groups_create(migration_apps(), editor)

    assert {name: codenames(name) for name in ("Marketer", "Operator")} == before
    assert Group.objects.filter(name__in=["Marketer", "Operator"]).count() == 2


def test_the_migration_leaves_the_running_app_registry_alone():
    before = {config.label: config.models_module for config in global_apps.get_app_configs()}

    groups_migration.groups_create(global_apps, SimpleNamespace(connection=connection))

    assert {c.label: c.models_module for c in global_apps.get_app_configs()} == before


def test_reversing_the_migration_deletes_the_groups_and_forward_again_restores_them():
    editor = SimpleNamespace(connection=connection)
    granted = codenames("Marketer")
    users = get_user_model().objects.count()

    groups_migration.groups_delete(migration_apps(), editor)
    gone = Group.objects.filter(name__in=["Marketer", "Operator"]).count()
    groups_migration.groups_create(migration_apps(), editor)

    assert gone == 0
    assert codenames("Marketer") == granted
    assert get_user_model().objects.count() == users
