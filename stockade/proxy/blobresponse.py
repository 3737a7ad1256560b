"""Serving a stored blob that has no local file (object storage, not yet cached).

Owns one response type: the blob streamed through ``BlobStore.read`` with the
answers ``web.FileResponse`` gives for a file (HEAD, one byte range, 416),
used by the pipeline where ``local_path`` has nothing to hand to sendfile.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from stockade.storage.protocol import BlobInfo, BlobStore


class BlobResponse(web.StreamResponse):
    """A stored blob, streamed from the store when it is sent."""

    def __init__(self, store: BlobStore, info: BlobInfo, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self._store = store
        self._info = info

    def _range(self, request: web.Request) -> tuple[int, int]:
        """The bytes to send, [start, end); a 206 or 416 where the request has a Range."""
        size = self._info.size
        try:
            rng = request.http_range
        except ValueError:
            return 0, size  # an unreadable Range is ignored, as FileResponse does
        if rng.start is None and rng.stop is None:
            return 0, size
        start = rng.start or 0
        start = max(size + start, 0) if start < 0 else start
        end = size if rng.stop is None else min(rng.stop, size)
        if start >= size or start >= end:
            self.headers["Content-Range"] = f"bytes */{size}"
            raise web.HTTPRequestRangeNotSatisfiable(headers=self.headers)
        self.set_status(206)
        self.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return start, end

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
