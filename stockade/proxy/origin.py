"""Where clients reach stockade: the base of the absolute URLs it writes.

Owns one answer per request: ``server.public_url`` when it is set; else, from
a proxy listed in ``server.trusted_proxies``, what its ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` say; else the request's own scheme and ``Host``. Headers
from anyone else are ignored, so a client cannot make stockade write URLs that
point elsewhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from aiohttp import web

from stockade.config.model import ServerSettings
from stockade.proxy.responses import host_problem

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> Sequence[_Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def _trusted(remote: str | None, settings: ServerSettings) -> bool:
    if not remote or not settings.trusted_proxies:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # A zone names the link (fe80::1%eth0 and fe80::1%eth1 are different hosts),
        # and a configured network names none: such a peer is never a trusted proxy.
        return False
    return any(address in net for net in _networks(tuple(settings.trusted_proxies)))


def _first(value: str | None) -> str | None:
    """The first (client-most) entry of a forwarded header, if it is usable."""
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def origin(request: web.Request, settings: ServerSettings) -> str:
    """``scheme://host[:port]`` clients use to reach this stockade (no trailing slash)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if _trusted(request.remote, settings):
        proto = _first(request.headers.get("X-Forwarded-Proto"))
        host = _first(request.headers.get("X-Forwarded-Host"))
        # A forwarded host is held to what a Host header must be (host_problem):
        # anything else ("a:b", "[::1", spaces, "user@host") is ignored, never
        # written into served URLs nor left to fail in a handler.
        if host is not None and host_problem(host) is None:
            scheme = proto if proto in ("http", "https") else request.scheme
            return f"{scheme}://{host}"
    return str(request.url.origin())
