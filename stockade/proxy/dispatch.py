"""Finding a request's route again: aiohttp's dispatcher with the routes found kept.

Owns ``KeptRoutes``: the same routes, found the same way, but a request whose method
and path were resolved before gets the route and path parts found then, from a dict,
instead of aiohttp trying the resources of each of its path's prefixes (a tenth of a
warm request's routing and middleware). A route depends on nothing but the method
and the path (no resource here matches on the host), and the table is frozen before
the first request. Paths that match no route are not kept.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute, UrlMappingMatchInfo

# paths kept; past it, the table starts again (a flood of distinct paths costs only
# what aiohttp's own resolve costs)
KEPT_MAX = 4096


class KeptRoutes(web.UrlDispatcher):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._kept: dict[tuple[str, str], tuple[dict[str, str], AbstractRoute]] = {}

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        key = (request.method, request.rel_url.path_safe)
        kept = self._kept.get(key)
        if kept is not None:
            return UrlMappingMatchInfo(kept[0].copy(), kept[1])
        found = await super().resolve(request)
        if type(found) is UrlMappingMatchInfo and not found.apps:
            if len(self._kept) >= KEPT_MAX:
                self._kept.clear()
            self._kept[key] = (dict(found), found.route)
        return found


def keep_routes(app: web.Application) -> None:
    """Give ``app``, before any route is added, a ``KeptRoutes`` dispatcher (aiohttp
    deprecates passing one to ``Application``; it has no other way in)."""
    assert not app.router.resources(), "routes were added before"
    app._router = KeptRoutes()
