"""Customers API shapes: strict input under the `customer` wrapper, and output."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from customers.models import Customer
from customers.selectors import customer_external_aliases
from project.api.strict import NonEmptyPatchMixin, StrictCharField, StrictSerializer


def _tag() -> StrictCharField:
    return StrictCharField(max_length=100)


class CustomerSerializer(serializers.ModelSerializer):
    customer_id = serializers.CharField(source="id")
    external_id = serializers.CharField(
        allow_null=True, help_text="Your own id for the customer; null for an anonymous customer."
    )
    anonymous_id = serializers.CharField(
        allow_null=True,
        help_text="The visitor id events named an anonymous customer by (kept once identified).",
    )
    is_anonymous = serializers.BooleanField(help_text="True while the customer has no external_id.")
    aliases = serializers.SerializerMethodField(
        help_text="Other external ids whose events land on this customer, sorted."
    )
    # CharField, not EmailField: "" (no address) must not break a client that
    # validates the `email` format of responses.
    email = serializers.CharField(help_text='The address, or "" when unknown.')
    attributes = serializers.DictField()
    tags = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Customer
        fields = [
            "customer_id",
            "external_id",
            "anonymous_id",
            "is_anonymous",
            "aliases",
            "email",
            "attributes",
            "tags",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, customer: Customer) -> list[str]:
        return customer_external_aliases(customer=customer)


class CustomerFieldsIn(StrictSerializer):
    external_id = StrictCharField(max_length=255, help_text="Your own id for the customer; unique.")
    # No default="": the OpenAPI document would show "" as a (invalid) email default.
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    # DictField, not JSONField: attributes must be an object (a JSON-encoded
    # string is rejected, unlike an event's `data`).
    attributes = serializers.DictField(required=False, default=dict)
    tags = serializers.ListField(child=_tag(), required=False, default=list)


class CustomerFieldsPatchIn(NonEmptyPatchMixin, StrictSerializer):
    external_id = StrictCharField(max_length=255, required=False)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    attributes = serializers.DictField(
        required=False, help_text="Replaces the stored attributes as a whole."
    )
    tags = serializers.ListField(
        child=_tag(), required=False, help_text="Replaces the stored tags as a whole."
    )


class CustomerCreateIn(StrictSerializer):
    customer = CustomerFieldsIn()


class CustomerUpdateIn(StrictSerializer):
    customer = CustomerFieldsPatchIn()
