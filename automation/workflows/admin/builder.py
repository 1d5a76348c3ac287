"""The rule builder as Django form fields: condition trees and action lists edited with
pickers and typed inputs (automation/static/automation/builder.js), the JSON kept in
the field's textarea as the model and as the "advanced" view.

Reusable in one line by any admin form whose field holds a condition tree or action
list::

    condition = ConditionTreeField(flavour="segment", root="condition", required=False)

and `place_node_errors(form, errors)` shows a service's {path: [messages]} both on
the field (as before) and at the node of the builder each path names.

The catalogue each widget renders beside it is generated from the registries
(operators, leaf kinds, actions) and the database (event types with their declared
properties, segments), never kept as a second list in the JavaScript.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from django import forms
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from automation.segments.conditions import AGGREGATE_FNS, RECENCY_OPS
from automation.segments.hooks import ENTERED, TRANSITIONS
from automation.segments.models import Segment
from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.conditions.operators import NUMERIC_OPS, REGISTRY
from automation.workflows.conditions.schema import (
    CUSTOMER_FIELD_TYPES,
    EVENT_FIELD_TYPES,
    operator_catalogue,
)
from automation.workflows.models import Workflow
from events_app.models import EventType, PropertyDefinition
from project.admin.display import PrettyJSONFormField

# The pickers a leaf's subject is chosen with. Several are one subject of the tree
# (a customer tag is `{"customer": "tags", …}`); the builder tells them apart by path.
SUBJECT_LABELS = {
    "property": "Event property",
    "event": "Event field",
    "event_data": "Event data (path)",
    "customer": "Customer field",
    "customer_attribute": "Customer attribute",
    "customer_tag": "Customer tag",
    "count": "Frequency (number of events)",
    "first": "First time",
    "aggregate": "Total / average of a property",
    "last": "Last time",
    "segment": "Member of segment",
}
FLAVOURS: dict[str, tuple[str, ...]] = {
    "workflow": (
        "property",
        "event",
        "event_data",
        "customer",
        "customer_attribute",
        "customer_tag",
        "count",
        "first",
        "segment",
    ),
    "segment": (
        "customer",
        "customer_attribute",
        "customer_tag",
        "count",
        "aggregate",
        "last",
        "segment",
    ),
}
RECENCY_LABELS = {"more_than": "more than … ago", "within": "within the last"}
FIELD_LABELS = {
    "event_id": "event id",
    "event_type": "event type",
    "external_id": "external id",
    "secondary_external_id": "secondary external id",
    "occurred_at": "occurred at",
    "created_at": "created at",
    "depth": "depth (emitted-event chain)",
    "customer_id": "customer id",
    "email": "email",
}

# How the builder edits each field an action declares (Action.fields), by field name.
ACTION_FIELD_KINDS = {
    "url": "url",
    "attributes": "keyvalue",
    "tags": "list",
    "event_type": "event_type",
    "property_records": "records",
    "data": "json",
    "duration": "duration",
    "endpoint_id": "hidden",  # set when the workflow is saved; kept as it is
}
ACTION_FIELD_LABELS = {
    "url": "URL",
    "attributes": "Attributes",
    "tags": "Tags",
    "event_type": "Event type",
    "property_records": "Property values",
    "data": "Data (JSON)",
    "duration": "Wait for",
}


def _event_types() -> list[dict[str, Any]]:
    properties: dict[str, list[dict[str, str]]] = {}
    for type_id, prop, name, value_type in PropertyDefinition.objects.order_by(
        "event_type_id", "property_id"
    ).values_list("event_type_id", "property_id", "name", "value_type"):
        properties.setdefault(type_id, []).append({"id": prop, "name": name, "type": value_type})
    return [
        {"id": pk, "key": key, "name": name, "properties": properties.get(pk, [])}
        for pk, key, name in EventType.objects.order_by("key").values_list("pk", "key", "name")
    ]


def _fields(types: Mapping[str, str], skip: set[str]) -> list[dict[str, str]]:
    return [
        {"path": path, "type": kind, "label": FIELD_LABELS.get(path, path)}
        for path, kind in types.items()
        if path not in skip
    ]


def conditions_catalogue(flavour: str = "workflow") -> dict[str, Any]:
    """What the condition builder offers, from the registries and the database."""
    return {
        "subjects": [{"kind": kind, "label": SUBJECT_LABELS[kind]} for kind in FLAVOURS[flavour]],
        "operators": operator_catalogue(),
        "count_ops": [op for op in REGISTRY if op in NUMERIC_OPS],
        "recency_ops": [{"value": op, "label": RECENCY_LABELS.get(op, op)} for op in RECENCY_OPS],
        "aggregate_fns": list(AGGREGATE_FNS),
        "within_optional": flavour == "segment",
        "event_fields": _fields(EVENT_FIELD_TYPES, {"data"}),
        "customer_fields": _fields(CUSTOMER_FIELD_TYPES, {"tags", "attributes"}),
        "event_types": _event_types(),
        "segments": [
            {"key": key, "name": name}
            for key, name in Segment.objects.order_by("key").values_list("key", "name")
        ],
    }


def actions_catalogue() -> dict[str, Any]:
    """Every registered action type with the fields its handler declares."""
    actions = []
    for action_type, handler in ACTIONS.items():
        names = sorted(handler.fields, key=lambda n: list(ACTION_FIELD_KINDS).index(n))
        actions.append(
            {
                "type": action_type,
                "label": action_type.replace("_", " ").capitalize(),
                "help": (handler.__doc__ or "").strip().split("\n")[0],
                "fields": [
                    {
                        "name": name,
                        "kind": ACTION_FIELD_KINDS[name],
                        "label": ACTION_FIELD_LABELS.get(name, name),
                        "required": name in handler.required,
                    }
                    for name in names
                ],
            }
        )
    return {
        "actions": actions,
        "event_types": _event_types(),
        # A key every action may carry (actions.base.COMMON_FIELDS): a checkbox per action.
        "exempt_flag": {"name": "exempt_from_policy", "label": "Exempt from the delivery policy"},
    }


class BuilderWidget(forms.Textarea):
    """The JSON textarea, wrapped for builder.js with its catalogue and node errors."""

    def __init__(
        self,
        *,
        builder: str,
        catalogue: Callable[[], dict[str, Any]],
        root: str,
        triggers: str | None = None,
    ) -> None:
        super().__init__(attrs={"rows": 8, "cols": 80, "class": "herald-json-input"})
        self.builder, self.catalogue, self.root, self.triggers = builder, catalogue, root, triggers
        self.node_errors: dict[str, list[str]] = {}

    class Media:
        js = ("automation/builder.js",)
        css = {"all": ("automation/builder.css",)}

    def __deepcopy__(self, memo: dict[int, Any]) -> BuilderWidget:
        # Each form gets its own copy of the field's widget; Django's copies only `attrs`,
        # so without this one request's node errors would show on the next form.
        copied = super().__deepcopy__(memo)
        copied.node_errors = {}
        return copied

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        textarea = super().render(name, value, attrs, renderer)
        catalogue_id, errors_id = f"{name}-builder-catalogue", f"{name}-builder-errors"
        return format_html(
            '<div class="herald-builder" data-builder="{}" data-root="{}" data-catalogue="{}" '
            'data-errors="{}"{}>{}</div>{}{}',
            self.builder,
            self.root,
            catalogue_id,
            errors_id,
            format_html(' data-triggers="{}"', self.triggers) if self.triggers else "",
            textarea,
            json_script(self.catalogue(), catalogue_id),
            json_script(self.node_errors, errors_id),
        )


class StorableJSONField(PrettyJSONFormField):
    """JSON that PostgreSQL can store as jsonb: no NUL character, no lone surrogate,
    nesting Python can parse; anything else is a form error, never a server error."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("The JSON is nested too deeply.") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        text = super().prepare_value(value)
        try:
            str(text).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, shown back escaped
            return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True)
        return text

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return super().has_changed(initial, data)
        except RecursionError:
            return True

    def validate(self, value: Any) -> None:
        super().validate(value)
        try:
            text = json.dumps(value, ensure_ascii=False)
            text.encode("utf-8")
        except (UnicodeEncodeError, RecursionError, ValueError):
            raise forms.ValidationError("The JSON holds text that cannot be stored.") from None
        if "\x00" in text or "\\u0000" in text:
            raise forms.ValidationError("The JSON may not contain NUL characters.")


