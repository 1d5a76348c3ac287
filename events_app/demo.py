"""The demo event types: seed_demo loads them, generate_events generates events of them."""

from __future__ import annotations

from events_app.event_types import PropertyDefinitionInput, event_type_create
from events_app.models import EventType

TypeSpec = tuple[str, str, list[tuple[str, str, bool]]]

# (key, name, [(property_id, value type, required)])
DEMO_TYPES: list[TypeSpec] = [
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


def demo_event_type_ensure(
    key: str, name: str, properties: list[tuple[str, str, bool]]
) -> EventType:
    """The event type with `key`, created through the service (with `properties`:
    (property_id, value type, required)) when missing; an existing one is kept as it is."""
    event_type = EventType.objects.filter(key=key).first()
    if event_type is not None:
        return event_type
    return event_type_create(
        key=key,
        name=name,
        properties=[
            PropertyDefinitionInput(property_id=p, name=p.replace("_", " "), type=t, required=r)
            for p, t, r in properties
        ],
    )
