from __future__ import annotations

# The local HTTP receiver and the guard's loopback exception of the webhook tests.
from tests.automation.webhooks.conftest import allow_loopback, receiver

__all__ = ["allow_loopback", "receiver"]