class ConditionTreeField(StorableJSONField):
    """A condition tree edited with the builder (`flavour`: "workflow" or "segment")."""

    def __init__(
        self,
        *,
        flavour: str = "workflow",
        root: str = "conditions",
        triggers: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "widget",
            BuilderWidget(
                builder="conditions",
                catalogue=lambda: conditions_catalogue(flavour),
                root=root,
                triggers=triggers,
            ),
        )
        super().__init__(**kwargs)


class ActionListField(StorableJSONField):
    """A workflow's action list edited with one editor per registered action type."""

    def __init__(self, *, root: str = "actions", **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget", BuilderWidget(builder="actions", catalogue=actions_catalogue, root=root)
        )
        super().__init__(**kwargs)


def place_node_errors(
    form: forms.BaseForm,
    errors: Mapping[str, list[str]],
    field_of_path: Callable[[str], str | None] | None = None,
) -> None:
    """Show {path: [messages]} on the form: at the builder's node and on the field.

    `field_of_path` maps a path to its form field (default: the path's head, as in
    `conditions.all[2].op` -> `conditions`).
    """

    def head(path: str) -> str | None:
        return path.split(".", 1)[0].split("[", 1)[0]

    for path, messages in errors.items():
        field = (field_of_path or head)(path)
        widget = form.fields[field].widget if field in form.fields else None
        if isinstance(widget, BuilderWidget):
            widget.node_errors.setdefault(path, []).extend(messages)
        for message in messages:
            # Shown in place: on the field, with the faulty node's path.
            form.add_error(field, f"{path}: {message}" if field != path else message)


