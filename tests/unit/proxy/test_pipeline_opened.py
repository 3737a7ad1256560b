"""The pipeline's header-first fill (``ArtifactPipeline.opened``), for any ecosystem.

One response opened for every request asking at once, the ecosystem's hook asked
once for the digest to verify it with (from its headers), the response streamed
by the first request that goes on, closed unread when every one left; 404s kept
in the metadata cache's shared memory of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.policy.model import Ecosystem
from stockade.proxy.errors import IntegrityError, UpstreamStatusError
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metrics import Metrics
from stockade.proxy.pipeline import ArtifactPipeline, ArtifactSource, Outcome
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.refs import RefStore
from testbed.fakes.response import BytesResponse

URL = "http://up.example/files/demo-1.0.tar.gz"

DATA = b"artifact bytes " * 10_000
REQUESTS = 20



@dataclass
class FakeUpstream:
    """Answers ``status``; a 200 carries ``DATA`` and its sha256 as ``X-Digest``
    (``digest`` overrides it). Counts the requests and keeps the responses."""

    status: int = 200
    digest: str = hashlib.sha256(DATA).hexdigest()
    name: str = "up"
    offline: bool = False
    internal: bool = False
    responses: list[BytesResponse] = field(default_factory=list)
    calls: int = 0

    @asynccontextmanager
    async def get(self, url: str, *, headers: Any = None) -> AsyncIterator[BytesResponse]:
        self.calls += 1
        await asyncio.sleep(0.01)  # the other requests arrive meanwhile
        if self.status != 200:
            raise UpstreamStatusError("no", upstream=self.name, upstream_status=self.status)
        response = BytesResponse(DATA, CIMultiDictProxy(CIMultiDict({"X-Digest": self.digest})))
        self.responses.append(response)
        yield response


class Hook:
    """An ecosystem's decision: the digest in ``X-Digest``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, source: ArtifactSource,
                       headers: CIMultiDictProxy[str]) -> ArtifactSource:
        self.calls += 1
        return dataclasses.replace(source, expected=(Digest.parse("sha256",
                                                                  headers["X-Digest"]),))


def _source(up: FakeUpstream) -> ArtifactSource:
    return ArtifactSource(ecosystem=Ecosystem.PYPI, upstream=cast(Upstream, up), url=URL,
                          key=f"pypi|up|{URL}", filename="demo-1.0.tar.gz", expected=())


async def _pipeline(root: Path) -> ArtifactPipeline:
    store = FilesystemBlobStore(root / "data")
    await store.open()
    return ArtifactPipeline(store, RefStore(root / "data", "artifacts"), Metrics(),
                            max_artifact_bytes=1 << 24)


def _misses(root: Path) -> MetadataCache:
    return MetadataCache(RefStore(root / "data", "metadata"), Metrics(), max_doc_bytes=1 << 20)


def _stored(root: Path) -> set[str]:
    return {p.name for p in (root / "data" / "blobs").rglob("*") if p.is_file()}


async def test_one_response_one_decision_for_every_request(tmp_path: Path) -> None:
    pipeline, misses, up, hook = await _pipeline(tmp_path), _misses(tmp_path), FakeUpstream(), \
        Hook()

    async def one() -> str:
        async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
            assert head.outcome is Outcome.OPEN
            assert head.headers["X-Digest"] == up.digest
            return (await pipeline.ensure(head.source)).sha256

    assert await asyncio.gather(*(one() for _ in range(REQUESTS))) == [up.digest] * REQUESTS
    assert (up.calls, hook.calls) == (1, 1)
    async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
        assert head.outcome is Outcome.STORED
        assert head.stored is not None and head.stored.info.sha256 == up.digest
    assert (up.calls, hook.calls) == (1, 1)


async def test_left_untaken_it_is_closed_unread_and_asked_again(tmp_path: Path) -> None:
    pipeline, misses, up, hook = await _pipeline(tmp_path), _misses(tmp_path), FakeUpstream(), \
        Hook()

    async def refused() -> None:
        async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
            assert head.outcome is Outcome.OPEN

    await asyncio.gather(*(refused() for _ in range(REQUESTS)))
    assert up.calls == 1
    assert not up.responses[0].read
    assert _stored(tmp_path) == set()
    async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
        assert head.outcome is Outcome.OPEN
        await pipeline.ensure(head.source)
    assert up.calls == 2
    assert up.digest in _stored(tmp_path)


async def test_a_wrong_digest_fails_every_request_and_stores_nothing(tmp_path: Path) -> None:
    pipeline, misses, hook = await _pipeline(tmp_path), _misses(tmp_path), Hook()
    up = FakeUpstream(digest=hashlib.sha256(b"other").hexdigest())

    async def one() -> None:
        async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
            with pytest.raises(IntegrityError):
                await pipeline.ensure(head.source)
            # asked again, the failed fill answers: not a second upstream request
            with pytest.raises(IntegrityError):
                await pipeline.ensure(head.source)

    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    assert up.calls == 1
    assert _stored(tmp_path) == set()


async def test_a_404_is_kept_for_other_processes(tmp_path: Path) -> None:
    up, hook = FakeUpstream(status=404), Hook()
    pipeline, misses = await _pipeline(tmp_path), _misses(tmp_path)

    async def one(pipeline: ArtifactPipeline, misses: MetadataCache) -> Outcome:
        async with pipeline.opened(_source(up), hook, misses, stale_if_error_s=60.0) as head:
            assert head.status == 404
            return head.outcome

    assert await asyncio.gather(*(one(pipeline, misses) for _ in range(REQUESTS))) == [
        Outcome.MISSING] * REQUESTS
    # another worker process: its own pipeline and cache over the same storage
    other, others = await _pipeline(tmp_path), _misses(tmp_path)
    assert await one(other, others) is Outcome.MISSING
    assert (up.calls, hook.calls) == (1, 0)
