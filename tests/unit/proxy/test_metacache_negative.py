"""The metadata cache remembers upstream 404s: for negative_ttl_s, then asked again;
answered while the upstream is down (within stale_if_error_s); offline, however old."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.proxy.errors import (
    NotCachedError,
    UpstreamStatusError,
    UpstreamUnavailableError,
)
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream
from stockade.storage.refs import RefStore

URL = "http://up.example/x"


@dataclass
class _Response:
    status: int
    url: str = URL
    headers: CIMultiDictProxy[str] = field(
        default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    content_length: int | None = None
    read_slots: None = None

    async def read(self, _max_bytes: int) -> bytes:
        return b"document"


@dataclass
class FakeUpstream:
    """Answers with ``answer``: a status, or an exception to raise; counts calls."""

    answer: int | Exception = 404
    name: str = "up"
    offline: bool = False
    calls: int = 0

    @asynccontextmanager
    async def get(self, url: str, *, headers: Any = None) -> AsyncIterator[_Response]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer >= 400:
            raise UpstreamStatusError("no", upstream=self.name, upstream_status=self.answer)
        yield _Response(self.answer)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(tmp_path: Path, clock: Clock, *, offline: bool = False) -> MetadataCache:
    return MetadataCache(RefStore(tmp_path, "metadata"), Metrics(), max_doc_bytes=1 << 20,
                         offline=offline, negative_ttl_s={"npm": 60.0}, clock=clock)


async def get(c: MetadataCache, up: FakeUpstream) -> bytes:
    doc = await c.get("npm", cast(Upstream, up), URL, accept="a", ttl_s=300.0,
                      stale_if_error_s=3600.0)
    return doc.body


async def test_a_404_is_remembered_for_the_negative_ttl(tmp_path: Path) -> None:
    clock, up = Clock(), FakeUpstream(404)
    c = cache(tmp_path, clock)
    for _ in range(3):
        with pytest.raises(UpstreamStatusError) as caught:
            await get(c, up)
        assert caught.value.status == 404
    assert up.calls == 1
    clock.now += 61
    up.answer = 200
    assert await get(c, up) == b"document"
    assert up.calls == 2
    clock.now += 10
    assert await get(c, up) == b"document"  # the document replaced the 404
    assert up.calls == 2


async def test_a_remembered_404_stands_in_while_the_upstream_is_down(tmp_path: Path) -> None:
    clock, up = Clock(), FakeUpstream(404)
    c = cache(tmp_path, clock)
    with pytest.raises(UpstreamStatusError):
        await get(c, up)
    up.answer = UpstreamUnavailableError("down", upstream="up")
    clock.now += 120  # past the negative TTL, within stale_if_error_s
    with pytest.raises(UpstreamStatusError) as caught:
        await get(c, up)
    assert caught.value.status == 404
    clock.now += 3600  # past stale_if_error_s too: the failure shows
    with pytest.raises(UpstreamUnavailableError):
        await get(c, up)


async def test_remembered_on_disk_and_offline_however_old(tmp_path: Path) -> None:
    clock, up = Clock(), FakeUpstream(404)
    with pytest.raises(UpstreamStatusError):
        await get(cache(tmp_path, clock), up)
    clock.now += 10 * 365 * 86400
    offline = cache(tmp_path, clock, offline=True)  # a new process over the same records
    with pytest.raises(UpstreamStatusError) as caught:
        await get(offline, up)
    assert caught.value.status == 404
    assert up.calls == 1
    with pytest.raises(NotCachedError):
        await offline.get("npm", cast(Upstream, up), URL + "/other", accept="a", ttl_s=1.0,
                          stale_if_error_s=1.0)


async def test_other_failures_are_not_remembered(tmp_path: Path) -> None:
    clock, up = Clock(), FakeUpstream(503)
    c = cache(tmp_path, clock)
    for _ in range(2):
        with pytest.raises(UpstreamStatusError):
            await get(c, up)
    assert up.calls == 2


async def test_an_artifacts_404_is_shared_with_other_processes_and_the_probe(
        tmp_path: Path) -> None:
    """The 404s a header-first fill keeps (``remember_missing``): read by another
    process over the same records, believed for the negative TTL (then only while
    the upstream fails, ``stale_s``), and the same memory ``probe`` keeps."""
    clock, up = Clock(), FakeUpstream(200)
    upstream = cast(Upstream, up)
    first = cache(tmp_path, clock)
    assert await first.missing("npm", upstream, URL) is None
    await first.remember_missing("npm", upstream, URL, 410)
    second = cache(tmp_path, clock)  # another worker process
    assert await second.missing("npm", upstream, URL) == 410
    with pytest.raises(UpstreamStatusError) as caught:  # probe answers it too, unasked
        await second.probe("npm", upstream, URL, ttl_s=300.0, stale_if_error_s=3600.0)
    assert caught.value.upstream_status == 410
    assert up.calls == 0

    clock.now += 61  # past the negative TTL
    assert await second.missing("npm", upstream, URL) is None
    assert await second.missing("npm", upstream, URL, stale_s=3600.0) == 410


async def test_a_file_found_again_drops_its_404_for_every_process(tmp_path: Path) -> None:
    clock, up = Clock(), FakeUpstream(200)
    upstream = cast(Upstream, up)
    first = cache(tmp_path, clock)
    await first.remember_missing("npm", upstream, URL, 404)
    clock.now += 61
    assert await first.missing("npm", upstream, URL) is None  # asked again: found
    await first.found("npm", upstream, URL, "Mon, 01 Jan 2024 00:00:00 GMT")
    assert await first.missing("npm", upstream, URL, stale_s=3600.0) is None
    second = cache(tmp_path, clock)  # it must not stand in while the upstream fails
    assert await second.missing("npm", upstream, URL, stale_s=3600.0) is None
    doc = await second.probe("npm", upstream, URL, ttl_s=300.0, stale_if_error_s=3600.0)
    assert doc.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert up.calls == 0