# ---------------------------------------------------------------- re-entry


REENTRY_CHOICES = [
    ("every", "Every matching event"),
    ("once", "Once per customer, ever"),
    ("per", "Once per customer per period"),
]


class ReentryWidget(forms.MultiWidget):
    """A choice plus, for "once per customer per …", an ISO 8601 period with its echo."""

    def __init__(self) -> None:
        super().__init__(
            [
                forms.Select(choices=REENTRY_CHOICES),
                forms.TextInput(
                    attrs={
                        "class": "herald-duration herald-reentry-period",
                        "placeholder": "P7D",
                        "size": 10,
                    }
                ),
            ]
        )

    class Media:
        js = ("automation/builder.js",)
        css = {"all": ("automation/builder.css",)}

    def decompress(self, value: Any) -> list[str]:
        text = str(value or Workflow.EVERY_EVENT)
        if text.startswith(Workflow.PER_PREFIX):
            return ["per", text.removeprefix(Workflow.PER_PREFIX)]
        if text == Workflow.ONCE_PER_CUSTOMER:
            return ["once", ""]
        if text == Workflow.EVERY_EVENT:
            return ["every", ""]
        return ["per", text]  # not a known policy: shown as it is; the service says why

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        # A form posted as one text value (a script, an older page) still works.
        if f"{name}_0" not in data and name in data:
            return self.decompress(data[name])
        return super().value_from_datadict(data, files, name)

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        return format_html(
            '<div class="herald-reentry" data-reentry>{}</div>',
            super().render(name, value, attrs, renderer),
        )


class ReentryField(forms.MultiValueField):
    """Compresses the choice and period into the stored text (`once_per_customer_per:P7D`)."""

    widget = ReentryWidget

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            fields=[forms.ChoiceField(choices=REENTRY_CHOICES), forms.CharField(required=False)],
            require_all_fields=False,
            **kwargs,
        )

    def compress(self, data_list: list[str]) -> str:
        choice, period = [*data_list, "", ""][:2]
        if choice == "once":
            return Workflow.ONCE_PER_CUSTOMER
        if choice == "per":
            return f"{Workflow.PER_PREFIX}{(period or '').strip()}"
        return Workflow.EVERY_EVENT


# ---------------------------------------------------------------- segment triggers


class SegmentTriggersField(forms.MultipleChoiceField):
    """`trigger_segments` picked from the segments ("Enters “At risk”", "Leaves
    “VIPs”"), not typed as JSON: the cleaned value is the API's list of
    {"segment": key, "on": "entered" | "exited"}."""

    widget = forms.SelectMultiple(attrs={"size": 6})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=self._choices, **kwargs)

    @staticmethod
    def _choices() -> list[tuple[str, str]]:
        segments = Segment.objects.order_by("name", "key").values_list("key", "name")
        return [
            (f"{key}:{on}", f"{'Enters' if on == ENTERED else 'Leaves'} “{name}” ({key})")
            for key, name in segments
            for on in TRANSITIONS
        ]

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [
                f"{item.get('segment')}:{item.get('on')}" if isinstance(item, dict) else item
                for item in value
            ]
        return value

    def clean(self, value: Any) -> list[dict[str, str]]:
        picked = super().clean(value)
        return [
            {"segment": key, "on": on}
            for key, on in (str(choice).rsplit(":", 1) for choice in picked)
        ]
