"""Merge records: what a merge of two customers moved, so that it can be shown and undone.

A merge moves every row that names the secondary customer (events, workflow runs,
segment stays, aliases, … : every foreign key into Customer) to the primary with one
UPDATE per table. To undo it exactly, the record keeps:

- the secondary customer's row and the primary's fields as they were (JSON);
- the keys of the rows moved, as `MergedRow`s of up to MERGED_KEYS_PER_ROW keys each
  (a JSON array: a row per key cost a tuple and an index entry per moved row), written
  by one INSERT … SELECT per table before its UPDATE. A side table rather than a marker
  column on the moved rows: a later merge of the primary moves the same rows again,
  and a single marker would forget the first merge (undoing the later one must give
  the rows back to the first merge's primary, still marked as moved by it); it also
  leaves the partitioned events table, which ingestion writes with one statement
  built from its columns, untouched. Undo is one UPDATE … WHERE pk IN (the record's
  keys) per table, bounded by the primary's own rows;
- the rows that could not move because the primary already had their twin under a
  unique constraint (a current stay in the same segment, a segment check), serialized:
  they are deleted by the merge and re-inserted, as they were, by an undo.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models

from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["MERGED_KEYS_PER_ROW", "CustomerMerge", "MergedRow"]


class CustomerMerge(models.Model):
    """One merge of a secondary customer into a primary one, and whether it was undone."""

    class Status(models.TextChoices):
        MERGED = "merged"
        UNDONE = "undone"

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    # Plain ids, no foreign keys: the secondary is gone after the merge, and the record
    # outlives a later delete of either customer (it says what happened).
    primary_id = models.CharField(max_length=PUBLIC_ID_LENGTH)
    secondary_id = models.CharField(max_length=PUBLIC_ID_LENGTH)
    primary_external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    secondary_external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # Two identified customers with different external ids merge only when forced.
    forced = models.BooleanField(default=False)
    # "identify" when POST /customers/identify made it, else "merge".
    source = models.CharField(max_length=16, default="merge")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.MERGED)
    # Rows moved per kind ({"events": 12, "workflow_runs": 3, …}).
    moved = models.JSONField(default=dict, blank=True)
    # Rows of the secondary deleted instead of moved (their twin on the primary).
    superseded_counts = models.JSONField(default=dict, blank=True)
    # {attribute: {"before": value or absent, "after": value}} of the primary's
    # attributes the merge filled; {"primary", "secondary"} of conflicts the primary won.
    attributes_overwritten = models.JSONField(default=dict, blank=True)
    attribute_conflicts = models.JSONField(default=dict, blank=True)
    tags_added = models.JSONField(default=list, blank=True)
    # {field: [before, after]} of the primary's other fields the merge changed (email).
    fields_changed = models.JSONField(default=dict, blank=True)
    # The aliases the merge gave the primary: [{"kind", "value"}].
    aliases_added = models.JSONField(default=list, blank=True)
    # The primary's updated_at before and after the merge (an undo restores it when
    # nothing changed the primary since).
    primary_updated_before = models.DateTimeField(null=True, blank=True)
    primary_updated_after = models.DateTimeField(null=True, blank=True)
    # The secondary customer row, and the superseded rows, serialized (django.core
    # serializers' JSON: model label, pk and fields).
    secondary_row = models.JSONField(default=dict, blank=True)
    superseded_rows = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /customers/merges?customer_id=… and the admin's merge history, and undo's
            # "a later merge involves these customers" check.
            models.Index(fields=["primary_id", "created_at"], name="customermerge_primary_idx"),
            models.Index(fields=["secondary_id", "created_at"], name="customermerge_secondary_idx"),
            # GET /customers/merges sorted by created_at; the prune of expired records.
            models.Index(fields=["created_at", "id"], name="customermerge_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.secondary_id} -> {self.primary_id}"

    @staticmethod
    def undo_window() -> timedelta:
        return timedelta(days=settings.HERALD_MERGE_UNDO_DAYS)

    def undo_until(self) -> datetime:
        return self.created_at + self.undo_window()

    def as_summary(self) -> dict[str, Any]:
        return {"merge_id": self.pk, "primary": self.primary_id, "secondary": self.secondary_id}


# How many moved keys one MergedRow holds: large enough that recording a merge writes
# few rows, small enough that an undo or an evaluation handles one at a time.
MERGED_KEYS_PER_ROW = 10_000


class MergedRow(models.Model):
    """The keys of up to MERGED_KEYS_PER_ROW rows of one table that a merge moved from
    the secondary to the primary."""

    # db_index=False: mergedrow_merge_table_idx leads with the merge.
    merge = models.ForeignKey(
        CustomerMerge, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The moved rows' model label ("events_app.Event") and primary keys (as text).
    table = models.CharField(max_length=100)
    row_ids = models.JSONField(default=list)

    class Meta:
        indexes = [
            # Undo: the keys of one merge's rows of one table.
            models.Index(fields=["merge", "table"], name="mergedrow_merge_table_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.table}: {len(self.row_ids)} rows"
