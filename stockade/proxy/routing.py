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
T = TypeVar("T")


def pick_upstream(name: str, upstreams: Sequence[U]) -> U:
    """The one upstream that serves ``name`` (already normalised).

    Raises:
        NotFoundError: no upstream may serve the name.
    """
    chosen = _serving(name, [(u.settings, u) for u in upstreams])
    if chosen is None:
        raise NotFoundError(f"no configured upstream serves {name!r}")
    return chosen


def serving(name: str, upstreams: Sequence[UpstreamSettings]) -> UpstreamSettings | None:
    """``pick_upstream`` over configured upstreams, for commands without a server."""
    return _serving(name, [(u, u) for u in upstreams])


def _serving(name: str, upstreams: Sequence[tuple[UpstreamSettings, T]]) -> T | None:
    lowered = name.lower()
    for settings, upstream in upstreams:
        if settings.owns(lowered):
            return upstream
    for settings, upstream in upstreams:
        if not settings.internal:
            return upstream
    return None


def is_internal(name: str, upstreams: Sequence[_HasSettings]) -> bool:
    """True when ``name`` falls in some internal upstream's namespace."""
    lowered = name.lower()
    return any(u.settings.owns(lowered) for u in upstreams)
