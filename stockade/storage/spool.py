"""The half of a blob writer every backend shares: the local spool.

Owns writing a new blob's bytes to a local file while hashing them (so
concurrent readers can tail it), the byte limit, checking the expected digests
and dropping the spool. A backend subclass says only how a verified spool
becomes a stored blob (``_store``): a rename on the filesystem, an upload to a
bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import aiofiles
import aiofiles.os

from stockade.storage.digest import Digest, MultiHasher
from stockade.storage.errors import (
    BlobTooLargeError,
    DigestMismatchError,
    StorageError,
    StorageFullError,
)
from stockade.storage.protocol import BlobInfo


def can_spool(folder: Path) -> bool:
    """True when a file can be created in the spool ``folder`` now (blocking)."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def full_or_failed(exc: OSError, disk: str, doing: str) -> StorageError:
    """The storage error for an OS error while ``doing`` something on ``disk``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"the {disk} disk is full; nothing was stored")
    return StorageError(f"cannot {doing} blob: {exc.strerror}")


def _create_locked(path: Path) -> int:
    """Create a spool file and lock it for as long as it is open, so clear_spool in
    another worker process leaves it; under a shared lock on the folder, so no
    cleaner sees it between the two."""
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_SH)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    finally:
        os.close(folder)  # releases the shared lock


def clear_spool(folder: Path) -> None:
    """Remove what a crash left in the spool ``folder``: every file no open writer
    holds (a writer locks its file, so one a worker process is filling stays)."""
    folder.mkdir(parents=True, exist_ok=True)
    guard = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # no writer is between creating and locking
        for path in folder.iterdir():
            _clear(path)
    finally:
        os.close(guard)


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # being written
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class SpoolWriter:
    """Spools one blob to a local file while hashing it; ``commit`` stores it."""

    _disk = "storage"  # which disk the spool is on, as errors name it

    def __init__(self, path: Path, algorithms: Iterable[str], max_bytes: int | None) -> None:
        self._path = path
        self._hasher = MultiHasher(algorithms)
        self._max_bytes = max_bytes
        self._file: aiofiles.threadpool.binary.AsyncFileIO | None = None
        self._done = False

    @property
    def spool_path(self) -> Path:
        return self._path

    @property
    def size(self) -> int:
        return self._hasher.size

    async def _open(self) -> None:
        fd = await asyncio.to_thread(_create_locked, self._path)
        self._file = await aiofiles.open(fd, "wb", buffering=0)

    async def write(self, chunk: bytes) -> None:
        if self._done or self._file is None:
            raise StorageError("write to a closed blob writer")
        if self._max_bytes is not None and self._hasher.size + len(chunk) > self._max_bytes:
            await self.abort()
            raise BlobTooLargeError(f"artifact exceeds the limit of {self._max_bytes} bytes")
        try:
            await self._file.write(chunk)
        except OSError as exc:
            await self.abort()
            raise full_or_failed(exc, self._disk, "write") from exc
        self._hasher.update(chunk)

    async def commit(self, expected: Iterable[Digest]) -> BlobInfo:
        """Verify against every expected digest, then store; on any failure the spool
        is dropped and nothing is stored.

        Raises:
            DigestMismatchError: a digest differs.
            StorageError: the blob could not be stored.
        """
        if self._done or self._file is None:
            raise StorageError("commit of a closed blob writer")
        bad = self._hasher.mismatches(expected)
        if bad:
            await self.abort()
            want, got = bad[0]
            raise DigestMismatchError(str(want), str(got))
        digests = {alg: d.hex for alg, d in self._hasher.digests().items()}
        info = BlobInfo(digests["sha256"], self._hasher.size, digests)
        try:
            await self._store(info)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        return info

    async def _store(self, info: BlobInfo) -> None:
        """Make the verified spool the stored blob ``info`` (the backend's part)."""
        raise NotImplementedError

    async def abort(self) -> None:
        if self._file is not None and not self._file.closed:
            await self._file.close()
        if not self._done:
            self._done = True
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(self._path)

    async def close(self) -> None:
        """Close the file handle after commit."""
        if self._file is not None and not self._file.closed:
            await self._file.close()
