"""Previewing a condition: how many customers match it now, a sample, and why one does.

Stores nothing. The condition is validated as a segment's would be (so a preview
names the same problems a save would), then evaluated for every customer in batches
(the facts of a batch in a fixed number of queries, automation.segments.facts).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from automation.segments.engine import CompiledSegment
from automation.segments.facts import customer_rows, facts_fetch
from automation.segments.selectors import refs_read
from automation.segments.services import SegmentInput, segment_validate
from customers.models import Customer
from project.errors import NotFoundError, ValidationFailed

SAMPLE_SIZE = 20


def segment_preview(*, condition: dict[str, Any], customer_id: str | None) -> dict[str, Any]:
    """`{"member_count", "sample", "explanation"}` of a condition, evaluated now."""
    errors = {
        path: messages
        for path, messages in segment_validate(
            SegmentInput(key="", name="preview", condition=condition)
        ).items()
        if path.startswith("condition")
    }
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid condition: {path}: {messages[0]}", details=errors)
    if customer_id is not None and not Customer.objects.filter(pk=customer_id).exists():
        raise NotFoundError(f"Customer '{customer_id}' not found.")
    compiled = CompiledSegment(condition, refs_read())
    now = timezone.now()
    size = settings.HERALD_SEGMENT_BATCH_SIZE
    count, after = 0, ""
    sample: list[dict[str, Any]] = []
    while True:
        ids = list(
            Customer.objects.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:size]
        )
        if not ids:
            break
        customers = customer_rows(ids)
        facts = facts_fetch(keys=compiled.fact_keys, customers=customers, now=now)
        for pk in ids:
            if pk in facts and compiled.decide(facts[pk], now).member:
                count += 1
                if len(sample) < SAMPLE_SIZE:
                    row = customers[pk]
                    sample.append(
                        {
                            "customer_id": pk,
                            "external_id": row["external_id"],
                            "email": row["email"],
                        }
                    )
        after = ids[-1]
    explanation = None
    if customer_id is not None:
        customers = customer_rows([customer_id])
        facts = facts_fetch(keys=compiled.fact_keys, customers=customers, now=now)
        explanation = compiled.explain(facts[customer_id], now)
    return {"member_count": count, "sample": sample, "explanation": explanation}
