"""A set-based loader for the identity benchmarks: millions of events, all in SQL.

bench/customer_delete.py's loader generates rows in Python (~2,800 events/s), so
10 M events would take an hour. This one writes one day at a time with a single
`INSERT … SELECT … FROM generate_series` per day and table, through the partitioned
parents, so Herald's own triggers (event counters, external-id references) and every
index see the rows as they would see any batch of ingested events: the database ends
as Herald would hold it.

The data, as `manage.py generate_events` makes it, simplified where no benchmark
looks: the four generated event types with their weights, ~3 property records an
event (required ones always, optional ones nine times in ten) valid for their
definitions, 85 % processed, 10 % pending, 5 % failed; background customers chosen
with the generator's power law (a few customers own many events); the target
customer's own events spread over the last `TARGET_DAYS` days, so several month
partitions. Then the automation history of customer_delete.automation_history().

Ids are Herald's public-id shape (12 hex of milliseconds, 14 hex), with a sequence in
place of the random tail, so id order is creation order and ids are unique.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

BACKGROUND_DAYS = 120
TARGET_DAYS = 90
EVENTS_PER_CUSTOMER = 20
EXTERNAL_PREFIX = {"purchase": "ORD", "login": "LGN", "api_call": "REQ", "signup": "SGN"}
TYPE_WEIGHTS = {"purchase": 3, "login": 5, "api_call": 8, "signup": 1}
# Values of string properties (as the generator's STRING_VALUES); others get a generic one.
STRINGS = {
    "currency": "EUR,USD,CZK,GBP",
    "method": "password,sso,magic_link",
    "api_url": "/v1/orders,/v1/users,/v1/search,/v1/carts,/v1/payments",
    "plan": "free,pro,team",
    "device": "desktop,mobile,tablet",
    "referrer": "google,facebook,newsletter,direct,partner",
}


def public_id_sql(millis: str, tail: str) -> str:
    """SQL of a public id: 12 hex of `millis`, 14 hex of `tail` (both SQL bigint exprs)."""
    return f"lpad(to_hex({millis}), 12, '0') || lpad(to_hex({tail}), 14, '0')"


def load(*, target_external_id: str, events: int, background: int, now: datetime) -> None:
    """Customers, the target and its `events`, `background` events of the others, then
    the automation history, then VACUUM (ANALYZE)."""
    from customer_delete import automation_history
    from django.db import connection

    from events_app.generation import ensure_event_types
    from events_app.partitions.maintenance import partitions_ensure

    began = time.monotonic()
    start = now - timedelta(days=BACKGROUND_DAYS)
    partitions_ensure(now=now, since=start)
    types = ensure_event_types(4)
    customers = max(1, background // EVENTS_PER_CUSTOMER)
    start_ms = int(start.timestamp() * 1000)
    with connection.cursor() as cursor:
        _type_table(cursor, types)
        cursor.execute(
            "INSERT INTO customers_customer (id, external_id, email, attributes, tags, "
            "created_at, updated_at) SELECT "
            f"{public_id_sql('%(ms)s::bigint', 'g')}, 'bench-' || g, "
            "'c' || g || '@example.com', '{}', '[]', to_timestamp(%(ms)s / 1000.0), "
            "to_timestamp(%(ms)s / 1000.0) FROM generate_series(1, %(n)s) g",
            {"ms": start_ms, "n": customers},
        )
        cursor.execute(
            "INSERT INTO customers_customer (id, external_id, email, attributes, tags, "
            f"created_at, updated_at) VALUES ({public_id_sql('%(ms)s::bigint', '0')}, "
            "%(ext)s, 'target@example.com', '{}', '[]', now(), now())",
            {"ms": start_ms, "ext": target_external_id},
        )
    sequence = 0
    for day in range(BACKGROUND_DAYS):
        lo = start + timedelta(days=day)
        ms = (int(lo.timestamp() * 1000), int((lo + timedelta(days=1)).timestamp() * 1000))
        share = background * (day + 1) // BACKGROUND_DAYS - background * day // BACKGROUND_DAYS
        sequence = _events_day(ms, share, sequence, customers=customers, id_ms=start_ms)
        if day >= BACKGROUND_DAYS - TARGET_DAYS:
            d = day - (BACKGROUND_DAYS - TARGET_DAYS)
            own = events * (d + 1) // TARGET_DAYS - events * d // TARGET_DAYS
            sequence = _events_day(ms, own, sequence, customers=0, id_ms=start_ms)
        if day % 10 == 9:
            print(
                f"  day {day + 1}/{BACKGROUND_DAYS}: {sequence:,} events, "
                f"{time.monotonic() - began:.0f} s",
                flush=True,
            )
    automation_history()
    print(f"Loaded {sequence:,} events in {time.monotonic() - began:.0f} s.", flush=True)


def _type_table(cursor, types) -> None:  # type: ignore[no-untyped-def]
    """Temporary tables the day inserts join: the types with their cumulative weights,
    and every type's property definitions."""
    cursor.execute("CREATE TEMP TABLE bench_type (id text, key text, prefix text, lo int, hi int)")
    cursor.execute(
        "CREATE TEMP TABLE bench_definition (type_id text, property_id text, "
        "value_type text, required boolean, choices text[])"
    )
    total = 0
    for plan in types:
        weight = TYPE_WEIGHTS[plan.key]
        cursor.execute(
            "INSERT INTO bench_type VALUES (%s, %s, %s, %s, %s)",
            [plan.id, plan.key, EXTERNAL_PREFIX[plan.key], total, total + weight],
        )
        total += weight
        for property_id, value_type, required in plan.definitions:
            choices = STRINGS.get(property_id, "alpha,beta,gamma,delta,omega").split(",")
            cursor.execute(
                "INSERT INTO bench_definition VALUES (%s, %s, %s, %s, %s)",
                [plan.id, property_id, value_type, required, choices],
            )


