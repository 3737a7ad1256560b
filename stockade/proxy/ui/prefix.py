"""Where the web page lives as the browser sees it: its base path and origin.

Owns one answer per request. Behind a reverse proxy that serves stockade under a
path (``https://tools.example.com/stockade/``), the page's links and forms must
carry that path: the proxy says it in ``X-Forwarded-Prefix``, believed only from
an address listed in ``server.trusted_proxies`` (anyone else's is ignored, as
``origin`` ignores their forwarded host). ``server.public_url`` is an origin
without a path, so it sets the origin forms are checked against, not a prefix.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from stockade.config.model import ServerSettings
from stockade.proxy.origin import _trusted, origin

UI_PATH = "/_stockade/ui/"
# A path of plain segments: no dot segments, no doubled slashes, nothing to escape.
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")


def _clean(prefix: str) -> str | None:
    """``prefix`` without its trailing slash, or None when it is not a plain path."""
    if not _PREFIX.fullmatch(prefix) or any(s in (".", "..") for s in prefix.split("/")):
        return None
    return prefix.rstrip("/")


def prefix(request: web.Request, settings: ServerSettings) -> str:
    """The path clients put before stockade's own paths ('' when none)."""
    if _trusted(request.remote, settings):
        forwarded = request.headers.get("X-Forwarded-Prefix", "").split(",", 1)[0].strip()
        if forwarded:
            return _clean(forwarded) or ""
    return ""


def base(request: web.Request, settings: ServerSettings) -> str:
    """The page's own base path as the browser reaches it, ending in a slash."""
    return prefix(request, settings) + UI_PATH


def browser_origin(request: web.Request, settings: ServerSettings) -> str:
    """``scheme://host[:port]`` of the page as the browser sees it (what its
    ``Origin`` header carries)."""
    parts = urlsplit(origin(request, settings))
    return f"{parts.scheme}://{parts.netloc}"
