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


class _HeldServer:
    """HTTP on a raw asyncio server: ``/held`` answers ``status`` only once released,
    anything else 200; every answer closes its connection (no pooled reuse)."""

    def __init__(self, status: int, location: str = "") -> None:
        self.status = status
        self.location = location  # sent with the held answer
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.port = closed_port()
        self.server: asyncio.Server | None = None

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def stop_listening(self) -> None:
        assert self.server is not None
        self.server.close()  # the open connections stay: /held still answers

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        status, extra = 200, ""
        if head.split(b" ", 2)[1] == b"/held":
            self.arrived.set()
            await self.release.wait()
            status = self.status
            extra = f"Location: {self.location}\r\n" if self.location else ""
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n"
                     f"{extra}\r\nok".encode())
        await writer.drain()
        writer.close()


@pytest.mark.parametrize(("method", "status"), [("GET", 404), ("GET", 200), ("POST", 404),
                                               ("POST", 200)])
async def test_any_answer_from_the_origin_ends_its_window(method: str, status: int) -> None:
    """Marked down by one request, the origin then answers another one (in flight
    when the window opened; a GET, or a POST of npm's audit): the window is over
    for the requests after it."""
    held = _HeldServer(status)
    await held.listen()
    base = f"http://127.0.0.1:{held.port}/"
    u = Upstream(UpstreamSettings(name="u", url=base, retries=0, unreachable_retry_s=600.0),
                 metrics=Metrics(), environ={})
    await u.start()

    async def get(path: str) -> int:
        async with u.get(base + path) as resp:
            return resp.status

    try:
        async def post(path: str) -> int:
            answer = await u.post(base + path, b"{}", content_type="application/json",
                                  max_bytes=100)
            if answer[0] >= 400:
                raise UpstreamStatusError("answered", upstream="u", upstream_status=answer[0])
            return answer[0]

        in_flight = asyncio.create_task(get("held") if method == "GET" else post("held"))
        await asyncio.wait_for(held.arrived.wait(), 60)
        held.stop_listening()
        with pytest.raises(UpstreamUnavailableError, match="cannot reach"):
            await get("other")
        with pytest.raises(UpstreamUnavailableError, match="not asking it again"):
            await get("other")
        assert u.unreachable_for_s > 0
        held.release.set()
        if status == 404:
            with pytest.raises(UpstreamStatusError):
                await in_flight
        else:
            assert await in_flight == 200
        assert u.unreachable_for_s == 0
        await held.listen()  # back, on the same port
        assert await get("other") == 200  # asked at once, well inside the 600 s window
    finally:
        held.release.set()
        await u.close()
        if held.server is not None:
            held.server.close()


async def test_a_redirect_from_the_origin_ends_its_window() -> None:
    """The origin that answers with a redirect answered: its window ends, not only
    that of the file host the redirect leads to."""
    files = _HeldServer(200)
    await files.listen()
    held = _HeldServer(302, location=f"http://127.0.0.1:{files.port}/f.whl")
    await held.listen()
    base = f"http://127.0.0.1:{held.port}/"
    u = Upstream(UpstreamSettings(name="u", url=base, retries=0, unreachable_retry_s=600.0,
                                  file_hosts=(f"http://127.0.0.1:{files.port}",)),
                 metrics=Metrics(), environ={})
    await u.start()

    async def get(path: str) -> int:
        async with u.get(base + path) as resp:
            return resp.status

    try:
        in_flight = asyncio.create_task(get("held"))
        await asyncio.wait_for(held.arrived.wait(), 60)
        held.stop_listening()
        with pytest.raises(UpstreamUnavailableError, match="cannot reach"):
            await get("other")
        held.release.set()
        assert await in_flight == 200  # from the file host
        assert u.unreachable_for_s == 0
    finally:
        held.release.set()
        await u.close()
        for server in (held.server, files.server):
            if server is not None:
                server.close()
