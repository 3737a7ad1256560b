"""Python's own floor: a minimal aiohttp app answering one path with bytes from memory.

``bench.serving`` runs it beside nginx and stockade so a table can show what aiohttp
alone reaches for a small file on this machine, with no deciding, no storage and no
logging: the most any aiohttp server could do. ``--processes`` processes share the
port with ``SO_REUSEPORT`` (the kernel spreads connections), as stockade's workers do.
``--lowlevel``: aiohttp's low-level server (``web.Server`` with one handler: no
``Application``, router or middleware chain), the floor below the first.

    python -m bench.bare_aiohttp --file FILE --path /PATH --port PORT [--processes N]
                                 [--lowlevel]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web


def make_app(body: bytes, path: str, content_type: str) -> web.Application:
    """``GET path`` answers ``body``; ``/readyz`` answers empty."""
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    async def ready(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get(path, serve)
    app.router.add_get("/readyz", ready)
    return app


def make_handler(body: bytes, path: str,
                 content_type: str) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    """The low-level server's handler: ``GET path`` answers ``body``, ``/readyz`` empty,
    anything else 404."""
    async def handle(request: web.BaseRequest) -> web.Response:
        if request.path == path:
            return web.Response(body=body, content_type=content_type)
        if request.path == "/readyz":
            return web.Response()
        return web.Response(status=404)

    return handle


def _serve(app: web.Application, port: int) -> None:
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                reuse_port=True, handle_signals=True)


def _serve_lowlevel(handler: Callable[[web.BaseRequest], Awaitable[web.Response]],
                    port: int) -> None:
    async def run() -> None:
        runner = web.ServerRunner(web.Server(handler, access_log=None))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, required=True, help="the bytes to answer")
    parser.add_argument("--path", required=True, help="the URL path answering them")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--lowlevel", action="store_true",
                        help="aiohttp's low-level server, without an Application")
    args = parser.parse_args()
    body = args.file.read_bytes()
    if args.lowlevel:
        handler = make_handler(body, args.path, args.content_type)

        def serve() -> None:
            _serve_lowlevel(handler, args.port)
    else:
        app = make_app(body, args.path, args.content_type)

        def serve() -> None:
            _serve(app, args.port)
    children = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            serve()
            os._exit(0)
        children.append(pid)
    try:
        serve()
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
    sys.exit(0)


if __name__ == "__main__":
    main()
