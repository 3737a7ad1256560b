"""Several worker processes opening one filesystem store: a store opening (a worker
starting) spares the others' fills, a blob another one stored is found, and the size
limit holds for the folder."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import pytest

from stockade.storage import filesystem
from stockade.storage.digest import Digest
from stockade.storage.filesystem import FilesystemBlobStore


async def _opened(root: Path) -> FilesystemBlobStore:
    store = FilesystemBlobStore(root)
    await store.open()
    return store


async def _commit(store: FilesystemBlobStore, data: bytes) -> str:
    writer = await store.open_writer()
    await writer.write(data)
    info = await writer.commit([Digest("sha256", hashlib.sha256(data).hexdigest())])
    await writer.close()
    return info.sha256


async def test_a_store_opening_spares_a_fill_in_progress(tmp_path: Path) -> None:
    first = await _opened(tmp_path)
    writer = await first.open_writer()
    await writer.write(b"half of it")
    await _opened(tmp_path)  # another worker starts meanwhile
    await writer.write(b", and the rest")
    data = b"half of it, and the rest"
    info = await writer.commit([Digest("sha256", hashlib.sha256(data).hexdigest())])
    await writer.close()
    assert info.size == len(data)


async def test_a_blob_stored_by_another_store_is_found(tmp_path: Path) -> None:
    first, second = await _opened(tmp_path), await _opened(tmp_path)
    writer = await first.open_writer()
    await writer.write(b"payload")
    info = await writer.commit([])
    await writer.close()
    found = await second.stat(info.sha256)
    assert found is not None and found.size == 7
    assert second.local_path(info.sha256) is not None
    assert second.total_bytes == 7


async def test_a_spool_left_by_a_dead_writer_is_removed(tmp_path: Path) -> None:
    store = await _opened(tmp_path)
    writer = await store.open_writer()
    await writer.write(b"partial")
    assert writer._file is not None
    await writer._file.close()  # the process died: its lock went with it
    await _opened(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


async def test_the_size_limit_holds_for_the_folder_two_stores_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes' stores on one folder, each with the limit: each evicts
    from its reading of the whole folder, so the folder stays under the limit (each
    used to count only its own blobs: up to twice the limit on disk)."""
    monkeypatch.setattr(filesystem, "RESCAN_S", 0.0)
    monkeypatch.setattr(filesystem, "RESCAN_SHARE", float("inf"))  # read at every commit
    limit = 10 * 1000
    first, second = (FilesystemBlobStore(tmp_path, max_bytes=limit) for _ in range(2))
    for store in (first, second):
        await store.open()
    kept = []
    for n in range(30):
        store = (first, second)[n % 2]
        kept.append(await _commit(store, bytes([n]) * 1000))
        on_disk = sum(p.stat().st_size for p in (tmp_path / "blobs").rglob("*") if p.is_file())
        assert on_disk <= limit, (n, on_disk)
    # the newest blobs are the ones left, whoever stored them
    assert {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()} == set(kept[-10:])
    # and each store's count is the folder's
    assert first.total_bytes <= limit and second.total_bytes <= limit


async def test_a_folder_slow_to_read_is_read_less_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the folder takes at most RESCAN_SHARE of the time between readings."""
    monkeypatch.setattr(filesystem, "RESCAN_S", 0.0)
    monkeypatch.setattr(filesystem, "RESCAN_SHARE", 0.01)
    store = FilesystemBlobStore(tmp_path, max_bytes=10_000)
    await store.open()
    reads = 0
    scan = store._scan

    def slow() -> dict[str, list[float]]:
        nonlocal reads
        reads += 1
        time.sleep(0.2)
        return scan()

    monkeypatch.setattr(store, "_scan", slow)
    for n in range(5):  # in well under the 20 s the first reading earns
        await _commit(store, bytes([n]) * 100)
    assert reads == 1


async def test_what_changes_while_the_folder_is_read_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is read in a thread while the loop goes on: a blob committed or
    removed meanwhile is taken as it is now, not as the reading saw it."""
    monkeypatch.setattr(filesystem, "RESCAN_S", 0.0)
    monkeypatch.setattr(filesystem, "RESCAN_SHARE", float("inf"))  # read at every commit
    store = FilesystemBlobStore(tmp_path, max_bytes=10_000)
    await store.open()
    gone = await _commit(store, b"g" * 100)
    reading, go_on = threading.Event(), threading.Event()
    reconcile = store._reconcile

    def held(*args: object) -> tuple[dict[str, list[float]], int, list[str]]:
        result = reconcile(*args)  # type: ignore[arg-type]
        reading.set()
        assert go_on.wait(30)
        return result

    monkeypatch.setattr(store, "_reconcile", held)
    first = asyncio.create_task(_commit(store, b"a" * 100))  # its commit starts a reading
    assert await asyncio.to_thread(reading.wait, 30)
    monkeypatch.setattr(store, "_reconcile", reconcile)
    late = await _commit(store, b"late" * 25)  # no second reading while one runs
    assert await store.delete(gone)
    go_on.set()
    await first
    assert store.local_path(late) is not None and store.local_path(gone) is None
    assert store.total_bytes == 200
