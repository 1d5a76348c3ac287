"""A delivery names the customer it is about (Delivery.customer), filled in for the
deliveries already stored.

The deliveries of an event are its customer's; those a run made without an event (a
segment transition, a broadcast) are the run's customer's, found by the delivery id in
the run's outcomes. Pings, schedules and `customer.deleted` are about no one and keep
none. The fill is one UPDATE joined to the events on PostgreSQL, before the index is
built. The migration holds the deliveries' table locked until it commits: sending and
new deliveries wait for it (CHANGELOG.md says how long per million deliveries).
Reversing drops the column.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def _run_delivery_ids(outcomes: Any) -> list[str]:
    """The delivery ids a run's outcomes name (its webhook actions' details)."""
    ids = []
    for outcome in outcomes if isinstance(outcomes, list) else []:
        detail = outcome.get("detail") if isinstance(outcome, dict) else None
        if isinstance(detail, dict) and isinstance(detail.get("delivery_id"), str):
            ids.append(detail["delivery_id"])
    return ids


def fill_customers(apps: Any, schema_editor: Any) -> None:
    Delivery = apps.get_model("automation", "Delivery")
    Event = apps.get_model("events_app", "Event")
    WorkflowRun = apps.get_model("automation", "WorkflowRun")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"UPDATE {Delivery._meta.db_table} d SET customer_id = e.customer_id "  # noqa: S608
            f"FROM {Event._meta.db_table} e "
            "WHERE d.event_id = e.id AND d.customer_id IS NULL"
        )
    else:
        Delivery.objects.filter(customer__isnull=True, event__isnull=False).update(
            customer_id=Subquery(
                Event.objects.filter(pk=OuterRef("event_id")).values("customer_id")[:1]
            )
        )
    runs = WorkflowRun.objects.filter(event__isnull=True).values_list("customer_id", "outcomes")
    for customer_id, outcomes in runs.iterator(chunk_size=2000):
        ids = _run_delivery_ids(outcomes)
        if ids:
            Delivery.objects.filter(pk__in=ids, customer__isnull=True).update(
                customer_id=customer_id
            )


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0026_policy_counters_for_existing_usage"),
        ("customers", "0011_remove_mergedrow_row_id"),
        ("events_app", "0021_drop_event_id_like_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="customer",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="deliveries",
                to="customers.customer",
            ),
        ),
        migrations.RunPython(fill_customers, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("customer__isnull", False)),
                fields=["customer", "id"],
                name="delivery_customer_idx",
            ),
        ),
    ]
