"""Over read-only storage, a metadata document too large for the memory cache is
kept in the server's private scratch folder: a warm request that needs its body
reads it from there and does not go upstream again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metadocs import MetadataRecords
from stockade.proxy.metrics import Metrics
from stockade.proxy.readonly import ScratchRecords
from stockade.proxy.upstream import Upstream
from stockade.storage.refs import RefStore
from tests.unit.proxy.test_metacache_negative import URL, Clock, FakeUpstream

BODY = b"document"  # what FakeUpstream's answer reads: larger than a quarter of 16 bytes
OPTS: dict[str, Any] = {"accept": "a", "ttl_s": 60.0, "stale_if_error_s": 60.0}


def _cache(refs: MetadataRecords, clock: Clock) -> MetadataCache:
    return MetadataCache(refs, Metrics(), max_doc_bytes=1 << 20, memory_bytes=16, clock=clock)


def _read_only(root: Path) -> RefStore:
    root.mkdir(exist_ok=True)
    return RefStore(root, "metadata", read_only=True)


async def test_a_large_document_is_fetched_once_over_read_only_storage(tmp_path: Path) -> None:
    clock, upstream = Clock(), FakeUpstream(answer=200)
    up = cast(Upstream, upstream)
    scratch = tmp_path / "scratch"
    cache = _cache(ScratchRecords(_read_only(tmp_path / "data"), RefStore(scratch, "metadata")),
                   clock)
    first = await cache.get("npm", up, URL, **OPTS)
    for body in (True, False, True):
        warm = await cache.get("npm", up, URL, body=body, **OPTS)
        assert warm.version == first.version
        assert warm.body == (BODY if body else b"")
    assert upstream.calls == 1
    assert list(scratch.rglob("*.body")), "the body is not in the scratch folder"
    assert not list((tmp_path / "data").rglob("*")), "read-only storage was written"


async def test_without_a_scratch_folder_each_warm_request_went_upstream(tmp_path: Path) -> None:
    """What the server did before: nothing kept, so a body is fetched each time."""
    clock, upstream = Clock(), FakeUpstream(answer=200)
    cache = _cache(_read_only(tmp_path / "data"), clock)
    for _ in range(3):
        await cache.get("npm", cast(Upstream, upstream), URL, **OPTS)
    assert upstream.calls == 3


async def test_a_revalidated_stored_document_keeps_its_stored_body(tmp_path: Path) -> None:
    data = tmp_path / "data"
    writable = RefStore(data, "metadata")
    await writable.put("k", {"url": URL, "etag": "e"}, b"stored body")
    records = ScratchRecords(_read_only(data), RefStore(tmp_path / "scratch", "metadata"))
    await records.put("k", {"url": URL, "etag": "e", "fetched_at": 2.0})  # a 304: no body
    assert (await records.get("k") or {}).get("fetched_at") == 2.0
    assert await records.get_body("k") == b"stored body"


async def test_the_scratch_folder_is_bounded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await RefStore(data, "metadata").put("old", {"url": "stored"}, b"stored")
    scratch = tmp_path / "scratch"
    records = ScratchRecords(_read_only(data), RefStore(scratch, "metadata"), max_bytes=3000)
    await records.put("old", {"url": "fetched"}, b"x" * 1000)
    await records.put("a", {"url": "a"}, b"a" * 1000)
    assert await records.get("old") is not None  # used: "a" is now the oldest
    await records.put("b", {"url": "b"}, b"b" * 1000)
    assert await records.get("a") is None  # dropped, and never stored
    assert await records.get_body("b") == b"b" * 1000
    assert (await records.get("old") or {}).get("url") == "fetched"
    await records.put("huge", {"url": "huge"}, b"h" * 4000)  # larger than the bound: not kept
    assert await records.get("huge") is None
    await records.put("c", {"url": "c"}, b"c" * 1000)
    assert await records.get("b") is None
    await records.put("d", {"url": "d"}, b"d" * 1000)
    # "old" went: its key reads the stored record again.
    assert (await records.get("old") or {}).get("url") == "stored"
    assert await records.get_body("old") == b"stored"
    bodies = sum(p.stat().st_size for p in scratch.rglob("*.body"))
    assert bodies <= 3000
