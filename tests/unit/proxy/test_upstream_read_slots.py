"""Large document bodies are read in the server's read slots; small ones never wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from stockade.config.model import UpstreamSettings
from stockade.proxy.metrics import Metrics
from stockade.proxy.renderslots import RenderSlots
from stockade.proxy.upstream import LARGE_BODY_BYTES, Upstream

LARGE = b"L" * (LARGE_BODY_BYTES + 1)
SMALL = b"s" * 1000


async def test_a_large_body_waits_for_a_read_slot(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/large", _large)
    app.router.add_get("/small", _small)
    server = TestServer(app)
    await server.start_server()
    u = Upstream(UpstreamSettings(name="u", url=str(server.make_url("/")), retries=0),
                 metrics=Metrics(), environ={})
    u.bound_reads(RenderSlots(tmp_path, 1, kind="read"))
    await u.start()
    try:
        async def read(path: str) -> bytes:
            async with u.get(u.url + path) as resp:
                return await resp.read(2 * LARGE_BODY_BYTES)

        other_worker = RenderSlots(tmp_path, 1, kind="read")  # the same files
        async with other_worker.hold():
            large = asyncio.create_task(read("large"))
            assert await asyncio.wait_for(read("small"), 30) == SMALL
            for _ in range(20):  # the large one keeps waiting while the slot is held
                await asyncio.sleep(0.01)
                assert not large.done()
        assert await asyncio.wait_for(large, 30) == LARGE
    finally:
        await u.close()
        await server.close()


async def _large(_request: web.Request) -> web.Response:
    return web.Response(body=LARGE)


async def _small(_request: web.Request) -> web.Response:
    return web.Response(body=SMALL)
