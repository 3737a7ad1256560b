"""A large document body goes to a spool file as it comes and is read back whole;
small ones are joined in memory. Either way the bytes are the upstream's."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from stockade.config.model import UpstreamSettings
from stockade.proxy import upstream as upstream_module
from stockade.proxy.errors import UpstreamBodyError
from stockade.proxy.metrics import Metrics
from stockade.proxy.renderslots import RenderSlots
from stockade.proxy.upstream import LARGE_BODY_BYTES, SPOOL_WRITE_BYTES, Upstream

# not a multiple of any chunk or write size, and no two megabytes alike
LARGE = random.Random(7).randbytes(  # noqa: S311 (test data)
    LARGE_BODY_BYTES + 3 * SPOOL_WRITE_BYTES + 12_345)
SMALL = b"s" * 1000


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    app = web.Application()
    app.router.add_get("/large", _large)
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/small", _small)
    server = TestServer(app)
    await server.start_server()
    u = Upstream(UpstreamSettings(name="u", url=str(server.make_url("/")), retries=0),
                 metrics=Metrics(), environ={})
    u.bound_reads(RenderSlots(tmp_path, 1, kind="read"))
    await u.start()
    try:
        yield u
    finally:
        await u.close()
        await server.close()


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The spool files the upstream module opens."""
    opened: list[Any] = []
    make = tempfile.TemporaryFile

    def temporary_file(**kwargs: Any) -> Any:
        spool = make(**kwargs)
        opened.append(spool)
        return spool

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    return opened


async def _read(u: Upstream, path: str, max_bytes: int = 2 * len(LARGE)) -> bytes:
    async with u.get(u.url + path) as resp:
        return await resp.read(max_bytes)


@pytest.mark.parametrize("path", ["large", "chunked"])
async def test_a_large_body_is_spooled_and_read_back_whole(
        upstream: Upstream, spools: list[Any], path: str) -> None:
    assert await _read(upstream, path) == LARGE
    assert len(spools) == 1
    assert spools[0].closed  # removed with the read


async def test_a_large_body_is_spooled_in_the_folder_given(
        upstream: Upstream, spools: list[Any], tmp_path: Path) -> None:
    """On the storage's disk, not in a temporary folder that may be held in memory;
    and with no name, so nothing is left there."""
    folder = tmp_path / "spool"
    folder.mkdir()
    upstream.bound_reads(RenderSlots(tmp_path, 1, kind="read"), folder)
    where: list[str] = []
    read_back = upstream_module._read_back

    def reading(spool: Any, parts: list[bytes]) -> bytes:
        where.append(os.readlink(f"/proc/self/fd/{spool.fileno()}"))
        return read_back(spool, parts)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upstream_module, "_read_back", reading)
        assert await _read(upstream, "chunked") == LARGE
    assert len(spools) == 1 and spools[0].closed
    assert len(where) == 1 and Path(where[0]).parent == folder
    assert list(folder.iterdir()) == []


async def test_a_small_body_is_not_spooled(upstream: Upstream, spools: list[Any]) -> None:
    assert await _read(upstream, "small") == SMALL
    assert spools == []


async def test_a_large_body_over_the_limit_is_refused_and_its_spool_closed(
        upstream: Upstream, spools: list[Any]) -> None:
    with pytest.raises(UpstreamBodyError, match="exceeds"):
        await _read(upstream, "chunked", max_bytes=LARGE_BODY_BYTES + SPOOL_WRITE_BYTES)
    assert len(spools) == 1
    assert spools[0].closed


async def test_without_a_spool_file_a_large_body_is_kept_in_memory(
        upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unwritable temporary folder costs memory, not the document."""
    def unwritable(**_kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", unwritable)
    assert await _read(upstream, "chunked") == LARGE


async def test_a_full_spool_refuses_the_document_with_its_reason(
        upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    make = tempfile.TemporaryFile

    class Full:
        """A spool file on a disk with no room left."""

        def __init__(self, **kwargs: Any) -> None:
            self.file = make(**kwargs)
            opened.append(self.file)

        def writelines(self, _parts: Any) -> None:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    monkeypatch.setattr(tempfile, "TemporaryFile", Full)
    with pytest.raises(UpstreamBodyError, match=r"could not be spooled.*No space left"):
        await _read(upstream, "large")
    assert len(opened) == 1 and opened[0].closed


async def _large(_request: web.Request) -> web.Response:
    return web.Response(body=LARGE)


async def _chunked(request: web.Request) -> web.StreamResponse:
    """Chunked, without a length, in pieces of uneven sizes."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    sizes = random.Random(3)  # noqa: S311 (test data)
    at = 0
    while at < len(LARGE):
        step = sizes.randint(1, 300_000)
        await response.write(LARGE[at:at + step])
        at += step
    await response.write_eof()
    return response


async def _small(_request: web.Request) -> web.Response:
    return web.Response(body=SMALL)
