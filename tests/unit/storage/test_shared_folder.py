"""Several worker processes opening one filesystem store: a store opening (a worker
starting) spares the others' fills, and a blob another one stored is found."""

from __future__ import annotations

import hashlib
from pathlib import Path

from stockade.storage.digest import Digest
from stockade.storage.filesystem import FilesystemBlobStore


async def _opened(root: Path) -> FilesystemBlobStore:
    store = FilesystemBlobStore(root)
    await store.open()
    return store


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
