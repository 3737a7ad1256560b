"""Documents too large for the memory cache: a caller that can do without the body
(its parsed and rendered forms are cached by version) gets the document without
reading it from disk; one that needs it reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metrics import Metrics
from stockade.proxy.renderslots import RenderSlots
from stockade.proxy.upstream import LARGE_BODY_BYTES, Upstream
from stockade.storage.refs import RefStore
from testbed.counting import count_body_reads
from tests.unit.proxy.test_metacache_negative import URL, Clock, FakeUpstream

BODY = b"document"  # what FakeUpstream's answer reads: larger than a quarter of 16 bytes


def _cache(refs: RefStore, clock: Clock) -> MetadataCache:
    return MetadataCache(refs, Metrics(), max_doc_bytes=1 << 20, memory_bytes=16, clock=clock)


async def test_a_large_document_is_had_warm_without_its_body(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refs, clock, upstream = RefStore(tmp_path, "metadata"), Clock(), FakeUpstream(answer=200)
    up = cast(Upstream, upstream)
    opts: dict[str, Any] = {"accept": "a", "ttl_s": 60.0, "stale_if_error_s": 60.0}
    first = await _cache(refs, clock).get("npm", up, URL, **opts)
    assert first.body == BODY
    reads = count_body_reads(refs, monkeypatch)
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


@dataclass
class _AnnouncedResponse:
    """A response announcing ``content_length``; notes whether a read slot was held
    from the start of its read."""

    content_length: int
    read_slots: RenderSlots
    status: int = 200
    url: str = URL
    headers: CIMultiDictProxy[str] = field(
        default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    held: list[bool] = field(default_factory=list)

    async def read(self, _max_bytes: int) -> bytes:
        self.held.append(self.read_slots.held)
        return BODY


@dataclass
class _AnnouncingUpstream:
    response: _AnnouncedResponse
    name: str = "up"
    offline: bool = False

    @asynccontextmanager
    async def get(self, url: str, *, headers: Any = None) -> AsyncIterator[_AnnouncedResponse]:
        yield self.response


@pytest.mark.parametrize(("length", "in_slot"), [(LARGE_BODY_BYTES, True), (1024, False)])
async def test_a_body_announced_large_is_read_wholly_in_a_read_slot(
        tmp_path: Path, length: int, in_slot: bool) -> None:
    response = _AnnouncedResponse(length, RenderSlots(tmp_path / "locks", 1, kind="read"))
    up = cast(Upstream, _AnnouncingUpstream(response))
    doc = await _cache(RefStore(tmp_path, "metadata"), Clock()).get(
        "npm", up, URL, accept="a", ttl_s=60.0, stale_if_error_s=60.0)
    assert doc.body == BODY
    # from its first byte: the beginnings of large bodies do not wait in memory
    assert response.held == [in_slot]
