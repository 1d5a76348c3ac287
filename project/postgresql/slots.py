"""Counters spread over slots (PostgreSQL): writers of the same key add into the slot of
their connection, so concurrent transactions do not queue on one hot row; a key's value
is the sum of its slots. Once an hour is past, its rows are rarely written again, and
folding them into slot 0 keeps the readers' scans small.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction


def slot_counters_fold(*, table: str, keys: tuple[str, ...], value: str, before: datetime) -> int:
    """Fold the slots of the rows whose `hour` is before `before` into slot 0 and drop
    the rows that count nothing; returns the rows removed.

    One statement moves the deleted rows' sum into slot 0, so the totals never change; a
    concurrent writer of the same rows waits. `table`, `keys` and `value` are
    identifiers from model metadata, never input.
    """
    columns = ", ".join(keys)
    positions = ", ".join(str(n) for n in range(1, len(keys) + 1))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""WITH folded AS (
                DELETE FROM {table} WHERE hour < %s AND slot <> 0
                RETURNING {columns}, {value}
            ), added AS (
                INSERT INTO {table} ({columns}, slot, {value})
                SELECT {columns}, 0, sum({value}) FROM folded
                GROUP BY {positions} ORDER BY {positions}
                ON CONFLICT ({columns}, slot)
                DO UPDATE SET {value} = {table}.{value} + EXCLUDED.{value}
            )
            SELECT count(*) FROM folded""",  # noqa: S608
            [before],
        )
        folded = int(cursor.fetchone()[0])
        # Hours whose counts came back to zero (their rows were deleted again).
        cursor.execute(f"DELETE FROM {table} WHERE hour < %s AND {value} = 0", [before])  # noqa: S608
        return folded + cursor.rowcount
