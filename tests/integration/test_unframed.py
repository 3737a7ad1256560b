"""A body without a length or chunked framing that no checksum vouches for is
refused: cut short, it would look whole."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.outage_support import JAR, ProxyFor, blobs


class _Unframed:
    """A Maven repository on a raw socket: no checksum files, and the artifact sent
    with neither Content-Length nor chunked framing, cut off halfway."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.server: asyncio.Server | None = None
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/maven2/"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.seen.append(head.split("\r\n", 1)[0])
        if ".sha" in head.split("\r\n", 1)[0] or ".md5" in head.split("\r\n", 1)[0]:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
        elif "range: bytes=0-0" in head.lower():
            writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1\r\n"
                         b"Connection: close\r\n\r\n" + self.data[:1])
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/java-archive\r\n"
                         b"Connection: close\r\n\r\n" + self.data[: len(self.data) // 2])
        await writer.drain()
        writer.close()


async def test_unframed_body_without_checksum_is_refused(proxy_for: ProxyFor,
                                                         tmp_path: Path) -> None:
    data = b"PK" + bytes(range(256)) * 400
    raw = _Unframed(data)
    await raw.start()
    try:
        client = await proxy_for(maven=[{"name": "central", "url": raw.url, "retries": 0}])
        for _ in range(2):
            resp = await client.get(f"/maven/{JAR}")
            assert resp.status == 502
            assert "framing" in await resp.text()
        assert blobs(tmp_path) == []
    finally:
        await raw.stop()
