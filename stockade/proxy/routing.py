"""Choosing the upstream that serves a name (pure).

A name inside an internal upstream's namespaces is served by that upstream
only and never falls back to a public one: this is what stops the dependency
confusion attack, where a public package borrows an internal name with a
higher version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from stockade.config.model import UpstreamSettings
from stockade.proxy.errors import NotFoundError


class _HasSettings(Protocol):
    @property
    def settings(self) -> UpstreamSettings: ...


U = TypeVar("U", bound=_HasSettings)


def pick_upstream(name: str, upstreams: Sequence[U]) -> U:
    """The one upstream that serves ``name`` (already normalised).

    Raises:
        NotFoundError: no upstream may serve the name.
    """
    lowered = name.lower()
    for upstream in upstreams:
        if upstream.settings.owns(lowered):
            return upstream
    for upstream in upstreams:
        if not upstream.settings.internal:
            return upstream
    raise NotFoundError(f"no configured upstream serves {name!r}")


def is_internal(name: str, upstreams: Sequence[_HasSettings]) -> bool:
    """True when ``name`` falls in some internal upstream's namespace."""
    lowered = name.lower()
    return any(u.settings.owns(lowered) for u in upstreams)
