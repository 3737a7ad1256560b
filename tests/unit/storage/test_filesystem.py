from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.storage.digest import Digest, DigestError, MultiHasher
from stockade.storage.errors import (
    BlobTooLargeError,
    DigestMismatchError,
    StorageFullError,
)
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.verify import verify_all


async def _store(tmp_path: Path, **kw: int) -> FilesystemBlobStore:
    store = FilesystemBlobStore(tmp_path / "data", **kw)
    await store.open()
    return store


async def _put(store: FilesystemBlobStore, data: bytes) -> str:
    writer = await store.open_writer()
    await writer.write(data)
    info = await writer.commit([Digest("sha256", hashlib.sha256(data).hexdigest())])
    await writer.close()
    return info.sha256


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_commit_is_content_addressed(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    sha = await _put(store, b"hello")
    assert store.blob_path(sha).read_bytes() == b"hello"
    assert (await store.stat(sha)) is not None
    assert _files(tmp_path / "data" / "tmp") == []


async def test_mismatch_stores_nothing(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    writer = await store.open_writer(algorithms=["sha512"])
    await writer.write(b"evil")
    with pytest.raises(DigestMismatchError, match="expected sha512:"):
        await writer.commit([Digest("sha512", hashlib.sha512(b"good").hexdigest())])
    assert _files(tmp_path / "data") == []


async def test_size_limit(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    writer = await store.open_writer(max_bytes=4)
    with pytest.raises(BlobTooLargeError):
        await writer.write(b"12345")
    assert _files(tmp_path / "data") == []


async def test_disk_full_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _store(tmp_path)
    writer = await store.open_writer()

    async def full(_chunk: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer._file, "write", full)
    with pytest.raises(StorageFullError, match="disk is full"):
        await writer.write(b"data")
    assert _files(tmp_path / "data") == []


async def test_leftover_spool_removed_at_open(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    writer = await store.open_writer()
    await writer.write(b"partial")
    await writer._file.close()  # the process "dies" here: the spool stays behind
    reopened = await _store(tmp_path)
    assert _files(tmp_path / "data") == []
    assert reopened.total_bytes == 0


async def test_lru_eviction(tmp_path: Path) -> None:
    store = await _store(tmp_path, max_bytes=25)
    first = await _put(store, b"a" * 10)
    second = await _put(store, b"b" * 10)
    await store.stat(first)  # first is now the most recently used
    third = await _put(store, b"c" * 10)
    assert store.total_bytes == 20
    assert store.local_path(second) is None
    assert store.local_path(first) is not None and store.local_path(third) is not None


async def test_verify_all_removes_corrupted(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    good = await _put(store, b"good")
    bad = await _put(store, b"bad!")
    store.blob_path(bad).write_bytes(b"flipped")
    checked, removed = await verify_all(store)
    assert (checked, removed) == (2, [bad])
    assert store.local_path(good) is not None


@given(st.lists(st.binary(max_size=300), max_size=20))
@settings(max_examples=60)
def test_tee_digest_equals_whole_digest(chunks: list[bytes]) -> None:
    hasher = MultiHasher(["sha512", "md5", "sha1", "blake2b_256"])
    for chunk in chunks:
        hasher.update(chunk)
    whole = b"".join(chunks)
    got = hasher.digests()
    assert got["sha256"].hex == hashlib.sha256(whole).hexdigest()
    assert got["sha512"].hex == hashlib.sha512(whole).hexdigest()
    assert got["blake2b_256"].hex == hashlib.blake2b(whole, digest_size=32).hexdigest()
    assert hasher.size == len(whole)


def test_sri_parsing() -> None:
    sri = "sha512-" + "A" * 86 + "=="
    assert Digest.from_sri(sri).algorithm == "sha512"
    with pytest.raises(DigestError):
        Digest.from_sri("md5-abc")
    with pytest.raises(DigestError):
        Digest.parse("sha256", "xyz")
