from __future__ import annotations

from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Wire automation into the layers below it, which never import it: the ingest
        hook (events_app.ingest_hooks), the periodic jobs (project.background) and the
        Celery tasks of every process."""
        from automation import tasks  # noqa: F401 - registers the tasks enqueued by name
        from automation.activity import activity_hour_counts_fold
        from automation.due import due_events_drain
        from automation.identity import (
            merge_automate,
            merge_segments_preview,
            merge_undone_follow,
        )
        from automation.ingest import INGEST_HOOK
        from automation.metrics import metrics_register
        from automation.privacy import privacy_hooks_register
        from automation.schedules.scheduler import dispatch_due_schedules
        from automation.schedules.services import schedule_mark_called
        from automation.segments.hooks import transition_hook_register
        from automation.segments.retention import segments_events_dropped
        from automation.segments.services import (
            segments_refresh_customers_on_commit,
            segments_sweep_due,
        )
        from automation.timeline import timeline_register
        from automation.webhooks.models import Endpoint
        from automation.webhooks.sender import CALLED_HOOKS, dispatch_due_deliveries
        from automation.workflows.policies.services import (
            policy_counters_merged,
            policy_usage_prune,
        )
        from automation.workflows.runner import automation_tick
        from automation.workflows.segment_triggers import segment_transitions_start
        from automation.workflows.simulation.services import simulations_resume_stale
        from customers.hooks import customer_change_hook_register
        from customers.identity.hooks import (
            merge_preview_hook_register,
            merge_undone_hook_register,
            merged_hook_register,
        )
        from events_app.ingest_hooks import ingest_hook_register
        from events_app.retention_hooks import retention_hook_register
        from project.background import periodic_job_register

        # Events ingested are flagged with their due work (deliveries, evaluation).
        ingest_hook_register(INGEST_HOOK)
        # A schedule's callback endpoint was called: the schedule becomes ACTIVE.
        CALLED_HOOKS[Endpoint.Kind.SCHEDULE] = lambda endpoint_id: schedule_mark_called(
            endpoint_id=endpoint_id
        )
        # Due retries, lost broker messages and attempts of killed workers.
        periodic_job_register(
            name="deliveries.dispatch", interval_seconds=1.0, func=dispatch_due_deliveries
        )
        # Due scheduled callbacks, once per tick across all processes.
        periodic_job_register(
            name="schedules.dispatch", interval_seconds=1.0, func=dispatch_due_schedules
        )
        # Due events whose wake-up was lost (or not sent: the broker was down).
        periodic_job_register(name="due.claim", interval_seconds=1.0, func=due_events_drain)
        # Due waits and runs of killed workers.
        periodic_job_register(name="workflows.tick", interval_seconds=1.0, func=automation_tick)
        # Simulations and backfills whose worker went quiet (killed, message lost).
        periodic_job_register(
            name="workflows.simulations_resume",
            interval_seconds=30.0,
            func=simulations_resume_stale,
        )
        # Delivery policies' ledger rows older than any cap's window.
        periodic_job_register(
            name="policies.prune", interval_seconds=3600.0, func=policy_usage_prune
        )
        # GET /metrics: pending work per queue, delivery outcomes, endpoint health.
        metrics_register()
        # Segments: a customer's fields changed (customers.hooks), and the sweep of
        # answers that change with time alone (windows running out) and lost builds.
        customer_change_hook_register(
            "segments",
            lambda customer_ids, fields: segments_refresh_customers_on_commit(
                customer_ids=customer_ids, fields=fields
            ),
        )
        periodic_job_register(name="segments.sweep", interval_seconds=5.0, func=segments_sweep_due)
        # Workflows triggered by entering / exiting a segment: a run per transition, made
        # in the transaction that made the transition.
        transition_hook_register("workflows", segment_transitions_start)
        # Retention dropped a month of events: rebuild the segments that read that far.
        retention_hook_register(
            "segments",
            lambda created_from, created_to: segments_events_dropped(
                created_from=created_from, created_to=created_to
            ),
        )
        # The dashboard's hourly counts of runs and deliveries: past hours into one row.
        periodic_job_register(
            name="automation.hour_counts_fold",
            interval_seconds=900.0,
            func=activity_hour_counts_fold,
        )
        # Customer merges (customers.identity): the dry run's segment preview, and the
        # customer.merged event with the workflows that take merged events.
        merge_preview_hook_register("segments", merge_segments_preview)
        merged_hook_register("automation", merge_automate)
        # Runs made on the primary for events an undo gives back follow those events.
        merge_undone_hook_register("runs and deliveries", merge_undone_follow)
        # Delivery policies' counters of both customers are recounted from the moved ledger.
        merged_hook_register("policies", policy_counters_merged)
        merge_undone_hook_register("policies", policy_counters_merged)
        # A customer's story in the admin (customers.timeline): segment stays, and the
        # runs and deliveries under each event.
        timeline_register()
        # Privacy requests (customers.privacy): deliveries redacted on delete, the
        # `customer.deleted` webhook, and runs, stays and deliveries in exports.
        privacy_hooks_register()
