"""Delivery policies: frequency caps and quiet hours over a workflow's actions."""
