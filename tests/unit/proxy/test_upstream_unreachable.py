"""An upstream that cannot be reached is not asked again for a while: an outage costs
one connect, and every request meanwhile fails at once (the cache then answers). A
refused connection is not retried; the window is per origin."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from stockade.config.model import UpstreamSettings
from stockade.proxy.errors import UpstreamStatusError, UpstreamUnavailableError
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.fixture
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Upstream, Metrics]]:
    retry_s, url = request.param
    metrics = Metrics()
    u = Upstream(UpstreamSettings(name="u", url=url or f"http://127.0.0.1:{closed_port()}/",
                                  retries=1, unreachable_retry_s=retry_s),
                 metrics=metrics, environ={})
    await u.start()
    yield u, metrics
    await u.close()


def attempts(metrics: Metrics) -> float:
    return float(metrics.upstream_requests.labels("u", "error")._value.get())


async def fetch(u: Upstream) -> None:
    async with u.get(u.url + "x"):
        pass


@pytest.mark.parametrize("upstream", [(60.0, None)], indirect=True)
async def test_unreachable_upstream_is_not_asked_again(
        upstream: tuple[Upstream, Metrics]) -> None:
    u, metrics = upstream
    with pytest.raises(UpstreamUnavailableError, match="cannot reach"):
        await fetch(u)
    assert attempts(metrics) == 1  # refused: no retry, however many are allowed
    for _ in range(3):
        with pytest.raises(UpstreamUnavailableError, match="not asking it again"):
            await fetch(u)
    assert attempts(metrics) == 1


@pytest.mark.parametrize("upstream", [(0.0, None)], indirect=True)
async def test_zero_always_asks(upstream: tuple[Upstream, Metrics]) -> None:
    u, metrics = upstream
    for _ in range(2):
        with pytest.raises(UpstreamUnavailableError, match="cannot reach"):
            await fetch(u)
    assert attempts(metrics) == 2


async def test_a_bad_answer_is_not_unreachable() -> None:
    async def missing(_request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{tail:.*}", missing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    u = Upstream(UpstreamSettings(name="u", url=str(server.make_url("/")), retries=0,
                                  unreachable_retry_s=60.0), metrics=Metrics(), environ={})
    await u.start()
    try:
        for _ in range(2):
            with pytest.raises(UpstreamStatusError):
                await fetch(u)
    finally:
        await u.close()
        await server.close()


@pytest.mark.parametrize("upstream", [(60.0, None)], indirect=True)
async def test_a_refused_connection_is_not_retried_and_fails_at_once(
        upstream: tuple[Upstream, Metrics], monkeypatch: pytest.MonkeyPatch) -> None:
    u, metrics = upstream
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    results = await asyncio.gather(*(fetch(u) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailableError) for r in results)
    assert slept == []  # no back-off for anyone
    assert attempts(metrics) <= 5  # at most one connect each, none after the first failed


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_the_window_is_per_origin() -> None:
    """A file host that is down does not stop the index being asked."""
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    index = await _serve(app)
    files_port = closed_port()
    u = Upstream(UpstreamSettings(name="u", url=str(index.make_url("/")), retries=2,
                                  unreachable_retry_s=60.0,
                                  file_hosts=(f"http://127.0.0.1:{files_port}",)),
                 metrics=Metrics(), environ={})
    await u.start()
    files = f"http://127.0.0.1:{files_port}/f.whl"
    try:
        with pytest.raises(UpstreamUnavailableError, match="cannot reach"):
            async with u.get(files):
                pass
        with pytest.raises(UpstreamUnavailableError, match="not asking it again"):
            async with u.get(files):
                pass
        await fetch(u)  # the index's origin is another one: asked, and answers
    finally:
        await u.close()
        await index.close()
