"""Tests of every place where PostgreSQL and SQLite take different code, run on both.

They run in the normal (PostgreSQL) run, and scripts/test runs this package a second
time with DATABASE_URL=sqlite:///… (the embedded default's database). They go through
public surfaces only — the HTTP API, services, periodic jobs (project.background.run_job),
management commands, admin pages — so they keep holding while internals move. Background
work runs inline (no broker); `after_commit` (conftest.py) runs what a block hands on
after commit. Nothing here needs Redis or a Celery worker.

Where the code branches on the database (`git grep -n vendor`), and what SQLite does:

Module / function                 SQLite branch (PostgreSQL branch)                   test_….py
--------------------------------  --------------------------------------------------  ----------
events_app/ingest_references.py   `col IN (%s, ...)`, a parameter per value           ingestion
  _in (the reference read)        (one JSON array parameter)
project/sql.py fetch_all          Django's cursor (a server-binding psycopg cursor,   ingestion
                                  prepared): every ingest's reference read
events_app/ingest_store.py        ORM path in a transaction: skip stored refs, then   ingestion,
  events_store                    bulk_create the new customers of the events         delivery
                                  stored (by external or anonymous id), events,
                                  records
                                  (events_app/ingest_pg.py: one statement)
automation/webhooks/sender_sql.py the claim UPDATE alone, the endpoint read by a      delivery
  _claim_sql, claim_update        second query, no SKIP LOCKED in the next-of-
                                  endpoint claim (claim + endpoint, one prepared
                                  statement)
automation/webhooks/sender_sql.py UPDATE the delivery, then INSERT the attempt if the  delivery,
  record_statement                delivery still exists, in a transaction (one        schedules,
                                  prepared statement, FOR KEY SHARE of the delivery)  rate_limits
project/cascade.py cascade_lock   nothing: SQLite locks the whole database (FOR       rate_limits
                                  UPDATE of the root and its direct children)
automation/schedules/scheduler.py fire_claimed row by row through the ORM             schedules
  fire_claimed (tick, run now)    (`_fire_orm`); the claim also reads the context
                                  (one set-based statement per chunk)
automation/schedules/selectors.py one EXISTS over json_each(tags) per tag             schedules
  _with_all_tags                  (tags @> [...], served by a GIN index)
automation/schedules/selectors.py isArray: EXISTS over json_each(context, path) with  schedules
  _with_context                   a JSON type check (path @> [value])
automation/workflows/evaluation.py nothing: SQLite serializes write transactions       workflows
  _advisory_locks                 (pg_advisory_xact_lock per workflow and customer)   (re-entry)
automation/workflows/policies/    nothing: SQLite serializes write transactions       delivery_
  services.py _lock               (pg_advisory_xact_lock per policy and customer)     policies
automation/due.py                 one UPDATE ... WHERE id IN (SELECT ... LIMIT)       workflows,
  due_events_claim                RETURNING, no lock clause (UPDATE ... FROM (SELECT  delivery
                                  ... FOR UPDATE SKIP LOCKED) RETURNING)
automation/workflows/evaluation.py bulk_create(ignore_conflicts) + SELECT of the       workflows
  runs_insert                     pending ids (INSERT ... json_to_recordset ... ON
                                  CONFLICT ... RETURNING)
automation/segments/membership.py nothing: SQLite serializes write transactions       segments
  _lock_customers                 (FOR NO KEY UPDATE of the customers' rows)
automation/segments/locks.py      nothing: SQLite serializes write transactions       segments
  segments_lock_shared            (advisory locks a build holds, refreshes share)
automation/segments/sql_build.py  None: the general path builds (one scan per table    segments
  compile_segment (a full build)  into temporary tables, one statement writes)
events_app/selectors.py           COUNT(*) always (sums the trigger-maintained        lists_and_
  event_count                     EventCount rows: all events, or one type)           counts,
                                                                                      deletes,
                                                                                      metrics
customers/selectors.py            EXISTS over json_each(tags) (tags @> [tag], served   admin_find
  customers_with_tag              by the GIN index customer_tags_gin_idx)
customers/migrations/0002,        no indexes: SQLite's LIKE is case-insensitive        admin_find
events_app/migrations/0011        (upper(col) text_pattern_ops prefix indexes)
project/admin/lists.py            None, so the admin counts (pg_class.reltuples)      lists_and_
  table_row_estimate                                                                  counts
events_app/api_clients.py         the raw read's naive last_used_at is made UTC       lists_and_
  api_client_authenticate         (aware already)                                     counts
events_app/partitions/ondemand.py nothing: one table (the months of the rows inserted   ingestion,
  partitions_cover                get partitions first if they have none)              generate_
                                                                                      events
events_app/management/commands/   batched INSERTs (COPY)                              generate_
  generate_events.py handle                                                           events
events_app/migrations/0003, 0004  no counter triggers, no backfill (reads COUNT(*))   lists_and_
                                                                                      counts
automation/migrations/0002        no GIN index on schedule tags                       schedules
events_app/activity.py            GROUP BY over the events (sums the hourly counters  dashboard
  event_hour_counts               the triggers keep, events_app 0012/0013)
events_app/activity.py            bulk_create, UPDATE-or-INSERT the hour's count,     dashboard
  rejections_record               prune, in a transaction (one statement of CTEs)
events_app/activity.py            nothing: no slots to fold (one statement)           dashboard
  hour_counts_fold
automation/activity.py            GROUP BY over the rows (sums the hourly counts      dashboard
  created_per_bucket              the triggers keep, automation 0015/0016)
automation/activity.py            nothing: no slots to fold (one statement)           dashboard
  activity_hour_counts_fold
project/admin/trends.py           rows' ids bucketed in Python (the database buckets  dashboard
  _count_ids                      the ids from the (status, id) index)

Also different without a `vendor` test: `select_for_update(skip_locked=True)` (the
scheduler's claim, the delivery dispatcher, a run's step) is dropped on SQLite, whose
IMMEDIATE transactions serialize writers; the set-based cascades (project/cascade.py)
run the same statements on both, the event counters following on PostgreSQL only.
"""
