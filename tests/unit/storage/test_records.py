"""The behaviour every ``RecordStore`` owes the replicas sharing it.

Runs against the local-disk ``RefStore`` and the bucket's ``S3RecordStore``
(on a real S3 server process, one bucket per test). Two store objects over one
folder or bucket stand for two replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stockade.config.model import S3Settings
from stockade.storage.records import Record, RecordStore
from stockade.storage.refs import RefStore
from stockade.storage.s3bucket import S3Bucket
from stockade.storage.s3records import S3RecordStore
from testbed.s3server import ENVIRON, MotoServer

Opener = Callable[[], RecordStore]


@pytest.fixture(params=["filesystem", "s3"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens another replica's view of one namespace."""
    if request.param == "filesystem":
        yield lambda: RefStore(tmp_path, "shared")
        return
    server: MotoServer = request.getfixturevalue("s3_server")
    settings = S3Settings(**server.settings(server.new_bucket()))
    buckets: list[S3Bucket] = []

    def open_one() -> RecordStore:
        bucket = S3Bucket(settings, ENVIRON)
        buckets.append(bucket)
        return S3RecordStore(bucket, "shared")

    yield open_one
    for bucket in buckets:
        await bucket.close()


async def _opened(replicas: Opener) -> RecordStore:
    store = replicas()
    bucket = getattr(store, "_bucket", None)
    if isinstance(bucket, S3Bucket):
        await bucket.open()
    return store


async def test_get_put_delete(replicas: Opener) -> None:
    store = await _opened(replicas)
    assert await store.get("pypi|demo") is None
    await store.put("pypi|demo", {"sha256": "ab"})
    assert await store.get("pypi|demo") == {"sha256": "ab", "key": "pypi|demo"}
    await store.put("pypi|demo", {"sha256": "cd"})
    assert (await store.get("pypi|demo") or {})["sha256"] == "cd"
    assert [r["key"] async for r in store.iter_records()] == ["pypi|demo"]
    await store.delete("pypi|demo")
    await store.delete("pypi|demo")
    assert await store.get("pypi|demo") is None


async def test_the_first_writer_wins_and_the_second_reads_its_record(replicas: Opener) -> None:
    one, two = await _opened(replicas), await _opened(replicas)
    first = await one.put_if_absent("k", {"sha256": "first"})
    second = await two.put_if_absent("k", {"sha256": "second"})
    assert first["sha256"] == second["sha256"] == "first"
    assert (await two.get("k") or {})["sha256"] == "first"


async def test_concurrent_updates_lose_nothing(replicas: Opener) -> None:
    stores = [await _opened(replicas) for _ in range(4)]

    def adding(version: str, when: str) -> Callable[[Record | None], Record]:
        def merge(current: Record | None) -> Record:
            versions = dict((current or {}).get("versions", {}))
            versions.setdefault(version, when)
            return {"versions": versions}
        return merge

    results = await asyncio.gather(*(
        store.update("pkg", adding(f"1.{i}", f"t{i}")) for i, store in enumerate(stores)
    ), stores[0].update("pkg", adding("1.0", "late")))
    final = await stores[1].get("pkg")
    assert final is not None
    assert set(final["versions"]) == {"1.0", "1.1", "1.2", "1.3"}
    assert final["versions"]["1.0"] in ("t0", "late")  # whoever came first, once
    for result in results:  # each writer got a record holding its own version
        assert set(result["versions"]) <= set(final["versions"])


async def test_local_records_are_walked_in_batches(tmp_path: Path) -> None:
    from stockade.storage.refs import RefStore

    store = RefStore(tmp_path, "artifacts")
    for i in range(1100):  # more than two batches
        await store.put(f"k{i}", {"key": f"k{i}"})
    seen = [r["key"] async for r in store.iter_records()]
    assert sorted(seen) == sorted(f"k{i}" for i in range(1100))
