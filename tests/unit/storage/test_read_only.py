"""Stores over read-only storage: what is there is read, nothing is written, removed
or touched, and a new blob is refused with a storage error naming why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stockade.storage.digest import Digest
from stockade.storage.errors import ReadOnlyStorageError
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.readonly import read_only_reason
from stockade.storage.refs import RefStore

DATA = b"stored before"


def _tree(path: Path) -> dict[str, float]:
    return {str(p.relative_to(path)): p.stat().st_mtime for p in path.rglob("*")}


async def _filled(root: Path) -> str:
    store = FilesystemBlobStore(root)
    await store.open()
    writer = await store.open_writer()
    await writer.write(DATA)
    info = await writer.commit([Digest("sha256", hashlib.sha256(DATA).hexdigest())])
    await writer.close()
    (root / "tmp" / "left-by-a-crash.part").write_bytes(b"x")
    await RefStore(root, "metadata").put("k", {"v": 1}, b"body")
    return info.sha256


async def test_a_read_only_store_serves_and_changes_nothing(tmp_path: Path) -> None:
    sha256 = await _filled(tmp_path)
    before = _tree(tmp_path)
    store = FilesystemBlobStore(tmp_path, read_only="Read-only file system")
    await store.open()
    assert (await store.stat(sha256)) is not None
    assert b"".join([c async for c in store.read(sha256)]) == DATA
    assert not await store.writable()
    with pytest.raises(ReadOnlyStorageError, match=r"read-only \(Read-only file system\)"):
        await store.open_writer()
    assert await store.delete(sha256) is False
    assert await store.stat(sha256) is None  # no longer served by this process
    assert _tree(tmp_path) == before  # the crash's spool file too: nothing was removed


async def test_read_only_records_are_read_and_never_written(tmp_path: Path) -> None:
    await _filled(tmp_path)
    before = _tree(tmp_path)
    refs = RefStore(tmp_path, "metadata", read_only=True)
    assert await refs.get("k") == {"v": 1, "key": "k"}
    assert await refs.get_body("k") == b"body"
    await refs.put("k", {"v": 2}, b"other")
    await refs.put("new", {"v": 3})
    assert await refs.put_if_absent("k", {"v": 4}) == {"v": 1, "key": "k"}
    assert await refs.put_if_absent("new", {"v": 5}) == {"v": 5, "key": "new"}
    merged = await refs.update("k", lambda cur: {"v": (cur or {}).get("v", 0) + 10})
    assert merged == {"v": 11, "key": "k"}
    await refs.delete("k")
    assert await refs.get("k") == {"v": 1, "key": "k"}
    assert _tree(tmp_path) == before


def test_only_existing_storage_can_be_read_only(tmp_path: Path) -> None:
    assert read_only_reason(tmp_path / "missing") is None  # created (or refused) at start
    assert read_only_reason(tmp_path) is None  # writable
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
