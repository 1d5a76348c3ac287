"""The demo event types: seed_demo loads them, generate_events generates events of them."""

from __future__ import annotations

# (key, name, [(property_id, value type, required)])
DEMO_TYPES = [
    (
        "purchase",
        "Purchase",
        [
            ("amount", "number", True),
            ("currency", "string", True),
            ("has_purchase", "boolean", False),
        ],
    ),
    ("login", "Login", [("method", "string", False)]),
    (
        "api_call",
        "API call",
        [("processing_duration", "number", False), ("api_url", "string", False)],
    ),
    ("signup", "Sign-up", [("plan", "string", True), ("trial_ends_at", "datetime", False)]),
]
