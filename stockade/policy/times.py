"""Times read from outside documents: registries' metadata and OSV records.

Owns one reading of ISO 8601 / RFC 3339 times, always timezone-aware, so no
naive datetime reaches a rule that compares it with another. Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime


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
