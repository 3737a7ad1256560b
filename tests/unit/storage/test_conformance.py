"""The behaviour every ``BlobStore`` backend owes the pipeline.

Each backend joins ``BACKENDS`` with a factory that opens a store over a
folder (or bucket) and a way to spoil a stored blob's bytes behind the store's
back; every test below then runs against it. The s3 backend runs against a
real S3 server process (moto), one fresh bucket per test.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from stockade.config.model import S3Settings
from stockade.storage.digest import Digest
from stockade.storage.errors import BlobNotFoundError, BlobTooLargeError, DigestMismatchError
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.protocol import BlobStore
from stockade.storage.s3 import S3BlobStore
from stockade.storage.s3bucket import S3Bucket
from stockade.storage.verify import verify_all
from testbed.s3server import ENVIRON, MotoServer


@dataclass(frozen=True)
class Backend:
    """How to open one backend over ``root`` and spoil a blob in it.

    ``context`` holds what the backend needs for one test (a bucket); stores
    opened by ``open`` are closed when the test ends.
    """

    open: Callable[[Path], Awaitable[BlobStore]]
    spoil: Callable[[Path, str, bytes], Awaitable[None]]


Factory = Callable[[pytest.FixtureRequest, AsyncExitStack], Backend]


def _filesystem(_request: pytest.FixtureRequest, stack: AsyncExitStack) -> Backend:
    async def open_store(root: Path) -> BlobStore:
        store = FilesystemBlobStore(root)
        await store.open()
        stack.push_async_callback(store.close)
        return store

    async def spoil(root: Path, sha256: str, data: bytes) -> None:
        (root / "blobs" / "sha256" / sha256[:2] / sha256).write_bytes(data)

    return Backend(open_store, spoil)


def _s3(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Backend:
    server: MotoServer = request.getfixturevalue("s3_server")
    settings = S3Settings(**server.settings(server.new_bucket(), prefix="mirror"))

    async def open_store(root: Path) -> BlobStore:
        store = S3BlobStore(S3Bucket(settings, ENVIRON), root)
        await store.open()
        stack.push_async_callback(store.close)
        return store

    async def spoil(root: Path, sha256: str, data: bytes) -> None:
        # Overwrite the object behind the store's back and drop the local copy.
        bucket = S3Bucket(settings, ENVIRON)
        await bucket.open()
        try:
            await bucket.put(bucket.key(f"blobs/sha256/{sha256[:2]}/{sha256}"), data)
        finally:
            await bucket.close()
        (root / "hot" / "sha256" / sha256[:2] / sha256).unlink(missing_ok=True)

    return Backend(open_store, spoil)


BACKENDS: dict[str, Factory] = {"filesystem": _filesystem, "s3": _s3}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with AsyncExitStack() as stack:
        yield BACKENDS[request.param](request, stack)


@pytest.fixture
async def store(backend: Backend, tmp_path: Path) -> BlobStore:
    return await backend.open(tmp_path / "store")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _read(store: BlobStore, sha256: str, start: int = 0) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start)])


async def _listed(store: BlobStore) -> set[str]:
    return {info.sha256 async for info in store.iter_blobs()}


async def _put(store: BlobStore, data: bytes) -> str:
    writer = await store.open_writer()
    await writer.write(data)
    info = await writer.commit([Digest("sha256", _sha(data))])
    await writer.close()
    return info.sha256


async def test_a_blob_is_visible_only_once_committed(store: BlobStore) -> None:
    data = b"wheel bytes " * 1000
    writer = await store.open_writer(algorithms=["sha512", "md5"])
    await writer.write(data[:5000])
    await writer.write(data[5000:])
    assert writer.size == len(data)
    assert await store.stat(_sha(data)) is None
    assert await _listed(store) == set()
    info = await writer.commit([Digest("sha256", _sha(data))])
    await writer.close()
    assert info.sha256 == _sha(data) and info.size == len(data)
    assert info.digests["sha512"] == hashlib.sha512(data).hexdigest()
    assert info.digests["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    stat = await store.stat(info.sha256)
    assert stat is not None and stat.size == len(data)
    assert await _read(store, info.sha256) == data
    assert await _read(store, info.sha256, start=7) == data[7:]
    assert await _listed(store) == {info.sha256}
    assert store.total_bytes == len(data)


async def test_a_failed_commit_leaves_nothing(store: BlobStore) -> None:
    writer = await store.open_writer()
    await writer.write(b"tampered")
    with pytest.raises(DigestMismatchError):
        await writer.commit([Digest("sha256", _sha(b"original"))])
    assert await store.stat(_sha(b"tampered")) is None
    assert await _listed(store) == set()
    assert store.total_bytes == 0
    await writer.abort()  # safe again after a failed commit


async def test_an_aborted_blob_leaves_nothing(store: BlobStore) -> None:
    writer = await store.open_writer()
    await writer.write(b"half of it")
    await writer.abort()
    await writer.abort()
    assert await _listed(store) == set()
    assert store.total_bytes == 0


async def test_a_blob_over_the_limit_is_refused(store: BlobStore) -> None:
    writer = await store.open_writer(max_bytes=10)
    await writer.write(b"12345")
    with pytest.raises(BlobTooLargeError):
        await writer.write(b"678901")
    assert await _listed(store) == set()


async def test_concurrent_commits_of_one_digest_store_it_once(store: BlobStore) -> None:
    data = b"same artifact from two clients" * 100

    async def fill() -> str:
        writer = await store.open_writer()
        for start in range(0, len(data), 512):
            await writer.write(data[start:start + 512])
            await asyncio.sleep(0)
        info = await writer.commit([Digest("sha256", _sha(data))])
        await writer.close()
        return info.sha256

    first, second = await asyncio.gather(fill(), fill())
    assert first == second == _sha(data)
    assert await _listed(store) == {first}
    assert store.total_bytes == len(data)
    assert await _read(store, first) == data


async def test_stat_read_and_delete(store: BlobStore) -> None:
    sha = await _put(store, b"to be deleted")
    assert await store.delete(sha) is True
    assert await store.delete(sha) is False
    assert await store.stat(sha) is None
    with pytest.raises(BlobNotFoundError):
        await _read(store, sha)
    assert store.total_bytes == 0


async def test_blobs_survive_a_reopen(backend: Backend, tmp_path: Path) -> None:
    first = await backend.open(tmp_path / "store")
    sha = await _put(first, b"kept across restarts")
    again = await backend.open(tmp_path / "store")
    assert await _read(again, sha) == b"kept across restarts"
    assert await _listed(again) == {sha}


async def test_verify_removes_a_spoiled_blob(backend: Backend, tmp_path: Path) -> None:
    store = await backend.open(tmp_path / "store")
    good = await _put(store, b"good bytes")
    bad = await _put(store, b"bytes that will rot")
    await backend.spoil(tmp_path / "store", bad, b"rotten")
    checked, removed = await verify_all(store)
    assert (checked, removed) == (2, [bad])
    assert await _listed(store) == {good}
    assert await store.stat(bad) is None


async def test_a_store_that_can_write_says_so(store: BlobStore) -> None:
    assert await store.writable() is True


async def test_a_malformed_digest_is_simply_not_stored(store: BlobStore) -> None:
    assert await store.stat("ABC") is None
    assert store.local_path("../../etc/passwd") is None
    with pytest.raises(BlobNotFoundError):
        await _read(store, "not-a-digest")
