"""The scheduled re-hash of blobs too large to hash on every read.

Owns one background task that, every ``interval_s``, re-hashes each stored
blob larger than ``min_bytes`` (what ``ReadVerifier`` does not hash) that has
a local file (all of them on the filesystem backend, the hot copies of object
storage), one blob at a time, reading through the ``BlobStore`` protocol at most
``max_bytes_per_s`` and hashing off the event loop. A blob whose bytes no
longer hash to its name is removed, so the next request for it fetches it
again. Its artifact record stays: it says what was admitted under that name,
which the ``republished`` rule compares with what the upstream publishes
later, and a record whose blob is gone already counts as not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stockade.storage.digest import MultiHasher
from stockade.storage.errors import BlobNotFoundError
from stockade.storage.protocol import BlobInfo, BlobStore
from stockade.storage.verify import BlobState

logger = logging.getLogger(__name__)

FIRST_ROUND_MAX_S = 600.0  # the first round starts at most this long after start


@dataclass(frozen=True, slots=True)
class RehashRound:
    """What one pass over the store found."""

    checked: int
    bytes_read: int
    removed: tuple[str, ...]


class Rehasher:
    """Re-hashes large blobs on a schedule; removes those that changed."""

    def __init__(
        self, store: BlobStore, *, min_bytes: int, interval_s: float, max_bytes_per_s: int,
        on_checked: Callable[[BlobState], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._min_bytes = min_bytes
        self._interval_s = interval_s
        self._rate = max_bytes_per_s
        self._on_checked = on_checked
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the schedule (nothing when ``interval_s`` is 0)."""
        if self._interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="blob-rehash")

    async def close(self) -> None:
        """Stop the schedule, mid-blob if need be."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        # Not at once: a restart should not begin with a burst of reading.
        await self._sleep(min(self._interval_s, FIRST_ROUND_MAX_S))
        while True:
            try:
                done = await self.run_once()
            except Exception:  # a task's top: log it, try again next round
                logger.exception("the scheduled re-hash of stored blobs failed")
            else:
                logger.info("re-hashed %d stored blobs (%d bytes); %d removed", done.checked,
                            done.bytes_read, len(done.removed))
            await self._sleep(self._interval_s)

    async def run_once(self) -> RehashRound:
        """Re-hash every blob above ``min_bytes`` once, removing those that changed."""
        # Blobs with a local file only: the disk of this host is what can change
        # under us; an object store checks its own bytes, and every replica reading
        # the whole bucket each round would multiply the traffic.
        large = [info async for info in self._store.iter_blobs()
                 if info.size > self._min_bytes
                 and self._store.local_path(info.sha256) is not None]
        checked, read, removed = 0, 0, []
        for info in large:
            state, size = await self.check(info)
            read += size
            if state is BlobState.GONE:
                continue  # evicted or removed meanwhile
            checked += 1
            if state is BlobState.CHANGED:
                logger.warning("stored blob %s no longer matches its digest; removed, it "
                               "is fetched again on its next request", info.sha256)
                await self._store.delete(info.sha256)
                removed.append(info.sha256)
            if self._on_checked is not None:  # told once the blob is dealt with
                self._on_checked(state)
        return RehashRound(checked, read, tuple(removed))

    async def check(self, info: BlobInfo) -> tuple[BlobState, int]:
        """Hash one blob at the configured rate: (what it is, bytes read)."""
        hasher = MultiHasher()
        started = self._clock()
        try:
            async for chunk in self._store.read(info.sha256):
                await asyncio.to_thread(hasher.update, chunk)
                # Ahead of the allowed rate: wait until the bytes read are due.
                ahead = hasher.size / self._rate - (self._clock() - started)
                if ahead > 0:
                    await self._sleep(ahead)
        except BlobNotFoundError:
            return BlobState.GONE, hasher.size
        intact = hasher.digests()["sha256"].hex == info.sha256
        return (BlobState.INTACT if intact else BlobState.CHANGED), hasher.size
