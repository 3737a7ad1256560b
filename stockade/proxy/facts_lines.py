"""``stockade check`` lines that carry a project's facts, read into policy's values.

Owns reading ``{"name": ..., "version": ..., "first_release": ..., "releases": ...,
"owners": [...], "summary": ..., "repository": ...}`` (one JSON object a line) into
a name, a version and ``ProjectFacts``, with an error that says which field is
wrong. The facts are those the proxy gathers from a project's metadata, so a
platform team can ask whether a package would pass if it were published today.
"""

from __future__ import annotations

import json
from typing import Any

from stockade.config.load import shown
from stockade.policy.model import ProjectFacts
from stockade.policy.times import timestamp

_KEYS = frozenset({"name", "version", "first_release", "releases", "owners", "summary",
                   "repository", "ecosystem"})


class FactsLineError(ValueError):
    """A line that is not a name with facts; the message says what is wrong."""


def is_facts_line(text: str) -> bool:
    """True for a line that holds a JSON object rather than a bare name."""
    return text.lstrip().startswith("{")


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise FactsLineError(f"{key}: expected a string or null, got {shown(value)}")


def parse_line(text: str) -> tuple[str, str | None, ProjectFacts]:
    """(name, version, facts) of one line.

    Raises:
        FactsLineError: not a JSON object, an unknown key, a field of the wrong type
            or an unreadable time.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FactsLineError(f"not a JSON object: {exc.msg} at column {exc.colno}") from exc
    except RecursionError as exc:  # the decoder recurses into nested arrays and objects
        raise FactsLineError("not a facts line: values nested too deeply to read") from exc
    if not isinstance(data, dict):
        raise FactsLineError("not a JSON object")
    unknown = set(data) - _KEYS
    if unknown:
        raise FactsLineError(f"unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise FactsLineError("name: missing")
    first = data.get("first_release")
    when = timestamp(first)
    if first is not None and when is None:
        raise FactsLineError(f"first_release: {shown(first)} is not an ISO 8601 time")
    releases = data.get("releases")
    if releases is not None and (not isinstance(releases, int) or isinstance(releases, bool)
                                 or releases < 0):
        raise FactsLineError(f"releases: expected a count, got {shown(releases)}")
    owners = data.get("owners") or []
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise FactsLineError(f"owners: expected a list of names, got {shown(owners)}")
    project = ProjectFacts(first_release=when, releases=releases, owners=tuple(owners),
                           summary=_text(data, "summary"),
                           repository=_text(data, "repository"))
    return name.strip(), _text(data, "version"), project
