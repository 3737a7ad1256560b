"""Slow and greedy clients: each is bounded, and the others are still served.

Raw sockets against a real listening site on 127.0.0.1, as a slowloris would
connect; every wait polls a condition with a generous bound.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from stockade.proxy.metrics import Metrics
from stockade.proxy.serving import ClientLimits, ConnectionGuard, GuardedSite

BIG = 64 * 1024 * 1024  # more than the kernel's socket buffers hold on loopback


async def _until(condition: Callable[[], bool], bound_s: float = 20.0) -> float:
    """Seconds until ``condition`` held (polling), failing past ``bound_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound_s, "condition not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Served:
    def __init__(self, guard: ConnectionGuard, port: int, metrics: Metrics) -> None:
        self.guard, self.port, self.metrics = guard, port, metrics

    def closed(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "stockade_client_connections_closed_total", {"reason": reason})
        return value or 0.0

    async def connect(self, source: str = "127.0.0.1", *, rcvbuf: int | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        return await asyncio.open_connection(sock=sock, limit=1024 * 1024)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               path: str = "/") -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await asyncio.wait_for(reader.readexactly(length), 20)
    return head


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (fails if it never closes)."""
    return await asyncio.wait_for(reader.read(), 20)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    runners: list[web.AppRunner] = []
    big_file = tmp_path / "big.bin"

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)  # longer than the header timeout below
        return web.Response(text="done")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(BIG // len(chunk)):
            await response.write(chunk)
        return response

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(big_file)

    async def start(*, header_timeout_s: float = 30, keepalive_timeout_s: float = 30,
                    send_timeout_s: float = 30, max_connections_per_client: int | None = None
                    ) -> Served:
        if not big_file.exists():
            with big_file.open("wb") as fh:
                fh.truncate(BIG)
        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_get("/slow", slow)
        app.router.add_get("/stream", stream)
        app.router.add_get("/file", file)
        runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout_s, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        metrics = Metrics()
        guard = ConnectionGuard(ClientLimits(header_timeout_s, send_timeout_s,
                                             max_connections_per_client), metrics)
        site = GuardedSite(runner, "127.0.0.1", 0, guard=guard)
        await site.start()
        return Served(guard, site.port, metrics)

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_slowloris_is_closed_after_the_header_timeout(
        serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve(header_timeout_s=1.0)
    reader, writer = await served.connect()
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\n")
    closed = asyncio.ensure_future(_closed_by_server(reader))
    for header in (b"Host: t\r\n", b"X-a: 1\r\n", b"X-b: 2\r\n", b"X-c: 3\r\n") * 10:
        if closed.done():
            break
        writer.write(header)  # a header line now and then, never the blank line
        await asyncio.sleep(0.2)
    sent = await closed
    assert sent.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 10  # the bound is 1 s; generous for a busy machine
    assert served.closed("header_timeout") == 1
    writer.close()


async def test_headers_in_time_are_served_however_long_the_answer_takes(
        serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve(header_timeout_s=0.5)
    reader, writer = await served.connect()
    head = await _get(reader, writer, "/slow")
    assert head.startswith(b"HTTP/1.1 200")
    assert served.closed("header_timeout") == 0
    writer.close()


async def test_an_idle_keepalive_connection_is_closed(
        serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve(keepalive_timeout_s=1.0)
    reader, writer = await served.connect()
    assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
    assert await _closed_by_server(reader) == b""
    await _until(lambda: served.guard.open_connections() == 0)
    writer.close()


async def test_connections_past_the_per_client_limit_are_refused_and_others_served(
        serve: Callable[..., Awaitable[Served]]) -> None:
    served = await serve(max_connections_per_client=3)
    held = [await served.connect() for _ in range(3)]
    await _until(lambda: served.guard.open_connections("127.0.0.1") == 3)
    reader, writer = await served.connect()
    refused = await _closed_by_server(reader)
    assert refused.startswith(b"HTTP/1.1 503")
    assert b"too many connections" in refused
    assert served.closed("per_client_limit") == 1
    writer.close()
    # the client's own open connections still work
    assert (await _get(*held[0])).startswith(b"HTTP/1.1 200")
    # another client is served
    other = await served.connect("127.0.0.2")
    assert (await _get(*other)).startswith(b"HTTP/1.1 200")
    other[1].close()
    # one closed, one admitted again
    held[1][1].close()
    await _until(lambda: served.guard.open_connections("127.0.0.1") == 2)
    again = await served.connect()
    assert (await _get(*again)).startswith(b"HTTP/1.1 200")
    for _, w in [*held, again]:
        w.close()


@pytest.mark.parametrize("path", ["/stream", "/file"])
async def test_a_client_that_stops_reading_is_cut_off(
        serve: Callable[..., Awaitable[Served]], path: str) -> None:
    """/stream fills aiohttp's write buffer; /file goes through sendfile (the kernel)."""
    served = await serve(send_timeout_s=1.0)
    _reader, writer = await served.connect(rcvbuf=4096)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await writer.drain()
    await _until(lambda: served.guard.open_connections() == 1)
    # never read: the server must give up on this client within the bound
    took = await _until(lambda: served.guard.open_connections() == 0, bound_s=60)
    assert took < 60
    writer.close()
