"""What the fake registries share: serving on 127.0.0.1 and recording what they saw."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


class LoopbackRegistry:
    """Mixin for a fake registry dataclass with ``requests``, ``server`` and ``app()``."""

    requests: list[tuple[str, str]]
    server: TestServer | None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Any:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    def count(self, suffix: str) -> int:
        """How many GETs for paths ending in ``suffix`` reached the registry."""
        return sum(1 for m, p in self.requests if m == "GET" and p.endswith(suffix))

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        seen = getattr(self, "headers_seen", None)
        if seen is not None:
            seen.append(dict(request.headers))
        response: web.StreamResponse = await handler(request)
        return response
