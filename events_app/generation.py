"""Synthetic events for `manage.py generate_events`: event types, and events in time
order whose property records are valid against their type's definitions.

The command (events_app/management/commands/generate_events.py) writes what the
Generator yields, with COPY on PostgreSQL and batched INSERTs elsewhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from events_app.demo import DEMO_TYPES, demo_event_type_ensure
from events_app.models import PropertyDefinition

# seed_demo's types, plus optional properties so an event carries ~3 records.
EXTRA_PROPERTIES: dict[str, list[tuple[str, str, bool]]] = {
    "purchase": [("items", "number", False)],
    "login": [("device", "string", False), ("success", "boolean", False)],
    "api_call": [("status_code", "number", False)],
    "signup": [("referrer", "string", False)],
}
GENERATED_TYPES = [
    (key, name, [*props, *EXTRA_PROPERTIES.get(key, [])]) for key, name, props in DEMO_TYPES
]
# How often each type occurs (seed_demo's weights); generated extra types weigh 2.
TYPE_WEIGHTS = {"purchase": 3, "login": 5, "api_call": 8, "signup": 1}
# Types beyond the demo ones get these definitions.
CUSTOM_PROPERTIES = [
    ("label", "string", True),
    ("value", "number", False),
    ("flag", "boolean", False),
]
EXTERNAL_ID_PREFIX = {"purchase": "ORD", "login": "LGN", "api_call": "REQ", "signup": "SGN"}
OPTIONAL_PROPERTY_RATE = 0.9

CHANNELS = ("web", "web", "web", "ios", "android")
CAMPAIGNS = ("spring_sale", "newsletter", "retargeting", "organic", "partner")
COUNTRIES = ("CZ", "DE", "US", "GB", "FR", "PL", "SK", "AT")
# Realistic values for the known property ids; others get a value of their type.
STRING_VALUES: dict[str, tuple[str, ...]] = {
    "currency": ("EUR", "USD", "CZK", "GBP"),
    "method": ("password", "sso", "magic_link"),
    "api_url": ("/v1/orders", "/v1/users", "/v1/search", "/v1/carts", "/v1/payments"),
    "plan": ("free", "pro", "team"),
    "device": ("desktop", "mobile", "tablet"),
    "referrer": ("google", "facebook", "newsletter", "direct", "partner"),
}
GENERIC_STRINGS = ("alpha", "beta", "gamma", "delta", "omega")
STATUS_CODES = ("200", "200", "200", "201", "204", "400", "404", "500")

DEFAULT_CHUNK = 20_000
CUSTOMERS_PER_EVENT = 20


@dataclass(frozen=True)
class TypePlan:
    """One event type as the generator needs it: id, weight, definitions."""

    id: str
    key: str
    weight: int
    prefix: str
    definitions: list[tuple[str, str, bool]]


@dataclass(slots=True)
class GeneratedEvent:
    id: str
    event_type_id: str
    customer_id: str
    external_id: str
    secondary_external_id: str | None
    data: str
    occurred_ms: int
    created_ms: int
    state: int
    records: list[tuple[str, str]] = field(default_factory=list)


def public_id_at(millis: int, rng: random.Random) -> str:
    """project.ids.new_public_id for a given time: 12 hex of millis, 14 random hex."""
    return f"{millis:012x}{rng.getrandbits(56):014x}"


def run_tag() -> str:
    """Base-36 milliseconds: makes this run's external ids unique against earlier runs."""
    millis = time.time_ns() // 1_000_000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while millis:
        millis, rest = divmod(millis, 36)
        out = digits[rest] + out
    return out


