"""What the S3 backend does beyond the conformance suite: multipart uploads,
the bounded hot cache, credentials. Against a real S3 server process (moto)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stockade.config.model import S3Settings
from stockade.storage import s3bucket
from stockade.storage.digest import Digest
from stockade.storage.errors import StorageError
from stockade.storage.s3 import S3BlobStore
from stockade.storage.s3bucket import S3Bucket, credentials
from testbed.s3server import ENVIRON, MotoServer


@pytest.fixture
def settings(s3_server: MotoServer) -> S3Settings:
    return S3Settings(**s3_server.settings(s3_server.new_bucket()))


@pytest.fixture
async def store(settings: S3Settings, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore(S3Bucket(settings, ENVIRON), tmp_path, cache_max_bytes=3000)
    await store.open()
    yield store
    await store.close()


async def _put(store: S3BlobStore, data: bytes) -> str:
    writer = await store.open_writer()
    for start in range(0, len(data), 1 << 20):
        await writer.write(data[start:start + (1 << 20)])
    info = await writer.commit([Digest("sha256", hashlib.sha256(data).hexdigest())])
    await writer.close()
    return info.sha256


async def _read(store: S3BlobStore, sha256: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256)])


async def test_a_large_blob_goes_up_in_parts(
    store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3bucket, "PART_BYTES", 5 * 1024**2)  # S3's smallest part
    data = bytes(range(256)) * (11 * 1024**2 // 256)
    sha = await _put(store, data)
    head = await store.bucket.client.head_object(
        Bucket=store.bucket.name, Key=f"blobs/sha256/{sha[:2]}/{sha}")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert await _read(store, sha) == data
    assert not list((store.root / "tmp").iterdir())  # no spool left behind


async def test_the_hot_cache_stays_bounded_and_refills_from_the_bucket(
    store: S3BlobStore,
) -> None:
    first = await _put(store, b"a" * 2000)
    assert store.local_path(first) is not None
    second = await _put(store, b"b" * 2000)  # 4000 > 3000: the older copy goes
    assert store.local_path(first) is None
    assert store.local_path(second) is not None
    assert (await store.stat(first)) is not None  # still in the bucket
    assert await _read(store, first) == b"a" * 2000  # read through, and kept again
    assert store.local_path(first) is not None
    assert store.local_path(second) is None
    assert store.total_bytes == 4000


async def test_a_blob_larger_than_the_cache_is_served_from_the_bucket(
    store: S3BlobStore,
) -> None:
    sha = await _put(store, b"c" * 5000)
    assert store.local_path(sha) is None
    assert await _read(store, sha) == b"c" * 5000


def test_credentials_come_from_the_named_variables_or_the_standard_chain() -> None:
    named = S3Settings(access_key_id_env="K", secret_access_key_env="S")  # noqa: S106
    assert credentials(named, {"K": "key", "S": "secret"}) == {
        "aws_access_key_id": "key", "aws_secret_access_key": "secret"}
    with pytest.raises(StorageError, match="not set"):
        credentials(named, {})
    assert credentials(S3Settings(), {}) == {}  # botocore's chain: files, roles
    assert credentials(S3Settings(access_key_id_env=None, secret_access_key_env=None),
                       {"AWS_ACCESS_KEY_ID": "x"}) == {}


def test_the_prefix_is_a_folder() -> None:
    assert S3Settings(prefix="mirror").prefix == "mirror/"
    assert S3Settings(prefix="/a/b/").prefix == "a/b/"
    assert S3Settings().prefix == ""
