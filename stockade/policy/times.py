"""Times read from outside documents: registries' metadata, OSV records and HTTP
headers.

Owns one reading of ISO 8601 / RFC 3339 times and one of HTTP dates, always
timezone-aware, so no naive datetime reaches a rule that compares it with another.
Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def timestamp(value: object) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; UTC if it has none), or None when it is
    missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Last-Modified``: RFC 9110, or the older forms it accepts; UTC
    if it names no zone), or None when it is missing or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