def iso_millis(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


class Generator:
    """Produces time-ordered events with property records valid for their type."""

    def __init__(
        self,
        *,
        rng: random.Random,
        types: list[TypePlan],
        customer_ids: list[str],
        start_ms: int,
        end_ms: int,
        tag: str,
    ) -> None:
        self.rng = rng
        self.types = types
        self.weights = [t.weight for t in types]
        self.customer_ids = customer_ids
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.tag = tag
        self.sequence = dict.fromkeys((t.id for t in types), 0)

    def events(self, total: int, chunk: int) -> Iterator[list[GeneratedEvent]]:
        """Chunks of events; each chunk covers its own slice of the time range."""
        span = self.end_ms - self.start_ms
        for first in range(0, total, chunk):
            size = min(chunk, total - first)
            lo = self.start_ms + span * first // total
            hi = self.start_ms + span * (first + size) // total
            moments = sorted(self.rng.randint(lo, max(lo, hi - 1)) for _ in range(size))
            picks = self.rng.choices(self.types, weights=self.weights, k=size)
            # Ids are generated in time order; equal milliseconds get sorted
            # random tails, so id order == created_at order, as with new_public_id.
            ids = [public_id_at(ms, self.rng) for ms in moments]
            ids.sort()
            yield [self._event(i, ms, t) for i, ms, t in zip(ids, moments, picks, strict=True)]

    def _event(self, event_id: str, created_ms: int, plan: TypePlan) -> GeneratedEvent:
        rng = self.rng
        self.sequence[plan.id] += 1
        seq = self.sequence[plan.id]
        # Power-law activity: a few customers produce many events.
        customer = self.customer_ids[int(len(self.customer_ids) * rng.random() ** 2)]
        roll = rng.random()
        state = 2 if roll < 0.85 else (1 if roll < 0.95 else 3)
        channel = rng.choice(CHANNELS)
        if plan.key == "purchase":
            data = f'{{"channel": "{channel}", "cart_size": {rng.randint(1, 9)}}}'
            secondary = f"cart-{self.tag}-{seq:07d}" if rng.random() < 0.7 else None
        elif plan.key == "api_call":
            data = f'{{"http_method": "{rng.choice(("GET", "GET", "POST", "PUT"))}"}}'
            secondary = None
        else:
            data = f'{{"channel": "{channel}", "campaign": "{rng.choice(CAMPAIGNS)}"}}'
            secondary = None
        return GeneratedEvent(
            id=event_id,
            event_type_id=plan.id,
            customer_id=customer,
            external_id=f"{plan.prefix}-{self.tag}-{seq:07d}",
            secondary_external_id=secondary,
            data=data,
            # The client's clock: up to two minutes before receipt.
            occurred_ms=created_ms - rng.randint(0, 120_000),
            created_ms=created_ms,
            state=state,
            records=self._records(plan, created_ms),
        )

    def _records(self, plan: TypePlan, created_ms: int) -> list[tuple[str, str]]:
        rng = self.rng
        out: list[tuple[str, str]] = []
        for property_id, value_type, required in plan.definitions:
            if not required and rng.random() > OPTIONAL_PROPERTY_RATE:
                continue
            out.append((property_id, self._value(property_id, value_type, created_ms)))
        return out

    def _value(self, property_id: str, value_type: str, created_ms: int) -> str:
        """Canonical text, as PROPERTY_TYPES[value_type].to_text would store it."""
        rng = self.rng
        if value_type == PropertyDefinition.ValueType.NUMBER:
            if property_id == "amount":
                return f"{rng.uniform(5, 500):.2f}"
            if property_id == "status_code":
                return rng.choice(STATUS_CODES)
            if property_id == "processing_duration":
                return str(rng.randint(3, 900))
            return str(rng.randint(1, 20))
        if value_type == PropertyDefinition.ValueType.BOOLEAN:
            if property_id == "has_purchase":
                return "true"
            return "true" if rng.random() < 0.8 else "false"
        if value_type == PropertyDefinition.ValueType.DATETIME:
            moment = datetime.fromtimestamp(created_ms // 1000, tz=UTC) + timedelta(days=14)
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return rng.choice(STRING_VALUES.get(property_id, GENERIC_STRINGS))


def ensure_event_types(count: int) -> list[TypePlan]:
    """The first `count` generated types, created through the service when missing.

    An existing type with the same key is reused with ITS definitions, so the
    generated values stay valid whatever the type declares.
    """
    wanted = GENERATED_TYPES[:count]
    for n in range(len(GENERATED_TYPES), count):
        wanted.append((f"generated_{n + 1:02d}", f"Generated {n + 1}", CUSTOM_PROPERTIES))
    plans: list[TypePlan] = []
    for key, name, props in wanted:
        event_type = demo_event_type_ensure(key, name, props)
        definitions = list(
            PropertyDefinition.objects.filter(event_type=event_type)
            .order_by("property_id")
            .values_list("property_id", "value_type", "required")
        )
        plans.append(
            TypePlan(
                id=event_type.id,
                key=key,
                weight=TYPE_WEIGHTS.get(key, 2),
                prefix=EXTERNAL_ID_PREFIX.get(key, key.upper()[:3]),
                definitions=definitions,
            )
        )
    return plans


# ---------------------------------------------------------------- writers
