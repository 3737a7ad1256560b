"""Sending a body the way a registry does, or breaking it off the way a network does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict

STEP = 64 * 1024


async def send(request: web.Request, data: bytes, headers: Mapping[str, str],
               fault: str | None = None, *, delay_s: float = 0.0) -> web.StreamResponse:
    """Stream ``data``; ``truncate`` closes and ``reset`` aborts the connection halfway."""
    response = web.StreamResponse(headers=CIMultiDict(headers))  # repeated names kept
    response.content_length = len(data)
    await response.prepare(request)
    if fault in ("truncate", "reset"):
        await response.write(data[: len(data) // 2])
        await asyncio.sleep(0.05)
        assert request.transport is not None
        if fault == "reset":
            request.transport.abort()
        else:
            request.transport.close()
        return response
    for start in range(0, len(data), STEP):
        await response.write(data[start : start + STEP])
        if delay_s:
            await asyncio.sleep(delay_s)
    await response.write_eof()
    return response
