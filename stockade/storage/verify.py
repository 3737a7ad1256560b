"""Re-hashing stored blobs: on read, on a schedule, and for ``stockade cache verify``.

Owns checking that a blob's bytes still hash to its name, through the
``BlobStore`` protocol (and a backend's local file where it has one), and
removing those that do not. Hashing never runs on the event loop.

On read (``ReadVerifier``), a blob of at most ``max_bytes`` is hashed once and
then trusted while its file is the same file unchanged (size, mtime, ctime,
inode and device: ctime moves on any write and cannot be set back) and for at
most ``trust_s``; larger blobs are only checked to still be there. The
scheduled re-hash of the larger ones lives in ``rehash``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

from cachetools import LRUCache

from stockade.storage.digest import MultiHasher
from stockade.storage.errors import BlobNotFoundError
from stockade.storage.protocol import BlobInfo, BlobStore

logger = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024  # bytes read per hashing step
TRUSTED_MAX = 200_000  # blobs whose last hash is remembered, by default
TRUSTED_ENTRY_BYTES = 500  # what one remembered hash holds (its key, mark and time)


# What identifies a file's content without reading it: any write changes one of them.
FileMark = tuple[int, int, int, int, int]
# sha256 -> (the file's mark when it hashed right, when)
Trusted = MutableMapping[str, tuple[FileMark, float]]


class BlobState(enum.Enum):
    """What checking a stored blob found."""

    INTACT = "intact"
    CHANGED = "changed"  # its bytes no longer hash to its name
    GONE = "gone"  # it is no longer stored


def _mark(st: os.stat_result) -> FileMark:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def file_mark(path: Path | bytes) -> FileMark | None:
    """The mark of the file at ``path``, or None when it is gone: one ``stat`` of a
    cached inode, about a microsecond, cheaper on the event loop than a thread hop."""
    try:
        return _mark(os.stat(path))
    except OSError:
        return None


def read_marked(path: Path, mark: FileMark) -> bytes | None:
    """The whole file at ``path`` when it is the file of ``mark``, unchanged before
    and after the read (on the open descriptor: a file replaced meanwhile is not
    read); None otherwise, or when it is gone (blocking: run it in a thread).
    """
    try:
        with path.open("rb") as handle:
            if _mark(os.fstat(handle.fileno())) != mark:
                return None
            body = handle.read()
            if _mark(os.fstat(handle.fileno())) != mark:
                return None
    except OSError:
        return None
    return body


def hash_file(path: Path) -> str:
    """The sha256 of a file (blocking: run it in a thread).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, sha256: str, hash_up_to: int,
                trusted: FileMark | None) -> tuple[BlobState, FileMark | None, bool]:
    """(state, the file's mark, whether it was hashed): blocking, run in a thread."""
    try:
        before = _mark(os.stat(path))
        if before[0] > hash_up_to or before == trusted:
            return BlobState.INTACT, before, False
        actual = hash_file(path)
        after = _mark(os.stat(path))
    except FileNotFoundError:
        return BlobState.GONE, None, False
    if actual != sha256:
        return BlobState.CHANGED, None, True
    # Written while it was read: intact now, but not a mark to trust.
    return BlobState.INTACT, after if after == before else None, True


async def blob_intact(store: BlobStore, sha256: str) -> bool:
    """True when the stored bytes of ``sha256`` hash to it; False when they do not,
    or the blob is gone. Each chunk is hashed off the event loop."""
    hasher = MultiHasher()
    try:
        async for chunk in store.read(sha256):
            await asyncio.to_thread(hasher.update, chunk)
    except BlobNotFoundError:
        return False
    return hasher.digests()["sha256"].hex == sha256


class ReadVerifier:
    """Checks a blob before it is served, hashing it only when it may have changed."""

    def __init__(self, store: BlobStore, *, max_bytes: int, trust_s: float,
                 trusted: Trusted | None = None,
                 on_hashed: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._trust_s = trust_s
        self._on_hashed = on_hashed
        self._clock = clock
        # the hashes remembered: a caller's bounded map (a process's memory budget
        # weighs it with its other caches), or at most TRUSTED_MAX of them
        self._trusted: Trusted = LRUCache(TRUSTED_MAX) if trusted is None else trusted

    async def read_trusted(self, sha256: str, path: Path) -> bytes | None:
        """The bytes of the file at ``path`` when it is the very file last hashed to
        ``sha256``, unchanged, within ``trust_s`` of that hash: read in one thread hop,
        not hashed. None when it is not (hash it, then), or changed meanwhile."""
        entry = self._trusted.get(sha256)
        if entry is None or self._clock() - entry[1] >= self._trust_s:
            return None
        if file_mark(path) != entry[0]:  # changed: no thread hop for nothing
            return None
        return await asyncio.to_thread(read_marked, path, entry[0])

    def hashed(self, sha256: str, mark: FileMark) -> None:
        """Remember that the file of mark ``mark`` hashed to ``sha256`` just now (read
        and hashed elsewhere, as ``hotblobs`` does), the file unchanged meanwhile."""
        if self._trust_s > 0:
            self._trusted[sha256] = (mark, self._clock())

    async def check(self, info: BlobInfo) -> BlobState:
        """Whether the stored blob ``info`` may be served (nothing is removed here)."""
        path = self._store.local_path(info.sha256)
        if path is None:  # no local file (object storage): read it through the store
            return await self._check_streamed(info)
        entry = self._trusted.get(info.sha256)
        trusted = None
        if entry is not None and self._clock() - entry[1] < self._trust_s:
            trusted = entry[0]
        state, mark, hashed = await asyncio.to_thread(
            _check_file, path, info.sha256, self._max_bytes, trusted)
        if hashed:
            self._hashed(state is BlobState.INTACT)
            if mark is not None and self._trust_s > 0:
                self._trusted[info.sha256] = (mark, self._clock())
        if state is not BlobState.INTACT:
            self._trusted.pop(info.sha256, None)
        if state is BlobState.GONE:
            # A local copy (an object store's hot cache) may go while the blob stays.
            return await self._check_streamed(info)
        return state

    async def _check_streamed(self, info: BlobInfo) -> BlobState:
        if info.size <= self._max_bytes:
            intact = await blob_intact(self._store, info.sha256)
            if intact or await self._store.stat(info.sha256) is not None:
                self._hashed(intact)
                return BlobState.INTACT if intact else BlobState.CHANGED
            return BlobState.GONE
        try:
            async for _ in self._store.read(info.sha256, max(info.size - 1, 0)):
                pass  # one byte: reading to the end closes what the store opened
        except BlobNotFoundError:
            return BlobState.GONE
        return BlobState.INTACT

    def _hashed(self, intact: bool) -> None:
        if self._on_hashed is not None:
            self._on_hashed(intact)


async def verify_all(store: BlobStore, *, remove: bool = True) -> tuple[int, list[str]]:
    """Re-hash every blob; return those whose bytes do not match, removed unless
    ``remove`` is False (storage that cannot be written: they are only reported).

    Returns:
        (number checked, digests of the blobs that failed)
    """
    checked, failed = 0, []
    blobs = [info.sha256 async for info in store.iter_blobs()]
    for sha256 in blobs:
        checked += 1
        if not await blob_intact(store, sha256):
            if remove:
                logger.warning("blob %s failed verification and was removed", sha256)
                await store.delete(sha256)
            failed.append(sha256)
    return checked, failed
