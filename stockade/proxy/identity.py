"""Who is asking: the identity a request was authenticated as.

Owns the ``Identity`` value and where a request carries it. Authentication sets it
once per request; everything that records or decides per caller (the decision log,
the access log, per-team policy, the web page's admin actions) reads it here and
never sees a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: a token's name, its team, and whether it may act as
    admin. Holds no secret."""

    name: str
    team: str | None = None
    admin: bool = False


IDENTITY = web.RequestKey("identity", Identity)


def identity_of(request: web.BaseRequest) -> Identity | None:
    """The identity ``request`` was authenticated as; ``None`` when anonymous."""
    # From the request's own dict: the MutableMapping ``get`` raises and catches a
    # KeyError for an anonymous request, and a warm request asks three times.
    found: Identity | None = request._state.get(IDENTITY)
    return found


def set_identity(request: web.BaseRequest, identity: Identity) -> None:
    """Record who ``request`` comes from (an anonymous request has none)."""
    request[IDENTITY] = identity
