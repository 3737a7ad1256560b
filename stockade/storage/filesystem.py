"""The filesystem blob store.

Owns the on-disk layout under ``<root>/blobs/sha256/<ab>/<hex>``, atomic commit
(spool in ``<root>/tmp``, fsync, ``os.replace``), least-recently-used eviction
past a size limit, and cleaning spool files left by a crash. It does not know
what a blob is for; indexes of names to blobs live in ``refs``.

Worker processes share one folder, each with its own index of it. So that the
size limit holds for the folder and not for each process, a store with a limit
re-reads the folder (sizes, and last use from the modification time, which a
hit refreshes hourly) after a commit at most every ``RESCAN_S`` seconds (longer
where reading it takes more than ``RESCAN_SHARE`` of that), in a thread, and
evicts from that view of every process's blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO

import aiofiles
import aiofiles.os

from stockade.storage.errors import (
    BlobNotFoundError,
    ReadOnlyStorageError,
)
from stockade.storage.protocol import BlobInfo
from stockade.storage.spool import SpoolWriter, can_spool, clear_spool, full_or_failed

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024  # bytes
_TOUCH_EVERY_S = 3600.0  # persist last use at most hourly per blob
RESCAN_S = 30.0  # with a size limit, the folder is re-read at most this often ...
RESCAN_SHARE = 0.05  # ... and reading it takes at most this share of a thread's time


def _open_read(path: Path, start: int) -> tuple[BinaryIO | None, bytes]:
    """The file at ``path`` opened at ``start`` and its first chunk; the file is
    closed already (None) when that chunk ended it."""
    handle = path.open("rb")
    try:
        handle.seek(start)
        chunk = handle.read(READ_CHUNK)
    except BaseException:
        handle.close()
        raise
    if len(chunk) < READ_CHUNK:
        handle.close()
        return None, chunk
    return handle, chunk


class FilesystemBlobWriter(SpoolWriter):
    """Spools one blob to a temp file while hashing it; commit renames it into place."""

    def __init__(
        self, store: FilesystemBlobStore, path: Path, algorithms: Iterable[str],
        max_bytes: int | None,
    ) -> None:
        super().__init__(path, algorithms, max_bytes)
        self._store_of = store

    async def _store(self, info: BlobInfo) -> None:
        try:
            await asyncio.to_thread(self._finish, info.sha256)
        except OSError as exc:
            raise full_or_failed(exc, self._disk, "commit") from exc
        self._store_of._committed(info)
        await self._store_of._bound(info.sha256)

    def _finish(self, sha256: str) -> None:
        assert self._file is not None
        os.fsync(self._file.fileno())
        final = self._store_of.blob_path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, final)
        # A durable rename needs the directory entry on disk too.
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class FilesystemBlobStore:
    """Content-addressed blobs in a directory tree, with LRU eviction.

    ``read_only`` (the reason, e.g. "Read-only file system"): the tree is served
    as it is; nothing is written, removed or touched, and a new blob is refused.
    """

    def __init__(self, root: Path, *, max_bytes: int | None = None,
                 read_only: str | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.read_only = read_only
        self._blobs = root / "blobs" / "sha256"
        self._tmp = root / "tmp"
        # sha256 -> [size, last_used]; loaded by open().
        self._index: dict[str, list[float]] = {}
        self._touched: dict[str, float] = {}
        # read-only storage: blobs found bad that cannot be removed, never served again
        self._withdrawn: set[str] = set()
        self._total = 0
        self._scanned_at = time.monotonic()  # when the folder was last read whole
        self._rescan_s = RESCAN_S  # longer for a folder that takes long to read
        # while the folder is read in a thread: the blobs committed or forgotten here
        # meanwhile, whose entries the reading may not have seen as they are now
        self._changes: set[str] | None = None

    @property
    def total_bytes(self) -> int:
        """Bytes of blobs stored."""
        return self._total

    async def open(self) -> None:
        """Create the layout, drop spool files a crash left, index what is stored."""
        await asyncio.to_thread(self._open_sync)

    async def close(self) -> None:
        """Nothing to release: every file is closed after each use."""

    def _open_sync(self) -> None:
        if self.read_only is None:
            self._prepare_sync()
        self._index = self._scan()
        self._total = int(sum(v[0] for v in self._index.values()))

    def _scan(self) -> dict[str, list[float]]:
        """Every blob in the folder: sha256 -> [size, last use (its mtime)]."""
        found: dict[str, list[float]] = {}
        for path in self._blobs.glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            found[path.name] = [st.st_size, st.st_mtime]
        return found

    def _prepare_sync(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        clear_spool(self._tmp)  # spares the files other worker processes are filling

    def blob_path(self, sha256: str) -> Path:
        """Where a blob lives (whether or not it is stored)."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise BlobNotFoundError(f"not a sha256 digest: {sha256!r}")
        return self._blobs / sha256[:2] / sha256

    async def open_writer(
        self, *, algorithms: Iterable[str] = (), max_bytes: int | None = None
    ) -> FilesystemBlobWriter:
        if self.read_only is not None:
            raise ReadOnlyStorageError(
                f"storage at {self.root} is read-only ({self.read_only}): nothing new "
                "is stored")
        path = self._tmp / f"{uuid.uuid4().hex}.part"
        writer = FilesystemBlobWriter(self, path, algorithms, max_bytes)
        await writer._open()
        return writer

    async def stat(self, sha256: str) -> BlobInfo | None:
        entry = self._index.get(sha256)
        if entry is None:
            # another worker process sharing this folder may have stored it since
            entry = await asyncio.to_thread(self._adopt, sha256)
            if entry is None:
                return None
        now = time.time()
        entry[1] = now
        if self.read_only is None and now - self._touched.get(sha256, 0.0) > _TOUCH_EVERY_S:
            self._touched[sha256] = now
            try:
                await asyncio.to_thread(os.utime, self.blob_path(sha256))
            except FileNotFoundError:
                self._forget(sha256)
                return None
        return BlobInfo(sha256, int(entry[0]))

    def _adopt(self, sha256: str) -> list[float] | None:
        if sha256 in self._withdrawn:  # read-only: found bad, and still on disk
            return None
        try:
            st = self.blob_path(sha256).stat()
        except (FileNotFoundError, BlobNotFoundError):
            return None
        entry = self._index.get(sha256)
        if entry is None:
            entry = self._index[sha256] = [st.st_size, st.st_mtime]
            self._total += st.st_size
        return entry

    def local_path(self, sha256: str) -> Path | None:
        return self.blob_path(sha256) if sha256 in self._index else None

    async def read(self, sha256: str, start: int = 0) -> AsyncIterator[bytes]:
        # Opened and first read in one thread hop, not one per open, seek, read and
        # close: a small blob is read whole in it. Never on the event loop: a slow or
        # network disk would hold every request up.
        try:
            handle, chunk = await asyncio.to_thread(_open_read, self.blob_path(sha256), start)
        except FileNotFoundError as exc:
            self._forget(sha256)
            raise BlobNotFoundError(f"blob {sha256} is not stored") from exc
        try:
            while chunk:
                yield chunk
                if handle is None:
                    return
                chunk = await asyncio.to_thread(handle.read, READ_CHUNK)
        finally:
            if handle is not None:
                handle.close()

    async def delete(self, sha256: str) -> bool:
        self._forget(sha256)
        if self.read_only is not None:
            # Cannot be removed: no longer served by this process, which is what matters.
            self._withdrawn.add(sha256)
            logger.warning("blob %s cannot be removed from read-only storage; it is no "
                           "longer served", sha256)
            return False
        try:
            await aiofiles.os.remove(self.blob_path(sha256))
        except FileNotFoundError:
            return False
        return True

    async def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        for sha256, (size, _) in list(self._index.items()):
            yield BlobInfo(sha256, int(size))

    def _forget(self, sha256: str) -> None:
        entry = self._index.pop(sha256, None)
        if entry is not None:
            self._total -= int(entry[0])
        self._touched.pop(sha256, None)
        if self._changes is not None:
            self._changes.add(sha256)

    def _committed(self, info: BlobInfo) -> None:
        if info.sha256 not in self._index:
            self._total += info.size
        self._index[info.sha256] = [info.size, time.time()]
        self._touched[info.sha256] = time.time()
        if self._changes is not None:
            self._changes.add(info.sha256)

    async def _bound(self, keep: str) -> None:
        """After a commit: past ``max_bytes``, evict the least recently used; once
        ``RESCAN_S`` has passed, first read the folder again (the blobs other
        processes stored and removed). All in a thread, on a copy of the index; the
        loop only takes the result in, with what changed meanwhile."""
        if self.max_bytes is None or self._changes is not None:
            return
        read = time.monotonic() - self._scanned_at >= self._rescan_s
        if not read and self._total <= self.max_bytes:
            return
        mine, changes = dict(self._index), set[str]()
        self._changes = changes
        began = time.monotonic()
        try:
            index, total, vanished = await asyncio.to_thread(
                self._reconcile, mine, time.time(), keep, read)
        except OSError as exc:  # the blob is stored; the bound waits for the next reading
            logger.warning("cannot read the blobs under %s: %s", self._blobs, exc)
            self._scanned_at = time.monotonic()
            return
        finally:
            self._changes = None
        if read:
            self._scanned_at = time.monotonic()
            self._rescan_s = max(RESCAN_S, (self._scanned_at - began) / RESCAN_SHARE)
        for sha256 in changes:  # this process's own word on these is the newer
            old = index.pop(sha256, None)
            if old is not None:
                total -= int(old[0])
            entry = self._index.get(sha256)
            if entry is not None:
                index[sha256] = entry
                total += int(entry[0])
        for sha256 in vanished:
            self._touched.pop(sha256, None)
        self._index, self._total = index, total

    def _reconcile(self, mine: dict[str, list[float]], started: float, keep: str,
                   read: bool) -> tuple[dict[str, list[float]], int, list[str]]:
        """``mine`` (with ``read``: the folder as read now, ``started`` when the
        reading began, with this process's later uses and the blobs it stored since),
        the least recently used evicted past ``max_bytes``: (index, its bytes, the
        blobs ``mine`` had that it has not). Runs in a thread, on ``mine``, a copy."""
        assert self.max_bytes is not None
        if not read:
            index = dict(mine)
        else:
            index = {}
            for sha256, entry in self._scan().items():
                own = mine.get(sha256)
                index[sha256] = [entry[0], max(entry[1], own[1])] if own else entry
            for sha256, entry in mine.items():
                if sha256 not in index and entry[1] >= started:  # too new for the reading
                    index[sha256] = entry
        total = int(sum(entry[0] for entry in index.values()))
        if total > self.max_bytes:
            # Oldest use first; a blob being served stays readable (POSIX unlink).
            for sha256, entry in sorted(index.items(), key=lambda kv: kv[1][1]):
                if total <= self.max_bytes:
                    break
                if sha256 == keep:
                    continue
                logger.info("evicting blob %s to keep the folder under %d bytes", sha256,
                            self.max_bytes)
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(sha256).unlink()
                del index[sha256]
                total -= int(entry[0])
        return index, total, [sha256 for sha256 in mine if sha256 not in index]

    async def writable(self) -> bool:
        """True when a file can be created in the spool directory."""
        if self.read_only is not None:
            return False
        return await asyncio.to_thread(can_spool, self._tmp)

