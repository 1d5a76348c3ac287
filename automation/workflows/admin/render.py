"""Condition trees and their explanations as a marketer reads them: one line per leaf."""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from automation.workflows.conditions.operators import REGISTRY

OP_WORDS = {name: operator.label for name, operator in REGISTRY.items()}
RECENCY_WORDS = {"more_than": "more than … ago:", "within": "within the last"}
LEAF_KEYS = ("property", "event", "customer", "count", "first", "segment", "aggregate", "last")


def leaf_text(leaf: dict[str, Any]) -> str:
    """One leaf as a sentence fragment ("property amount ≥ 100")."""
    subject = next((key for key in LEAF_KEYS if key in leaf), "?")
    target = leaf.get(subject)
    if subject == "first":
        first = leaf.get("value", True)
        return f"this is {'' if first else 'not '}the customer's first '{target}' event"
    if subject == "segment":
        return f"a member of segment '{target}'"
    if subject == "count" and isinstance(target, dict):
        window = f" within {target['within']}" if "within" in target else ""
        what = f"number of '{target.get('event_type')}' events{window}"
    elif subject == "aggregate" and isinstance(target, dict):
        window = f" within {target['within']}" if "within" in target else ""
        what = (
            f"{target.get('fn')} of '{target.get('property')}' in "
            f"'{target.get('event_type')}' events{window}"
        )
    elif subject == "last":
        what = f"last '{target}' event"
    else:
        what = f"{subject} {target}"
    op = leaf.get("op", "")
    words = RECENCY_WORDS.get(op, op) if subject == "last" else OP_WORDS.get(op, op)
    value = f" {json.dumps(leaf['value'], ensure_ascii=False)}" if "value" in leaf else ""
    return f"{what} {words}{value}"


def render_tree(tree: Any) -> SafeString:
    """A condition tree as nested HTML lists ("ALL of", "ANY of", "NOT")."""
    if not isinstance(tree, dict) or not tree:
        return mark_safe("<em>always (no conditions)</em>")
    for key, title in (("all", "ALL of"), ("any", "ANY of")):
        if key in tree and isinstance(tree[key], list):
            items = format_html_join("", "<li>{}</li>", ((render_tree(c),) for c in tree[key]))
            return format_html("<strong>{}</strong><ul>{}</ul>", title, items)
    if "not" in tree:
        return format_html("<strong>NOT</strong><ul><li>{}</li></ul>", render_tree(tree["not"]))
    return format_html("{}", leaf_text(tree))


def explanation_table(leaves: list[dict[str, Any]]) -> SafeString:
    """Per leaf: the node, the condition, the value seen and whether it matched.

    `leaves` as automation.workflows.engine's Explanation gives them (the runs' stored
    explanation and POST /workflows/{id}/test alike).
    """
    if not leaves:
        return mark_safe(
            '<p class="herald-why-empty">No conditions: the trigger alone decides.</p>'
        )
    rows = format_html_join(
        "",
        '<tr class="{}"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                "herald-why-matched" if leaf.get("matched") else "herald-why-failed",
                leaf.get("path"),
                leaf_text(
                    {k: v for k, v in leaf.items() if k in {*LEAF_KEYS, "op"}}
                    | {"value": leaf.get("expected")}
                ),
                "missing" if leaf.get("missing") else json.dumps(leaf.get("actual")),
                "✔ matched" if leaf.get("matched") else "✘ did not match",
            )
            for leaf in leaves
        ),
    )
    return format_html(
        '<table class="herald-why"><tr><th>Node</th><th>Condition (expected)</th>'
        "<th>Value seen</th><th>Matched</th></tr>{}</table>",
        rows,
    )


def _counts_rows(actions: list[dict[str, Any]], label: str) -> list[tuple[Any, ...]]:
    return [
        (
            f"{label}{a['index'] + 1}. {a['type']}",
            a["succeeded"],
            a["failed"],
            a["skipped"],
            a["capped"],
            a["deferred"],
        )
        for a in actions
    ]


def stats_html(stats: dict[str, Any]) -> SafeString:
    """A workflow's stats (automation.workflows.stats) as two small tables: runs and
    conversions (in all and per branch), and each action's outcomes."""
    runs = [("All runs", stats["runs_started"], stats["converted"], stats["conversion_rate"])]
    runs += [
        (
            f"Branch {b['branch'] + 1} (weight {b['weight']})",
            b["runs_started"],
            b["converted"],
            b["conversion_rate"],
        )
        for b in stats["branches"]
    ]
    actions = _counts_rows(stats["actions"], "")
    for b in stats["branches"]:
        actions += _counts_rows(b["actions"], f"Branch {b['branch'] + 1} · ")
    return format_html(
        '<table class="herald-stats"><tr><th></th><th>Runs</th><th>Converted</th>'
        "<th>Conversion rate</th></tr>{}</table>"
        '<table class="herald-stats"><tr><th>Action</th><th>Succeeded</th><th>Failed</th>'
        "<th>Skipped</th><th>Capped</th><th>Deferred</th></tr>{}</table>",
        format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((name, n, c, f"{rate:.1%}") for name, n, c, rate in runs),
        ),
        format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            actions,
        ),
    )
