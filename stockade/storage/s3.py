"""The object storage blob store: blobs in an S3-compatible bucket.

Owns blobs under ``<prefix>blobs/sha256/<ab>/<hex>``. A writer spools to a
local file under the storage path (which readers may tail) while hashing;
commit checks the digests first, then uploads with ``If-None-Match: *``, so a
blob is visible only once whole and verified, and of two replicas committing
the same blob the second finds it there and succeeds. Committed and read blobs
are kept in a local hot cache (``hotcache``) so warm requests use sendfile.
The bucket's client and errors are ``s3bucket``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiofiles
import aiofiles.os

from stockade.storage.digest import MultiHasher
from stockade.storage.errors import (
    BlobNotFoundError,
)
from stockade.storage.hotcache import HotCache
from stockade.storage.protocol import BlobInfo
from stockade.storage.s3bucket import READ_CHUNK, S3Bucket
from stockade.storage.spool import SpoolWriter, can_spool, clear_spool

logger = logging.getLogger(__name__)

_BLOBS = "blobs/sha256/"


def _valid(sha256: str) -> bool:
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


def _check(sha256: str) -> str:
    if not _valid(sha256):
        raise BlobNotFoundError(f"not a sha256 digest: {sha256!r}")
    return sha256


class S3BlobWriter(SpoolWriter):
    """Spools one blob to a local file while hashing it; commit uploads it."""

    _disk = "spool"

    def __init__(self, store: S3BlobStore, path: Path, algorithms: Iterable[str],
                 max_bytes: int | None) -> None:
        super().__init__(path, algorithms, max_bytes)
        self._store_of = store

    async def _store(self, info: BlobInfo) -> None:
        await self._store_of._upload(info, self._path)


class S3BlobStore:
    """Content-addressed blobs in a bucket, with a local hot cache."""

    def __init__(self, bucket: S3Bucket, root: Path, *,
                 cache_max_bytes: int | None = None) -> None:
        self.bucket = bucket
        self.root = root
        self._tmp = root / "tmp"
        self._hot = HotCache(root, cache_max_bytes)
        # sha256 -> size of the blobs this replica knows are in the bucket: listed
        # at open, then kept by its own commits and deletes (for total_bytes).
        self._sizes: dict[str, int] = {}

    @property
    def total_bytes(self) -> int:
        """Bytes of blobs in the bucket, as this replica knows them."""
        return sum(self._sizes.values())

    async def open(self) -> None:
        """Open the client, drop spool files a crash left, index the local copies
        and list the bucket's blobs.

        Raises:
            StorageError: the bucket cannot be listed.
        """
        await self.bucket.open()
        await asyncio.to_thread(self._open_local)
        async for info in self.iter_blobs():
            self._sizes[info.sha256] = info.size

    def _open_local(self) -> None:
        clear_spool(self._tmp)  # spares the files other worker processes are filling
        self._hot.load()

    async def close(self) -> None:
        """Close the bucket's client."""
        await self.bucket.close()

    def _key(self, sha256: str) -> str:
        return self.bucket.key(f"{_BLOBS}{sha256[:2]}/{sha256}")

    async def open_writer(
        self, *, algorithms: Iterable[str] = (), max_bytes: int | None = None
    ) -> S3BlobWriter:
        writer = S3BlobWriter(self, self._spool(), algorithms, max_bytes)
        await writer._open()
        return writer

    def _spool(self) -> Path:
        return self._tmp / f"{uuid.uuid4().hex}.part"

    async def _upload(self, info: BlobInfo, spool: Path) -> None:
        key = self._key(info.sha256)
        # Another replica may have stored it already: then nothing is sent.
        if await self.bucket.head(key) is None:
            won = await self.bucket.upload_new(key, spool, info.size)
            if not won:
                logger.debug("blob %s was stored by another writer first", info.sha256)
        self._sizes[info.sha256] = info.size
        await self._keep(spool, info.sha256, info.size)

    async def stat(self, sha256: str) -> BlobInfo | None:
        if not _valid(sha256):
            return None
        hot = self._hot.get(sha256)
        if hot is not None:
            return BlobInfo(sha256, hot[1])
        size = await self.bucket.head(self._key(sha256))
        if size is None:
            self._sizes.pop(sha256, None)
            return None
        self._sizes[sha256] = size
        return BlobInfo(sha256, size)

    def local_path(self, sha256: str) -> Path | None:
        hot = self._hot.get(sha256)
        return None if hot is None else hot[0]

    async def read(self, sha256: str, start: int = 0) -> AsyncIterator[bytes]:
        hot = self._hot.get(_check(sha256))
        if hot is not None:
            try:
                handle = await aiofiles.open(hot[0], "rb")
            except FileNotFoundError:
                self._hot.drop(sha256)
            else:
                try:
                    await handle.seek(start)
                    while chunk := await handle.read(READ_CHUNK):
                        yield chunk
                finally:
                    await handle.close()
                return
        stream = await self.bucket.stream(self._key(sha256), start)
        if stream is None:
            self._sizes.pop(sha256, None)
            raise BlobNotFoundError(f"blob {sha256} is not stored")
        _, chunks = stream
        if start:
            async for chunk in chunks:
                yield chunk
            return
        async for chunk in self._read_through(sha256, chunks):
            yield chunk

    async def _read_through(
        self, sha256: str, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """Yield a whole blob from the bucket, keeping a local copy if it verifies.

        The copy is a side effect: failing to write it never fails the read.
        """
        spool = self._spool()
        hasher = MultiHasher()
        out = None
        try:
            out = await self._tee_open(spool)
            async for chunk in chunks:
                hasher.update(chunk)
                if out is not None and not await self._tee_write(out, chunk, sha256):
                    await out.close()
                    out = None
                yield chunk
            if out is None:
                return
            await out.close()
            out = None
            if hasher.digests()["sha256"].hex != sha256:
                logger.warning("blob %s in the bucket does not hash to its name", sha256)
                return
            await self._keep(spool, sha256, hasher.size)
        finally:
            if out is not None:
                await out.close()
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(spool)

    @staticmethod
    async def _tee_open(spool: Path) -> aiofiles.threadpool.binary.AsyncBufferedIOBase | None:
        try:
            return await aiofiles.open(spool, "xb")
        except OSError as exc:
            logger.warning("cannot spool a local copy: %s", exc)
            return None

    @staticmethod
    async def _tee_write(
        out: aiofiles.threadpool.binary.AsyncBufferedIOBase, chunk: bytes, sha256: str
    ) -> bool:
        try:
            await out.write(chunk)
        except OSError as exc:
            logger.warning("cannot keep a local copy of blob %s: %s", sha256, exc)
            return False
        return True

    async def _keep(self, spool: Path, sha256: str, size: int) -> None:
        try:
            await asyncio.to_thread(self._hot.install, spool, sha256, size)
        except OSError as exc:  # the blob is safe in the bucket; only the copy is lost
            logger.warning("cannot keep a local copy of blob %s: %s", sha256, exc)
            return
        self._hot.installed(sha256, size)
        await self._hot.reconcile()  # the other workers' copies, now and then

    async def delete(self, sha256: str) -> bool:
        self._hot.drop(_check(sha256))
        self._sizes.pop(sha256, None)
        key = self._key(sha256)
        if await self.bucket.head(key) is None:
            return False
        await self.bucket.delete(key)
        return True

    async def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        async for key, size in self.bucket.list(self.bucket.key(_BLOBS)):
            sha256 = key.rsplit("/", 1)[-1]
            if len(sha256) == 64:
                yield BlobInfo(sha256, size)

    async def writable(self) -> bool:
        """True when a spool file can be created and the bucket answers."""
        if not await asyncio.to_thread(can_spool, self._tmp):
            return False
        return await self.bucket.reachable()

