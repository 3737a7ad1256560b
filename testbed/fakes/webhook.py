"""A webhook receiver on loopback: records every delivery, fails or stalls on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """``deliveries`` holds what arrived; the first ``fail`` answer 500; while ``stall``
    is set, requests wait for ``release`` before answering."""

    deliveries: list[Delivery] = field(default_factory=list)
    fail: int = 0
    stall: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    async def _hook(self, request: web.Request) -> web.Response:
        self.deliveries.append(Delivery(dict(request.headers), await request.read()))
        if self.stall:
            await self.release.wait()
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        return web.Response(status=204)
