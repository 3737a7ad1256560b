"""Serving a stored blob without ``web.FileResponse``.

Owns the responses for a blob that is not sent from its file by aiohttp: streamed
through ``BlobStore.read`` where it has no local file (object storage, not yet
cached), from memory where ``hotblobs`` holds its verified bytes, and handed to a
front server with ``X-Accel-Redirect``. Each gives the answers ``web.FileResponse``
gives for a file: HEAD, one byte range, 416; and a 304 for an ``If-None-Match``
naming the blob's entity tag (its digest).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from stockade.storage.protocol import BlobInfo, BlobStore


def requested_range(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
    """The one byte range ``request`` asks of ``size`` bytes, [start, end); None for
    the whole (no Range, or one that cannot be read: ignored, as FileResponse does).

    Raises:
        web.HTTPRequestRangeNotSatisfiable: the range lies past the end.
    """
    try:
        rng = request.http_range
    except ValueError:
        return None
    if rng.start is None and rng.stop is None:
        return None
    start = rng.start or 0
    start = max(size + start, 0) if start < 0 else start
    end = size if rng.stop is None else min(rng.stop, size)
    if start >= size or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


def content_range(start: int, end: int, size: int) -> str:
    """The Content-Range of the bytes [start, end) of ``size``."""
    return f"bytes {start}-{end - 1}/{size}"


def entity_tag(sha256: str) -> str:
    """A blob's strong entity tag: its bytes never change under its digest."""
    return f'"{sha256}"'


def _not_modified(request: web.BaseRequest, etag: str) -> bool:
    wanted = request.headers.get("If-None-Match")
    if wanted is None:
        return False
    return wanted.strip() == "*" or etag in (t.strip().removeprefix("W/")
                                             for t in wanted.split(","))


def memory_response(request: web.BaseRequest, body: bytes, sha256: str,
                    headers: dict[str, str]) -> web.Response:
    """A blob's verified bytes from memory: no file opened, no thread hop."""
    etag = entity_tag(sha256)
    headers = {**headers, "ETag": etag, "Accept-Ranges": "bytes"}
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    wanted = requested_range(request, len(body))
    if wanted is None:
        return web.Response(body=body, headers=headers)
    start, end = wanted
    headers["Content-Range"] = content_range(start, end, len(body))
    return web.Response(status=206, body=body[start:end], headers=headers)


def accel_response(request: web.BaseRequest, location: str, etag: str,
                   headers: dict[str, str]) -> web.Response:
    """An answer with no body naming a file (a blob, a rendered document) for the
    front server to send (which answers Range and HEAD itself, from the file)."""
    headers = {**headers, "ETag": etag}
    if _not_modified(request, etag):
        # no redirect: the front server would follow it and send the file
        return web.Response(status=304, headers=headers)
    return web.Response(headers={**headers, "X-Accel-Redirect": location})


class BlobResponse(web.StreamResponse):
    """A stored blob, streamed from the store when it is sent."""

    def __init__(self, store: BlobStore, info: BlobInfo, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self._store = store
        self._info = info

    def _range(self, request: web.Request) -> tuple[int, int]:
        """The bytes to send, [start, end); a 206 or 416 where the request has a Range."""
        wanted = requested_range(request, self._info.size)
        if wanted is None:
            return 0, self._info.size
        self.set_status(206)
        self.headers["Content-Range"] = content_range(*wanted, self._info.size)
        return wanted

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        assert isinstance(request, web.Request)
        start, end = self._range(request)
        self.headers["Accept-Ranges"] = "bytes"
        self.content_length = end - start
        if request.method == "HEAD":
            return await super().prepare(request)
        chunks = self._store.read(self._info.sha256, start)
        try:
            # The first chunk before the headers: a blob gone from storage is an
            # error response, not a truncated 200.
            chunk = await anext(chunks, b"")
            writer = await super().prepare(request)
            left = end - start
            while chunk:
                if left > 0:
                    await self.write(chunk[:left])
                    left -= len(chunk[:left])
                if left <= 0 and end < self._info.size:
                    break  # a range that ends early: stop reading
                # A whole read goes on to the end, so the store sees it finish
                # (the object storage backend keeps a local copy then).
                chunk = await anext(chunks, b"")
        finally:
            # Backends' read() are async generators: close the stream they hold.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return writer
