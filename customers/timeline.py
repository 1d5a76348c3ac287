"""A customer's story: one timeline, newest first, of what they did and what Herald did.

customers never imports the layers above it, so the entries come from sources those
layers register (in their AppConfig.ready()): events_app adds the customer's events,
automation their segment entries and exits, and a detail hook that hangs each event's
workflow runs and webhook deliveries under it.

Paging is by keyset across every source: entries are ordered by (at, source, key),
newest first, and a page's cursor is that triple of its last entry. Each source reads
at most one page of its own rows after the cursor through an index, so a page costs
the same at the first entry as at the ten-thousandth.
"""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import Q

from project.hooks import Hooks

# The entries of one page.
TIMELINE_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class TimelineCursor:
    """The position of an entry: its time, its source's name and its key in that source."""

    at: datetime
    source: str
    key: str

    def encode(self) -> str:
        text = json.dumps([self.at.isoformat(), self.source, self.key])
        return urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> TimelineCursor | None:
        """The cursor `encode` made, or None for anything else (a hand-edited link)."""
        try:
            at, source, key = json.loads(urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            moment = datetime.fromisoformat(at)
        except (ValueError, TypeError, UnicodeDecodeError):
            return None
        if not (isinstance(source, str) and isinstance(key, str)) or moment.tzinfo is None:
            return None
        if "\x00" in source or "\x00" in key:
            return None
        try:
            return cls(moment.astimezone(UTC), source, key)
        except OverflowError:
            return None

    def before(self, *, source: str, at_field: str, key_field: str) -> Q:
        """Rows of `source` that come after this cursor in the timeline (older ones).

        The order is (at, source, key) descending. For a source named before the
        cursor's, rows at the cursor's instant still come after it; for the cursor's
        own source, those with a smaller key; for a later-named one, none. The bound
        on `at_field` alone is what lets an index on (customer, at, key) start there.
        """
        if source < self.source:
            return Q(**{f"{at_field}__lte": self.at})
        if source > self.source:
            return Q(**{f"{at_field}__lt": self.at})
        return Q(**{f"{at_field}__lte": self.at}) & (
            Q(**{f"{at_field}__lt": self.at})
            | Q(**{at_field: self.at, f"{key_field}__lt": self.key})
        )


@dataclass(slots=True)
class TimelineDetail:
    """A line under an entry: something Herald did because of it."""

    kind: str  # "workflow run", "webhook delivery"
    text: str
    status: str = ""  # a word for the badge: succeeded, failed, pending, ...
    url: str = ""
    at: datetime | None = None


@dataclass(slots=True)
class TimelineEntry:
    """One thing in a customer's story. `key` orders entries of one source that share
    their instant (a zero-padded number for integer keys, so text order is number order)."""

    at: datetime
    source: str
    key: str
    kind: str  # what the marketer reads in the first column: "event", "entered segment"
    title: str
    url: str = ""
    status: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)  # key property values
    details: list[TimelineDetail] = field(default_factory=list)

    @property
    def cursor(self) -> TimelineCursor:
        return TimelineCursor(self.at, self.source, self.key)

    @property
    def position(self) -> tuple[datetime, str, str]:
        return (self.at, self.source, self.key)


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next_cursor: TimelineCursor | None  # None: this is the oldest page


# (customer_id, cursor or None for the newest, limit) -> at most `limit` entries of
# the source after the cursor, newest first.
TimelineSource = Callable[[str, TimelineCursor | None, int], Sequence[TimelineEntry]]
# Adds details to the entries of a page (in place), one query per kind of detail.
TimelineDetailHook = Callable[[Sequence[TimelineEntry]], None]

# Sources by the name their entries carry (`source=name`); hooks adding details.
_sources: Hooks[TimelineSource] = Hooks()
_detail_hooks: Hooks[TimelineDetailHook] = Hooks()
timeline_source_register = _sources.register
timeline_detail_register = _detail_hooks.register


def customer_timeline(
    *, customer_id: str, after: TimelineCursor | None = None, limit: int = TIMELINE_PAGE_SIZE
) -> TimelinePage:
    """One page of the customer's story, newest first, after `after` (None: the newest).

    Each source gives up to limit + 1 entries; the merge keeps the first `limit` and
    knows from the extra one whether an older page exists.
    """
    entries: list[TimelineEntry] = []
    for _name, source in _sources.all():
        entries.extend(source(customer_id, after, limit + 1))
    entries.sort(key=lambda entry: entry.position, reverse=True)
    page, rest = entries[:limit], entries[limit:]
    for _name, hook in _detail_hooks.all():
        hook(page)
    return TimelinePage(page, page[-1].cursor if rest and page else None)
