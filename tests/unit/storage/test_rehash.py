"""The scheduled re-hash: large blobs only, one at a time, at a bounded rate; a blob
that changed on disk is removed."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from stockade.storage.digest import Digest
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.rehash import Rehasher
from stockade.storage.verify import BlobState

MiB = 1024 * 1024


async def _put(store: FilesystemBlobStore, data: bytes) -> str:
    writer = await store.open_writer()
    await writer.write(data)
    info = await writer.commit([Digest("sha256", hashlib.sha256(data).hexdigest())])
    await writer.close()
    return info.sha256


class _Time:
    """A clock that moves only when the rehasher sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # as a real sleep, let other tasks run


async def test_changed_large_blobs_are_removed_small_ones_left_alone(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    await store.open()
    small = await _put(store, b"s" * 100)
    intact = await _put(store, b"a" * (2 * MiB))
    changed = await _put(store, b"b" * (2 * MiB))
    store.blob_path(changed).write_bytes(b"c" * (2 * MiB))
    store.blob_path(small).write_bytes(b"changed, but hashed on read instead")
    seen: list[BlobState] = []
    time = _Time()
    rehasher = Rehasher(store, min_bytes=MiB, interval_s=3600, max_bytes_per_s=MiB,
                        on_checked=seen.append, sleep=time.sleep, clock=time.clock)
    done = await rehasher.run_once()
    assert done.checked == 2
    assert done.removed == (changed,)
    assert sorted(s.value for s in seen) == ["changed", "intact"]
    assert await store.stat(changed) is None
    assert not store.blob_path(changed).exists()
    assert await store.stat(intact) is not None
    assert await store.stat(small) is not None  # not this task's to check
    # 4 MiB at 1 MiB/s: the reads were spread over four seconds.
    assert 3.9 <= time.now <= 4.1


async def test_the_schedule_runs_in_the_background_and_stops(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    await store.open()
    changed = await _put(store, b"b" * 4096)
    store.blob_path(changed).write_bytes(b"c" * 4096)
    time = _Time()
    rounds: list[BlobState] = []
    checked = asyncio.Event()

    def on_checked(state: BlobState) -> None:
        rounds.append(state)
        checked.set()

    rehasher = Rehasher(store, min_bytes=0, interval_s=60, max_bytes_per_s=MiB,
                        on_checked=on_checked, sleep=time.sleep, clock=time.clock)
    rehasher.start()
    await asyncio.wait_for(checked.wait(), 60)
    await rehasher.close()
    assert await store.stat(changed) is None
    assert rounds == [BlobState.CHANGED]
    assert time.slept[0] == 60  # the first round waits, then each interval


async def test_zero_interval_never_starts(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    await store.open()
    rehasher = Rehasher(store, min_bytes=0, interval_s=0, max_bytes_per_s=MiB)
    rehasher.start()
    assert rehasher._task is None
    await rehasher.close()
