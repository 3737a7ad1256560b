"""A static file host on loopback: what S3 or nginx is to a TUF repository or OSV exports.

Serves the files under ``root`` (which a test may point elsewhere at any time,
as a mirror that was rolled back), with ``ETag`` and ``Last-Modified`` and
answers ``304`` to a matching ``If-None-Match``, as static hosts do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from testbed.fakes.base import LoopbackRegistry


@dataclass
class StaticHost(LoopbackRegistry):
    """Files under ``root``; ``requests`` records what was asked."""

    root: Path
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    # path (relative to root) -> HTTP status answered instead of the file
    faults: dict[str, int] = field(default_factory=dict)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/"))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/{path:.*}", self._file)
        return app

    async def _file(self, request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"]
        if relative in self.faults:
            return web.Response(status=self.faults[relative])
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"ETag": etag,
                   "Last-Modified": formatdate(path.stat().st_mtime, usegmt=True)}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers=headers,
                            content_type="application/octet-stream")
