"""An open upstream response as the pipeline reads one (``UpstreamResponse``'s
shape), over bytes in memory: for tests that drive the pipeline without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy

CHUNK = 16_384


@dataclass
class BytesResponse:
    """``data`` sent in chunks of ``CHUNK``, the loop given a turn before each;
    ``read`` tells whether anyone began reading the body."""

    data: bytes
    headers: CIMultiDictProxy[str] = field(
        default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    status: int = 200
    read: bool = False

    @property
    def content_length(self) -> int:
        return len(self.data)

    @property
    def framed(self) -> bool:
        return True

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        self.read = True
        for start in range(0, len(self.data), CHUNK):
            await asyncio.sleep(0)
            yield self.data[start:start + CHUNK]
