"""A stale PolicyCounter for every (policy, customer) the ledger already holds usage of.

The check-and-take (automation.workflows.policies.ledger) decides a pair's first action
without reading the ledger, because it takes a missing counter to mean "never took";
a stale one (empty caps_key) is rebuilt from the ledger under its lock instead. Only
ledger rows written before counters existed break that assumption; this marks them.
Reversing leaves the rows to the schema migration's removal.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def mark_stale(apps: Any, schema_editor: Any) -> None:
    PolicyUsage = apps.get_model("automation", "PolicyUsage")
    PolicyCounter = apps.get_model("automation", "PolicyCounter")
    pairs = PolicyUsage.objects.order_by().values_list("policy_id", "customer_id").distinct()
    batch = []
    for policy_id, customer_id in pairs.iterator(chunk_size=5000):
        batch.append(PolicyCounter(policy_id=policy_id, customer_id=customer_id, caps_key=""))
        if len(batch) >= 5000:
            PolicyCounter.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    PolicyCounter.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("automation", "0025_policy_counters")]

    operations = [migrations.RunPython(mark_stale, migrations.RunPython.noop)]
