"""Revalidating a stale document: its version names its bytes, so a 304 (or the same
bytes again) keeps everything derived from it; one revalidation at a time, with the
copy held answering meanwhile; no body read from disk to revalidate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.proxy.errors import UpstreamUnavailableError
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metadocs import CachedDoc, CacheResult
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream
from stockade.storage.refs import RefStore
from testbed.counting import count_body_reads
from tests.unit.proxy.test_metacache_negative import URL, Clock

OPTS: dict[str, Any] = {"accept": "a", "ttl_s": 60.0, "stale_if_error_s": 3600.0}
_DEADLINE_S = 10.0


@dataclass
class _Response:
    status: int
    body: bytes
    etag: str
    url: str = URL
    content_length: int | None = None
    read_slots: None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return CIMultiDictProxy(CIMultiDict({"ETag": self.etag}))

    async def read(self, _max_bytes: int) -> bytes:
        return self.body


@dataclass
class EtagUpstream:
    """Serves ``body`` with an entity tag naming it, and 304 to a request naming it;
    ``hold`` makes each request wait until it is set; ``error`` fails them."""

    body: bytes = b"document one"
    name: str = "up"
    offline: bool = False
    conditional: bool = True  # False: a 200 with the body every time
    hold: asyncio.Event | None = None
    error: Exception | None = None
    asked: list[str | None] = field(default_factory=list)  # If-None-Match of each

    @asynccontextmanager
    async def get(self, url: str, *, headers: Any = None) -> AsyncIterator[_Response]:
        self.asked.append((headers or {}).get("If-None-Match"))
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        etag = f'"{len(self.body)}-{hash(self.body) & 0xFFFF}"'
        if self.conditional and (headers or {}).get("If-None-Match") == etag:
            yield _Response(304, b"", etag)
        else:
            yield _Response(200, self.body, etag)


def _cache(refs: RefStore, clock: Clock, memory_bytes: int = 1 << 20) -> MetadataCache:
    return MetadataCache(refs, Metrics(), max_doc_bytes=1 << 20, memory_bytes=memory_bytes,
                         clock=clock)


async def _until(condition: Any) -> None:
    deadline = asyncio.get_running_loop().time() + _DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("conditional", [True, False], ids=["304", "same bytes"])
async def test_a_revalidation_finding_the_same_bytes_keeps_the_version(
        tmp_path: Path, conditional: bool) -> None:
    clock, upstream = Clock(), EtagUpstream(conditional=conditional)
    cache = _cache(RefStore(tmp_path, "metadata"), clock)
    up = cast(Upstream, upstream)
    first = await cache.get("npm", up, URL, **OPTS)
    clock.now += 61
    again = await cache.get("npm", up, URL, **OPTS)
    assert len(upstream.asked) == 2
    assert again.body == first.body
    assert again.fetched_at == clock.now  # fresh again ...
    assert again.version == first.version  # ... and nothing derived is made again
    # as another process (or a restart) reads it
    stored = await _cache(RefStore(tmp_path, "metadata"), clock).get("npm", up, URL, **OPTS)
    assert (stored.version, stored.fetched_at) == (first.version, clock.now)
    assert len(upstream.asked) == 2


async def test_a_changed_document_has_a_new_version(tmp_path: Path) -> None:
    clock, upstream = Clock(), EtagUpstream()
    cache = _cache(RefStore(tmp_path, "metadata"), clock)
    up = cast(Upstream, upstream)
    first = await cache.get("npm", up, URL, **OPTS)
    upstream.body = b"document two"
    clock.now += 61
    changed = await cache.get("npm", up, URL, **OPTS)
    assert changed.body == b"document two"
    assert changed.version != first.version


async def test_a_large_document_is_revalidated_without_reading_its_body(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, upstream = Clock(), EtagUpstream()
    refs = RefStore(tmp_path, "metadata")
    up = cast(Upstream, upstream)
    first = await _cache(refs, clock, memory_bytes=16).get("npm", up, URL, **OPTS)
    cache = _cache(refs, clock, memory_bytes=16)  # too large for its memory
    await cache.get("npm", up, URL, body=False, **OPTS)
    reads = count_body_reads(refs, monkeypatch)
    clock.now += 61
    warm = await cache.get("npm", up, URL, body=False, **OPTS)
    assert upstream.asked[-1] is not None  # asked conditionally, answered 304
    assert (warm.has_body, warm.version, warm.fetched_at) == (False, first.version, clock.now)
    assert reads == []
    full = await cache.get("npm", up, URL, **OPTS)  # a caller needing it reads it
    assert (full.body, full.version) == (first.body, first.version)
    assert len(reads) == 1
    assert len(upstream.asked) == 2  # fetched, then revalidated once


async def test_while_a_revalidation_runs_the_held_copy_answers(tmp_path: Path) -> None:
    clock, upstream = Clock(), EtagUpstream()
    cache = _cache(RefStore(tmp_path, "metadata"), clock)
    up = cast(Upstream, upstream)
    first = await cache.get("npm", up, URL, **OPTS)
    clock.now += 61
    upstream.hold = asyncio.Event()
    upstream.body = b"document two"
    leader = asyncio.ensure_future(cache.get("npm", up, URL, **OPTS))
    await _until(lambda: len(upstream.asked) == 2)  # revalidating, held upstream
    others = await asyncio.gather(*(cache.get("npm", up, URL, **OPTS) for _ in range(20)))
    assert {(d.body, d.result) for d in others} == {(first.body, CacheResult.STALE)}
    assert not leader.done()
    upstream.hold.set()
    assert (await leader).body == b"document two"
    assert len(upstream.asked) == 2  # one revalidation for all of them
    after = await cache.get("npm", up, URL, **OPTS)
    assert (after.body, after.result) == (b"document two", CacheResult.HIT)


async def test_a_copy_too_old_to_stand_in_waits_for_the_revalidation(tmp_path: Path) -> None:
    clock, upstream = Clock(), EtagUpstream()
    cache = _cache(RefStore(tmp_path, "metadata"), clock)
    up = cast(Upstream, upstream)
    await cache.get("npm", up, URL, **OPTS)
    clock.now += 3601  # older than stale_if_error_s
    upstream.hold = asyncio.Event()
    upstream.body = b"document two"
    waiting = [asyncio.ensure_future(cache.get("npm", up, URL, **OPTS)) for _ in range(5)]
    await _until(lambda: len(upstream.asked) == 2)
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)
    upstream.hold.set()
    assert {(await w).body for w in waiting} == {b"document two"}
    assert len(upstream.asked) == 2


async def test_a_failed_revalidation_still_follows_stale_if_error(tmp_path: Path) -> None:
    clock, upstream = Clock(), EtagUpstream()
    cache = _cache(RefStore(tmp_path, "metadata"), clock)
    up = cast(Upstream, upstream)
    first = await cache.get("npm", up, URL, **OPTS)
    clock.now += 61
    upstream.error = UpstreamUnavailableError("down", upstream="up")
    stale = await cache.get("npm", up, URL, **OPTS)
    assert (stale.body, stale.result, stale.version) == (first.body, CacheResult.STALE,
                                                         first.version)
    clock.now += 3600
    with pytest.raises(UpstreamUnavailableError):
        await cache.get("npm", up, URL, **OPTS)


def test_a_version_once_read_is_not_carried_to_a_changed_copy() -> None:
    """The version is made once per document and kept: a copy with other bytes (or
    first seen at another time) made from one whose version was read has its own."""
    doc = CachedDoc(key="k", url=URL, body=b"one", content_type="t", fetched_at=1.0,
                    changed_at=1.0, digest="a" * 64)
    first = doc.version
    assert doc.version == first
    assert replace(doc, result=CacheResult.STALE).version == first
    assert replace(doc, fetched_at=2.0).version == first  # the same bytes, kept
    assert replace(doc, body=b"three", digest="b" * 64).version != first
    assert replace(doc, changed_at=2.0).version != first
    assert replace(doc, changed_at=None, fetched_at=5.0).version != first
