"""Where the workers of ``server.workers`` > 1 listen, and one worker's serving.

Owns the address the supervisor binds once and holds (``bind``: a port in use is
one line, ``port: 0`` gives every worker the same port), each worker's own
listening sockets on it with ``SO_REUSEPORT`` (``listen``: the kernel spreads new
connections evenly over the workers), and a worker's serving loop over them. The
supervisor is ``workers``' business.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from stockade.proxy.serving import ConnectionGuard, GuardedSite, StartupError, run_until_stopped


@dataclass(frozen=True, slots=True)
class Listener:
    """The addresses every worker listens on, and the supervisor's hold on them."""

    addresses: tuple[tuple[int, tuple[object, ...]], ...]  # (family, socket address)
    held: tuple[socket.socket, ...]  # bound, not listening: the port stays ours

    @property
    def port(self) -> int:
        return int(self.held[0].getsockname()[1])

    def close(self) -> None:
        for sock in self.held:
            sock.close()


def bind(host: str, port: int) -> Listener:
    """Reserve ``host:port`` for the workers, each of which then listens on it
    with ``SO_REUSEPORT`` (the kernel spreads new connections over them).

    A socket bound the ordinary way first makes a port that anything, another
    stockade included, listens on fail here as "in use".

    Raises:
        StartupError: the address cannot be resolved or bound.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    addresses: list[tuple[int, tuple[object, ...]]] = []
    held: list[socket.socket] = []
    try:
        for family, _kind, _proto, _name, address in infos:
            if any(f == family and a[0] == address[0] for f, a in addresses):
                continue
            chosen = held[0].getsockname()[1] if held else port
            where = (address[0], chosen, *address[2:])
            with _socket(family) as probe:  # fails on a port in use, reuseport or not
                probe.bind(where)
                where = (address[0], probe.getsockname()[1], *address[2:])
            sock = _socket(family, reuse_port=True)
            held.append(sock)
            sock.bind(where)
            addresses.append((family, where))
    except OSError as exc:
        for sock in held:
            sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {why}") from exc
    return Listener(tuple(addresses), tuple(held))


def _socket(family: int, *, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def listen(listener: Listener, backlog: int = 128) -> list[socket.socket]:
    """This worker's own listening sockets on the listener's addresses.

    Raises:
        StartupError: an address could not be bound again.
    """
    sockets: list[socket.socket] = []
    try:
        for family, address in listener.addresses:
            sock = _socket(family, reuse_port=True)
            sockets.append(sock)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(f"cannot listen on port {listener.port}: {exc}") from exc
    return sockets


class _SharedSite(GuardedSite):
    """A guarded site accepting on a socket the supervisor bound."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *,
                 guard: ConnectionGuard, ssl_context: ssl.SSLContext | None = None) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(runner, host, port, guard=guard, ssl_context=ssl_context)
        self._sock = sock

    async def _listen(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog)


async def serve_worker(runner: web.AppRunner, listener: Listener, *,
                       guard: ConnectionGuard, ready: Callable[[], None],
                       shutdown_timeout_s: float,
                       ssl_context: ssl.SSLContext | None = None) -> None:
    """One worker: open the application, listen on the listener's addresses until
    SIGTERM or SIGINT, then finish requests in flight.

    Raises:
        StartupError: the application could not start (storage), or an address
            could not be bound.
    """
    async def start() -> None:
        for sock in listen(listener):
            await _SharedSite(runner, sock, guard=guard, ssl_context=ssl_context).start()
        ready()

    await run_until_stopped(runner, start, shutdown_timeout_s=shutdown_timeout_s)
