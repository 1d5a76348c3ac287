"""What one GET /metrics scrape costs the database when the tables are big.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench_metrics \
        .venv/bin/python bench/metrics.py [--rows 2000000] [--backlog 50000] [--scrapes 20]
                                          [--no-fill]

Fills the tables with --rows events and --rows deliveries (a month of finished ones,
a minute of them at 500/s, --backlog pending and due, retries waiting), --backlog
events awaiting evaluation, 4 x --backlog workflow runs (a quarter due), --backlog
schedules due among 100,000 idle ones and 1,000 endpoints (some failing or disabled);
then prints, for every query a scrape runs, its plan (which index) and its time
(EXPLAIN ANALYZE), and the median and worst time of --scrapes whole scrapes (the
collector, as the view runs it).

The database named by DATABASE_URL is migrated and its tables are TRUNCATED: never
point it at data you want to keep. This prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from common import scratch_database  # noqa: E402

scratch_database("herald_bench_metrics")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from project.metrics import REGISTRY  # noqa: E402

# An id like project.ids.new_public_id for the row `n` created at `at`.
ID = (
    "lpad(to_hex((extract(epoch from {at}) * 1000)::bigint), 12, '0') || lpad(to_hex({n}), 14, '0')"
)

FILL = [
    "TRUNCATE events_app_event, events_app_eventcount, events_app_eventtype, "
    "customers_customer, automation_endpoint, automation_schedule, automation_workflow CASCADE",
    """INSERT INTO customers_customer (id, external_id, email, attributes, tags, created_at,
       updated_at) SELECT lpad(to_hex(n), 26, '0'), 'c' || n, 'c' || n || '@example.com',
       jsonb_build_object(), jsonb_build_array(), now(), now() FROM generate_series(1, 1000) n""",
    """INSERT INTO events_app_eventtype (id, key, name, description, created_at, updated_at)
       VALUES (lpad('1', 26, '0'), 'bench', 'Bench', '', now(), now())""",
    # Events over the last 30 days; the newest --backlog still await evaluation.
    f"""INSERT INTO events_app_event (id, external_id, data, occurred_at, created_at, state,
       is_delivered, automation_pending, depth, customer_id, event_type_id)
       SELECT {ID.format(at="t", n="n")}, NULL, jsonb_build_object(), t, t, 1, true,
       n > {{rows}} - {{backlog}}, 0, lpad(to_hex(1 + n % 1000), 26, '0'), lpad('1', 26, '0')
       FROM generate_series(1, {{rows}}) n,
       LATERAL (SELECT now() - (({{rows}} - n) * interval '30 days' / {{rows}})) AS s(t)""",
    """INSERT INTO automation_endpoint (id, kind, url, description, active, disabled_reason,
       disabled_at, secret, previous_secret, first_failure_at, created_at, updated_at)
       SELECT lpad(to_hex(n), 26, '0'), (ARRAY['subscription','workflow','schedule'])[1 + n % 3],
       'https://h.example.com/' || n, '', n % 50 <> 0, '', NULL, 's', '',
       CASE WHEN n % 20 = 1 THEN now() - interval '2 hours' END, now(), now()
       FROM generate_series(1, 1000) n""",
    # Deliveries: finished over 30 days (the last minute at 500/s), --backlog due, retries.
    f"""INSERT INTO automation_delivery (id, message_id, payload, status, attempt_count,
       retry_step, next_attempt_at, created_at, completed_at, last_error, endpoint_id)
       SELECT {ID.format(at="t", n="n")}, 'msg_' || n, jsonb_build_object(),
       CASE WHEN n % 100 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 0, NULL, t, t, '',
       lpad(to_hex(1 + n % 1000), 26, '0')
       FROM generate_series(1, {{rows}} - 30000) n,
       LATERAL (SELECT now() - interval '1 minute'
                - (({{rows}} - 30000 - n) * interval '30 days' / {{rows}})) AS s(t)""",
    f"""INSERT INTO automation_delivery (id, message_id, payload, status, attempt_count,
       retry_step, next_attempt_at, created_at, completed_at, last_error, endpoint_id)
       SELECT {ID.format(at="t", n="n + 2000000000")}, 'msg_m' || n, jsonb_build_object(),
       'succeeded', 1, 0, NULL, t, t, '', lpad(to_hex(1 + n % 1000), 26, '0')
       FROM generate_series(1, 30000) n,
       LATERAL (SELECT now() - ((30000 - n) * interval '1 minute' / 30000)) AS s(t)""",
    f"""INSERT INTO automation_delivery (id, message_id, payload, status, attempt_count,
       retry_step, next_attempt_at, created_at, last_error, endpoint_id)
       SELECT {ID.format(at="t", n="n + 3000000000")}, 'msg_p' || n, jsonb_build_object(),
       'pending', 0, n % 2,
       CASE WHEN n % 2 = 0 THEN t ELSE now() + interval '1 hour' END, t, '',
       lpad(to_hex(1 + n % 1000), 26, '0')
       FROM generate_series(1, 2 * {{backlog}}) n,
       LATERAL (SELECT now() - ((2 * {{backlog}} - n) * interval '10 minutes' / {{backlog}}))
       AS s(t)""",
    # Workflow runs: 2 x --backlog finished, --backlog waiting and due, --backlog later.
    """INSERT INTO automation_workflow (id, name, conditions, actions, active, reentry,
       version, created_at, updated_at) VALUES (lpad('1', 26, '0'), 'bench',
       jsonb_build_object(), jsonb_build_array(), true, 'every_event', 1, now(), now())""",
    """INSERT INTO automation_workflowrun (id, workflow_version, actions, status, position,
       outcomes, error, explanation, resume_at, created_at, customer_id, event_id,
       workflow_id)
       SELECT e.id, 1, jsonb_build_array(), (ARRAY['succeeded','waiting','succeeded',
       'waiting'])[1 + e.n % 4], 0, jsonb_build_array(), '', jsonb_build_object(),
       CASE e.n % 4 WHEN 1 THEN now() - e.n * interval '1 millisecond'
                    WHEN 3 THEN now() + interval '1 day' END,
       now(), e.customer_id, e.id, lpad('1', 26, '0')
       FROM (SELECT id, customer_id, row_number() OVER () AS n FROM events_app_event
             LIMIT 4 * {backlog}) e""",
    # Schedules: 100,000 idle, --backlog due.
    """INSERT INTO automation_schedule (id, owner, end_date, interval, timezone, callback_url,
       context, tags, status, next_run_at, created_date, updated_at)
       SELECT lpad(to_hex(n), 26, '0'), 'o@example.com', now() + interval '1 year',
       '* * * * *', '', 'https://cb.example.com/', jsonb_build_object(), jsonb_build_array(),
       CASE WHEN n <= {backlog} THEN 'ACTIVE' ELSE 'PAUSED' END,
       now() - (n * interval '1 millisecond'), now(), now()
       FROM generate_series(1, 100000 + {backlog}) n""",
    "VACUUM ANALYZE",
]


def fill(rows: int, backlog: int) -> None:
    with connection.cursor() as cursor:
        for statement in FILL:
            started = time.perf_counter()
            cursor.execute(statement.format(rows=rows, backlog=backlog))
            print(f"  {statement.split()[0]} … {time.perf_counter() - started:.1f} s", flush=True)


def scrape_queries() -> list[str]:
    statements: list[str] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(connection.ops.compose_sql(sql, params) if params else sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        generate_latest(REGISTRY)
    return statements


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--no-fill", action="store_true", help="reuse the rows of a last run")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    if not args.no_fill:
        print(f"Filling: {args.rows} events and deliveries, backlog {args.backlog} ...")
        fill(args.rows, args.backlog)
    print(f"\nQueries of one scrape (count cap {settings.HERALD_METRICS_COUNT_CAP}):")
    with connection.cursor() as cursor:
        for sql in scrape_queries():
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            words = {word for line in plan for word in line.split()}
            indexes = sorted(w for w in words if w.endswith(("_idx", "_pkey")) or w == "Seq")
            total = next(line for line in plan if line.startswith("Execution Time"))
            print(f"- {' '.join(sql.split())[:150]}\n    {total}; {', '.join(indexes)}")
    times = []
    for _ in range(args.scrapes):
        started = time.perf_counter()
        generate_latest(REGISTRY)
        times.append((time.perf_counter() - started) * 1000)
    print(
        f"\nWhole scrape ({args.scrapes} runs): median {statistics.median(times):.1f} ms, "
        f"worst {max(times):.1f} ms ({os.cpu_count()} CPUs, shared machine)"
    )


if __name__ == "__main__":
    main()
