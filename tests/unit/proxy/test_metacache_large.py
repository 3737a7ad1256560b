"""Documents too large for the memory cache: a caller that can do without the body
(its parsed and rendered forms are cached by version) gets the document without
reading it from disk; one that needs it reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream
from stockade.storage.refs import RefStore
from tests.unit.proxy.test_metacache_negative import URL, Clock, FakeUpstream

BODY = b"document"  # what FakeUpstream's answer reads: larger than a quarter of 16 bytes


def _cache(refs: RefStore, clock: Clock) -> MetadataCache:
    return MetadataCache(refs, Metrics(), max_doc_bytes=1 << 20, memory_bytes=16, clock=clock)


def _count_body_reads(refs: RefStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    get_body = refs.get_body

    async def counted(key: str) -> bytes | None:
        reads.append(key)
        return await get_body(key)

    monkeypatch.setattr(refs, "get_body", counted)
    return reads


async def test_a_large_document_is_had_warm_without_its_body(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs, clock, upstream = RefStore(tmp_path, "metadata"), Clock(), FakeUpstream(answer=200)
    up = cast(Upstream, upstream)
    opts: dict[str, Any] = {"accept": "a", "ttl_s": 60.0, "stale_if_error_s": 60.0}
    first = await _cache(refs, clock).get("npm", up, URL, **opts)
    assert first.body == BODY
    reads = _count_body_reads(refs, monkeypatch)
    cache = _cache(refs, clock)  # a new process: nothing in memory yet
    for _ in range(3):
        warm = await cache.get("npm", up, URL, body=False, **opts)
        assert not warm.has_body
        assert (warm.size, warm.version) == (len(BODY), first.version)
    assert reads == []
    full = await cache.get("npm", up, URL, **opts)
    assert (full.body, full.version) == (BODY, first.version)
    assert len(reads) == 1
    assert upstream.calls == 1


async def test_a_stale_large_document_is_revalidated_with_its_body(tmp_path: Path) -> None:
    refs, clock, upstream = RefStore(tmp_path, "metadata"), Clock(), FakeUpstream(answer=200)
    up = cast(Upstream, upstream)
    opts: dict[str, Any] = {"accept": "a", "ttl_s": 60.0, "stale_if_error_s": 60.0}
    cache = _cache(refs, clock)
    await cache.get("npm", up, URL, **opts)
    clock.now += 61
    again = await cache.get("npm", up, URL, body=False, **opts)
    assert again.body == BODY and again.has_body  # fetched anew: here it is
    assert upstream.calls == 2
