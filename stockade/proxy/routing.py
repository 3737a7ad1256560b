"""Choosing the upstreams that serve a name (pure): the one routing function.

A name inside an internal upstream's namespaces is served by that upstream
only and never falls back to a public one: this is what stops the dependency
confusion attack, where a public package borrows an internal name with a
higher version. Every other name goes to the public upstreams: the first one
for PyPI and npm, each in order for Maven (a repository that lacks a file
passes the request on to the next, as Maven's own mirrors do).

The server, ``stockade check``, ``stockade audit`` and the explain API all call
``route``, so they cannot disagree on where a name comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from stockade.config.model import UpstreamSettings
from stockade.policy.model import Ecosystem
from stockade.proxy.errors import NotFoundError


class HasSettings(Protocol):
    """Anything that carries an upstream's settings (a live ``Upstream``)."""

    @property
    def settings(self) -> UpstreamSettings: ...


U = TypeVar("U", bound=HasSettings)


@dataclass(frozen=True, slots=True)
class Route(Generic[U]):
    """The upstreams a name may come from, in the order they are asked."""

    upstreams: tuple[U, ...]

    @property
    def owner(self) -> U:
        """The upstream whose name and trust the policy decides on."""
        return self.upstreams[0]

    @property
    def internal(self) -> bool:
        """True when the name lies in an internal namespace."""
        return self.owner.settings.internal


def match_keys(ecosystem: Ecosystem, name: str) -> tuple[str, ...]:
    """The strings a namespace pattern is matched against, lower-cased.

    A Maven ``group:artifact`` is matched whole (``com.acme:*``), as a group
    prefix (``com.acme.*`` owns ``com.acme`` itself and everything below it) and
    as the bare group; other ecosystems match the name.
    """
    lowered = name.lower()
    if ecosystem is not Ecosystem.MAVEN:
        return (lowered,)
    group, sep, artifact = lowered.partition(":")
    keys = [f"{group}.", group]
    if sep and artifact:
        keys.insert(0, lowered)
    return tuple(keys)


def route(ecosystem: Ecosystem, name: str, upstreams: Sequence[U]) -> Route[U]:
    """The upstreams that serve ``name`` (already normalised), in order.

    Raises:
        NotFoundError: no configured upstream may serve the name.
    """
    keys = match_keys(ecosystem, name)
    for upstream in upstreams:
        if any(upstream.settings.owns(key) for key in keys):
            return Route((upstream,))
    public = tuple(u for u in upstreams if not u.settings.internal)
    if not public:
        raise NotFoundError(f"no configured upstream serves {name!r}")
    return Route(public if ecosystem is Ecosystem.MAVEN else public[:1])