def _events_day(
    ms: tuple[int, int], count: int, sequence: int, *, customers: int, id_ms: int
) -> int:
    """`count` events evenly over [ms[0], ms[1]) and their property records, one
    statement (so the statement-level triggers run once); returns the next sequence.
    The events belong to background customers 1..`customers` (power law), or with
    `customers` 0 to the target (customer id tail 0); `id_ms` is their ids' time part."""
    from django.db import connection

    if count <= 0:
        return sequence
    tail = "0" if customers == 0 else "1 + floor(%(customers)s * random() ^ 2)::bigint"
    customer = public_id_sql("%(cms)s::bigint", tail)
    total = sum(TYPE_WEIGHTS.values())
    sql = f"""
        WITH raw AS (
            SELECT g, %(lo)s::bigint + (g - %(first)s) * (%(hi)s - %(lo)s) / %(count)s AS ms,
                   floor(random() * {total})::int AS pick, random() AS roll
            FROM generate_series(%(first)s, %(first)s + %(count)s - 1) g
        ), made AS (
            SELECT {public_id_sql("ms", "g")} AS id, t.id AS type_id, t.key, t.prefix, g,
                   to_timestamp(ms / 1000.0) AS created_at, roll
            FROM raw JOIN bench_type t ON raw.pick >= t.lo AND raw.pick < t.hi
        ), events AS (
            INSERT INTO events_app_event (id, event_type_id, customer_id, external_id,
                secondary_external_id, data, occurred_at, created_at, state, completed_at,
                failed_at, is_delivered, automation_pending, depth)
            SELECT id, type_id, {customer}, prefix || '-bench-' || g,
                CASE WHEN key = 'purchase' AND roll < 0.6 THEN 'cart-bench-' || g END,
                CASE key WHEN 'api_call' THEN '{{"http_method": "GET"}}'::jsonb
                    ELSE '{{"channel": "web", "campaign": "organic"}}'::jsonb END,
                created_at - interval '30 seconds', created_at,
                CASE WHEN roll < 0.85 THEN 2 WHEN roll < 0.95 THEN 1 ELSE 3 END,
                CASE WHEN roll < 0.85 THEN created_at + interval '250 ms' END,
                CASE WHEN roll >= 0.95 THEN created_at + interval '250 ms' END,
                true, false, 0
            FROM made
            RETURNING id, event_type_id, created_at
        )
        INSERT INTO events_app_propertyrecord (event_id, property_id, property_value,
            created_at)
        SELECT e.id, d.property_id,
            CASE d.value_type
                WHEN 'number' THEN CASE d.property_id
                    WHEN 'amount' THEN to_char(5 + random() * 495, 'FM990.00')
                    ELSE (1 + floor(random() * 20))::text END
                WHEN 'boolean' THEN CASE WHEN random() < 0.8 THEN 'true' ELSE 'false' END
                WHEN 'datetime' THEN to_char((e.created_at + interval '14 days')
                    AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE d.choices[1 + floor(random() * array_length(d.choices, 1))::int]
            END,
            e.created_at
        FROM events e JOIN bench_definition d ON d.type_id = e.event_type_id
        WHERE d.required OR random() < 0.9
    """
    params = {
        "lo": ms[0],
        "hi": ms[1],
        "first": sequence + 1,
        "count": count,
        "cms": id_ms,
        "customers": customers,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return sequence + count
