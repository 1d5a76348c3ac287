"""factory-boy factories, one per model."""

from __future__ import annotations

import factory
from django.utils import timezone

from customers.models import Customer
from events_app.api_clients import API_KEY_PREFIX
from events_app.models import ApiClient, Event, EventType, PropertyDefinition, PropertyRecord


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"cust-{n:06d}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    attributes = factory.LazyFunction(lambda: {"country": "CZ"})


class EventTypeFactory(factory.django.DjangoModelFactory[EventType]):
    class Meta:
        model = EventType

    key = factory.Sequence(lambda n: f"type_{n}")
    name = factory.LazyAttribute(lambda o: o.key.replace("_", " ").title())
    description = ""


class PropertyDefinitionFactory(factory.django.DjangoModelFactory[PropertyDefinition]):
    class Meta:
        model = PropertyDefinition

    event_type = factory.SubFactory(EventTypeFactory)
    property_id = factory.Sequence(lambda n: f"prop_{n}")
    name = factory.LazyAttribute(lambda o: o.property_id)
    value_type = PropertyDefinition.ValueType.STRING
    required = False


class EventFactory(factory.django.DjangoModelFactory[Event]):
    class Meta:
        model = Event

    event_type = factory.SubFactory(EventTypeFactory)
    customer = factory.SubFactory(CustomerFactory)
    external_id = factory.Sequence(lambda n: f"ref-{n:08d}")
    data = factory.LazyFunction(lambda: {"test": 10})
    occurred_at = factory.LazyFunction(timezone.now)


class PropertyRecordFactory(factory.django.DjangoModelFactory[PropertyRecord]):
    class Meta:
        model = PropertyRecord

    event = factory.SubFactory(EventFactory)
    created_at = factory.LazyAttribute(lambda o: o.event.created_at)
    property_id = factory.Sequence(lambda n: f"prop_{n}")
    property_value = "true"


class ApiClientFactory(factory.django.DjangoModelFactory[ApiClient]):
    """An API client; the plain secret is `f"{API_KEY_PREFIX}test-{name}"`."""

    class Meta:
        model = ApiClient

    name = factory.Sequence(lambda n: f"client-{n}")
    secret_hash = factory.LazyAttribute(
        lambda o: ApiClient.hash_secret(f"{API_KEY_PREFIX}test-{o.name}")
    )
    secret_prefix = factory.LazyAttribute(lambda o: f"{API_KEY_PREFIX}test-{o.name}"[:12])
    scopes = "read,write"
