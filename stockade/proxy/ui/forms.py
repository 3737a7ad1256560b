"""Reading what the page's query strings and forms say, refusing what they cannot mean.

Owns turning text fields into values: times (an ISO date or time, or an age such
as ``24h``), sizes, page numbers, ecosystems. Each refusal is a ``FormError``
whose message the page shows beside the form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from stockade.policy.model import Ecosystem

_AGE = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_TEXT = 300  # characters of any one field


class FormError(ValueError):
    """A field that does not say what it must; the message names it."""


def text(value: str | None, field: str) -> str:
    """A trimmed text field."""
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise FormError(f"{field} is longer than {MAX_TEXT} characters")
    return value


def ecosystem(value: str | None, *, required: bool = False) -> str:
    """An ecosystem's name, or '' for any."""
    value = text(value, "ecosystem")
    if not value and not required:
        return ""
    try:
        return Ecosystem(value).value
    except ValueError as exc:
        raise FormError(f"unknown ecosystem {value!r} (one of "
                        f"{', '.join(e.value for e in Ecosystem)})") from exc


def moment(value: str | None, field: str, *, now: datetime, future: bool = False) -> \
        datetime | None:
    """A time: ISO 8601 (a date, or a date and time; UTC unless it says otherwise) or an
    age (``30m``, ``24h``, ``7d``, ``2w``) before ``now`` (after it, for ``future``)."""
    value = text(value, field)
    if not value:
        return None
    age = _AGE.fullmatch(value)
    if age is not None:
        delta = timedelta(seconds=int(age.group(1)) * _UNITS[age.group(2)])
        return now + delta if future else now - delta
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FormError(f"{field} {value!r} is neither a date and time (2026-01-31, "
                        "2026-01-31T12:00) nor an age (30m, 24h, 7d, 2w)") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def number(value: str | None, field: str, *, default: int = 0, least: int = 0) -> int:
    """A whole number no smaller than ``least``."""
    value = text(value, field)
    if not value:
        return default
    if not value.isdigit() or len(value) > 15:
        raise FormError(f"{field} {value!r} is not a whole number")
    return max(int(value), least)
