"""Many requests for one cold artifact at once (``ArtifactPipeline.serve``).

One upstream request feeds them all; each is sent the end of the artifact once its
bytes are verified, stored and recorded (a client that has read a whole answer finds
it cached); a fill no larger
than a blob held in memory is sent from the bytes read, not read back from its spool
per request, and leaves them held, so the burst's later requests read nothing
again; a digest mismatch still cuts every response before its end and stores
nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from stockade.policy.model import Ecosystem
from stockade.proxy.hotblobs import HotBlobs
from stockade.proxy.metrics import Metrics
from stockade.proxy.pipeline import ArtifactPipeline, ArtifactSource
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.refs import RefStore
from testbed.fakes.response import BytesResponse

URL = "http://up.example/files/demo-1.0.tar.gz"

DATA = os.urandom(300_000)
BURST = 20
DEADLINE_S = 10.0


@dataclass
class FakeUpstream:
    """Answers ``DATA``, after a moment in which the other requests arrive."""

    name: str = "up"
    offline: bool = False
    internal: bool = False
    calls: int = 0
    data: bytes = DATA

    @asynccontextmanager
    async def get(self, url: str, *, headers: Any = None) -> AsyncIterator[BytesResponse]:
        self.calls += 1
        await asyncio.sleep(0.05)
        yield BytesResponse(self.data)


class GatedRecords(RefStore):
    """A record store whose ``put_if_absent`` waits until ``gate`` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "artifacts")
        self.gate = asyncio.Event()
        self.waiting = 0  # writes begun
        self.written = 0

    async def put_if_absent(self, key: str, doc: dict[str, Any]) -> dict[str, Any]:
        self.waiting += 1
        await self.gate.wait()
        stored = await super().put_if_absent(key, doc)
        self.written += 1
        return stored


def _source(up: FakeUpstream, digest: str = hashlib.sha256(DATA).hexdigest()
            ) -> ArtifactSource:
    return ArtifactSource(ecosystem=Ecosystem.PYPI, upstream=cast(Upstream, up), url=URL,
                          key=f"pypi|up|{URL}", filename="demo-1.0.tar.gz",
                          expected=(Digest.parse("sha256", digest),))


async def _pipeline(root: Path, hot: HotBlobs | None) -> tuple[ArtifactPipeline,
                                                              GatedRecords]:
    store = FilesystemBlobStore(root / "data")
    await store.open()
    records = GatedRecords(root / "data")
    return ArtifactPipeline(store, records, Metrics(), max_artifact_bytes=1 << 24,
                            hot=hot), records


@asynccontextmanager
async def _served(pipeline: ArtifactPipeline, source: ArtifactSource) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await pipeline.serve(request, source)

    app = web.Application()
    app.router.add_get("/a", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/a"))
    finally:
        await server.close()
        await pipeline.close()


async def _get(url: str) -> bytes | None:
    """The whole body, or None when the response was cut."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        try:
            return await resp.read()
        except aiohttp.ClientPayloadError:
            return None


async def _burst(url: str) -> list[bytes | None]:
    return await asyncio.wait_for(asyncio.gather(*(_get(url) for _ in range(BURST))),
                                  DEADLINE_S)


async def _poll(condition: Callable[[], bool]) -> None:
    for _ in range(int(DEADLINE_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def _count_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    real = os.pread

    def counted(fd: int, length: int, offset: int) -> bytes:
        reads.append(length)
        return real(fd, length, offset)

    monkeypatch.setattr(os, "pread", counted)
    return reads


@pytest.mark.parametrize("hot", [HotBlobs(32 << 20, 1 << 20), None],
                         ids=["held-in-memory", "spool-tailed"])
async def test_no_request_is_answered_whole_before_the_record_is_written(
        tmp_path: Path, hot: HotBlobs | None) -> None:
    """What a client has read whole, any worker, replica or offline start then finds
    cached: the burst's answers end only once the record is written."""
    pipeline, records = await _pipeline(tmp_path, hot)
    up = FakeUpstream()
    async with _served(pipeline, _source(up)) as url:
        burst = asyncio.ensure_future(_burst(url))
        await _poll(lambda: records.waiting == 1)  # stored, its record's write held
        await asyncio.sleep(0.2)  # time for the clients to finish, were they let
        assert not burst.done()
        records.gate.set()
        assert await burst == [DATA] * BURST
        assert records.written == 1
        assert await _get(url) == DATA
    assert up.calls == 1


async def test_a_small_fill_is_sent_from_memory_and_held_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hot = HotBlobs(32 << 20, 1 << 20)
    pipeline, records = await _pipeline(tmp_path, hot)
    records.gate.set()
    reads = _count_preads(monkeypatch)
    up = FakeUpstream()
    async with _served(pipeline, _source(up)) as url:
        assert await _burst(url) == [DATA] * BURST
        assert reads == []  # no request read the spool back
        assert await _burst(url) == [DATA] * BURST  # warm: held since the fill
    assert (up.calls, hot.loads) == (1, 0)


async def test_a_larger_fill_is_tailed_from_its_spool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hot = HotBlobs(32 << 20, 64 << 10)  # DATA is larger than a held blob
    pipeline, records = await _pipeline(tmp_path, hot)
    records.gate.set()
    reads = _count_preads(monkeypatch)
    up = FakeUpstream()
    async with _served(pipeline, _source(up)) as url:
        assert await _burst(url) == [DATA] * BURST
    assert reads  # spooled, and read back
    assert up.calls == 1


@pytest.mark.parametrize("held", [1 << 20, 64 << 10], ids=["held-in-memory", "spool-tailed"])
async def test_a_mismatch_cuts_every_response_and_stores_nothing(
        tmp_path: Path, held: int) -> None:
    hot = HotBlobs(32 << 20, held)
    pipeline, records = await _pipeline(tmp_path, hot)
    records.gate.set()
    up = FakeUpstream()
    async with _served(pipeline, _source(up, hashlib.sha256(b"other").hexdigest())) as url:
        bodies = await _burst(url)
    assert all(body is None or len(body) < len(DATA) for body in bodies)
    assert not [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
    assert (hot.used_bytes, records.written, up.calls) == (0, 0, 1)


async def test_requests_reading_one_blob_at_once_share_one_read(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "data")
    await store.open()
    writer = await store.open_writer(algorithms=["sha256"], max_bytes=None)
    await writer.write(DATA)
    info = await writer.commit([])
    await writer.close()
    path = store.local_path(info.sha256)
    assert path is not None
    hot = HotBlobs(32 << 20, 1 << 20)
    loads: list[Awaitable[bytes | None]] = [hot.load(store, info.sha256, path)
                                            for _ in range(BURST)]
    assert await asyncio.gather(*loads) == [DATA] * BURST
    assert hot.loads == 1
    assert hot.get(info.sha256) == DATA


async def test_fills_held_after_them_stay_within_the_memory_cap(tmp_path: Path) -> None:
    hot = HotBlobs(len(DATA) * 2, 1 << 20)  # room for two fills' bytes
    pipeline, records = await _pipeline(tmp_path, hot)
    records.gate.set()
    for n in range(4):
        up = FakeUpstream(data=os.urandom(len(DATA)))
        digest = hashlib.sha256(up.data).hexdigest()
        source = dataclasses.replace(_source(up, digest), key=f"pypi|up|{URL}{n}")
        assert (await pipeline.ensure(source)).sha256 == digest
        assert hot.used_bytes <= hot.max_bytes
        assert hot.get(digest) == up.data  # the newest is held
    await pipeline.close()
    assert hot.used_bytes == 2 * len(DATA)

