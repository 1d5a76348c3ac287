"""Idempotency-Key for configuration POSTs: a retried request gets the first answer."""
