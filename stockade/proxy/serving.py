"""Running the application on a socket: binding, client limits, shutdown.

Owns the listening socket's life (an ``AppRunner`` and a TCP site instead of
``web.run_app``, so a failed bind is a one-line error and "listening" is only
logged once the socket is bound), SIGTERM/SIGINT handling with the shutdown
timeout, and the limits on each client connection that aiohttp does not
enforce by itself:

- ``header_timeout_s``: a new connection must deliver its first request's
  headers within this time (a slowloris sends them a byte at a time);
- ``keepalive_timeout_s`` (aiohttp's own): an idle connection, and one slowly
  sending a later request's headers, is closed after this;
- ``send_timeout_s``: a client that takes nothing of its response for this long
  is cut off (while the write buffer stays full, and for files sent with
  ``sendfile`` through the kernel's ``TCP_USER_TIMEOUT``);
- ``max_connections_per_client``: more open connections from one address are
  answered 503 and closed at once, while other clients are served.

What the application does with a request is ``app``'s business, not this one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from stockade.proxy.metrics import Metrics

if TYPE_CHECKING:
    from stockade.proxy.fastpath import FastPath

logger = logging.getLogger(__name__)

_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")
_TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
             b"Content-Type: text/plain\r\nContent-Length: 49\r\n\r\n"
             b"stockade: too many connections from your address\n")
_HEADERS_LATE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                 b"Content-Length: 0\r\n\r\n")


class StartupError(Exception):
    """The server could not start; carries the operator's one-line sentence."""

    def diagnostics(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What one client connection may take (see the module docstring)."""

    header_timeout_s: float
    send_timeout_s: float
    max_connections_per_client: int | None


class ConnectionGuard:
    """Applies ``ClientLimits`` to every connection of one listening site."""

    def __init__(self, limits: ClientLimits, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self._metrics = metrics
        self._open: dict[str, int] = {}
        # answers a warm memo's hits below aiohttp's request machinery (``fastpath``)
        self.fast: FastPath | None = None

    def open_connections(self, client: str | None = None) -> int:
        """Connections open now, from ``client`` or from anyone."""
        return self._open.get(client, 0) if client else sum(self._open.values())

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory whose connections this guard watches."""
        return lambda: _Guarded(factory(), self)

    def _admit(self, client: str) -> bool:
        cap = self.limits.max_connections_per_client
        if cap is not None and self._open.get(client, 0) >= cap:
            self.closed("per_client_limit")
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def _release(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)

    def closed(self, reason: str) -> None:
        logger.debug("closed a client connection: %s", reason)
        if self._metrics is not None:
            self._metrics.client_connections_closed.labels(reason).inc()


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard's limits."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._client: str | None = None  # set once admitted
        self._tail = b""
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        # the fast path, until a read is not exactly one plain request
        self._fast = guard.fast if isinstance(inner, web.RequestHandler) else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._guard._admit(client):
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._client = client
        limits = self._guard.limits
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            # bounds a stalled reader where the bytes go through the kernel (sendfile)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                max(1, int(limits.send_timeout_s * 1000)))
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(limits.header_timeout_s, self._headers_late)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._client is None:
            return
        if self._header_timer is not None:
            seen = self._tail + data
            if any(end in seen for end in _END_OF_HEADERS):
                self._header_timer.cancel()
                self._header_timer = None
            self._tail = seen[-3:]
        fast = self._fast
        if fast is not None:
            assert isinstance(self._inner, web.RequestHandler)
            taken = fast.take(self._inner, data)
            if taken:
                return
            if taken is None:  # aiohttp may hold part of a request from now on
                self._fast = None
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._client is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        if self._client is None:
            return
        self._guard._release(self._client)
        self._client = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._client is not None and self._send_timer is None:
            loop = asyncio.get_running_loop()
            self._send_timer = loop.call_later(self._guard.limits.send_timeout_s,
                                               self._send_stalled)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self._inner.resume_writing()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard.closed("header_timeout")
            self._transport.write(_HEADERS_LATE)
            self._transport.close()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if self._transport is not None:
            self._guard.closed("send_timeout")
            self._transport.abort()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass through a ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 guard: ConnectionGuard, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.guard = guard

    async def start(self) -> None:
        self._runner._reg_site(self)  # what BaseSite.start does
        server = self._runner.server
        assert server is not None
        self._server = await self._listen(self.guard.wrap(server))
        self._bound_port = (self._server.sockets[0].getsockname()[1]
                            if self._server.sockets else self._port)

    async def _listen(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Server:
        """Bind the host and port and accept connections made by ``factory``."""
        return await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


async def serve_until_stopped(runner: web.AppRunner, host: str, port: int, *,
                              guard: ConnectionGuard, shutdown_timeout_s: float,
                              on_listening: Callable[[int], None],
                              ssl_context: ssl.SSLContext | None = None) -> None:
    """Start ``runner`` and a guarded site on ``host:port``, run until SIGTERM or
    SIGINT, then shut down, finishing requests in flight.

    Raises:
        StartupError: the application could not start (storage) or the
            address could not be bound; what was started is stopped again.
    """
    async def start() -> None:
        site = GuardedSite(runner, host, port, guard=guard, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen on {host}:{port}: {why}") from exc
        on_listening(site.port)

    await run_until_stopped(runner, start, shutdown_timeout_s=shutdown_timeout_s)


async def run_until_stopped(runner: web.AppRunner, start: Callable[[], Awaitable[None]], *,
                            shutdown_timeout_s: float) -> None:
    """Set ``runner`` up, ``start`` its sites, run until SIGTERM or SIGINT, then shut
    down, finishing requests in flight; whatever was started is stopped again.

    Raises:
        StartupError: the application could not start (storage), or ``start`` could
            not listen.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await runner.setup()
        except OSError as exc:
            raise StartupError(_storage_sentence(exc)) from exc
        await start()
        await stop.wait()
        logger.info("stopping: finishing requests in flight (at most %g s)",
                    shutdown_timeout_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _storage_sentence(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "the storage path"
    return f"cannot use storage at {where}: {exc.strerror or exc}"
