"""Simulation over stored history, and backfill: a workflow replayed over past events.

`replay` streams the events of a period in occurred_at order through the pure engine
with the facts as they were at each event's time; `services` keeps a Simulation row
(what was replayed, firing nothing) or a WorkflowBackfill row (real runs, once per
event, resumable) for it.
"""
