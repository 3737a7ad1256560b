"""Small stored blobs held in memory once verified, for the warm path.

Owns a bounded, least-recently-used map of blob digest to verified bytes and the
identity of the file they were read from (inode, size, mtime, ctime). A warm
request for a held blob costs one ``stat`` on the event loop, no thread hop, no
read, no hash; a file whose identity changed (rewritten, replaced, removed) is
dropped here and the caller verifies it from storage as before, so a blob changed
on disk is still caught and fetched again.

Each blob read and hashed here (or held from a fill) is told to ``on_verified``
with its file's identity: once dropped from memory, a blob whose file is still
that one is read for the one answer without a hash and not held (the read
verifier trusts it for ``storage.verify_on_read_trust_s``), so a churn of many
different blobs neither grows the heap nor re-hashes them.

Bytes come in only through ``load``, which reads the blob through the
``BlobStore`` protocol and hashes it on the way: the bytes held are the ones that
hashed to the digest. Deciding whether a request may have them is the admission
path's business, made per request before this module is asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stockade.proxy.budget import BudgetedLRU, MemoryBudget, unbounded
from stockade.storage.protocol import BlobStore
from stockade.storage.verify import FileMark, file_mark

logger = logging.getLogger(__name__)

# The file's identity (size, mtime, ctime, inode, device): any write through the
# file system moves ctime, which no one can set back.
Identity = FileMark


def file_identity(path: Path | bytes) -> Identity | None:
    """The identity of the file at ``path``, or None when it is gone (one ``stat``, on
    the loop, where a thread hop would cost tens of microseconds)."""
    return file_mark(path)


@dataclass(frozen=True, slots=True)
class _Held:
    body: bytes
    path: bytes  # the file's path, encoded once: ``stat`` of a ``Path`` encodes it per
    # call (about a fifth of a warm hit's ``stat``)
    identity: Identity


class HotBlobs:
    """Verified bytes of small blobs, at most ``max_bytes`` of them in all."""

    def __init__(self, max_bytes: int, max_blob_bytes: int,
                 budget: MemoryBudget | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_blob_bytes = min(max_blob_bytes, max_bytes)
        # least recently used first, its bytes charged to the process's budget
        self._held: BudgetedLRU[str, _Held] = BudgetedLRU(
            max_bytes, _weight, budget or unbounded(), "blobs")
        self.loads = 0  # blobs read and hashed into memory (tests count them)
        # the read of each blob under way: requests asking at once share it, rather
        # than each reading and hashing the same bytes
        self._loading: dict[str, asyncio.Task[bytes | None]] = {}
        # told of each blob whose bytes hashed right, read from the file of that
        # identity unchanged meanwhile (the read verifier, which then trusts the file)
        self.on_verified: Callable[[str, Identity], None] | None = None

    def takes(self, size: int) -> bool:
        """True when a blob of ``size`` bytes may be held."""
        return 0 < size <= self.max_blob_bytes and self._held.account.takes(size)

    @property
    def used_bytes(self) -> int:
        """The bytes of the blobs held."""
        return int(self._held.currsize)

    def get(self, sha256: str) -> bytes | None:
        """The verified bytes of ``sha256`` when held and its file is still the one
        they were read from; None otherwise (a changed file is dropped)."""
        held = self._held.get(sha256)
        if held is None:
            return None
        if file_identity(held.path) != held.identity:
            logger.info("stored blob %s changed on disk since it was verified; "
                        "verifying it again", sha256)
            self.drop(sha256)
            return None
        return held.body

    async def load(self, store: BlobStore, sha256: str, path: Path) -> bytes | None:
        """Read ``sha256`` through ``store``, hashing it; hold the bytes when they
        match and the file at ``path`` did not change meanwhile. Requests asking
        for one blob at once share one read.

        Returns:
            the bytes, or None when they do not hash to ``sha256``.

        Raises:
            BlobNotFoundError: the blob is no longer stored.
        """
        task = self._loading.get(sha256)
        if task is None:
            task = asyncio.ensure_future(self._load(store, sha256, path))
            self._loading[sha256] = task
            task.add_done_callback(lambda _task: self._loaded(sha256, _task))
        # a request that goes away leaves the read to the others
        return await asyncio.shield(task)

    def _loaded(self, sha256: str, task: asyncio.Task[bytes | None]) -> None:
        if self._loading.get(sha256) is task:
            del self._loading[sha256]
        if not task.cancelled():
            task.exception()  # retrieved: every asker may have gone

    def hold(self, sha256: str, path: Path, body: bytes) -> None:
        """Hold ``body``, bytes just hashed to ``sha256`` (a fill's, verified as they
        were stored), as read from the file at ``path``, stored just now."""
        identity = file_identity(path)
        if identity is None or identity[0] != len(body):
            return
        self._verified(sha256, identity)
        if self.takes(len(body)):
            self._hold(sha256, _Held(body, os.fsencode(path), identity))

    async def _load(self, store: BlobStore, sha256: str, path: Path) -> bytes | None:
        before = file_identity(path)
        hasher = hashlib.sha256()
        parts = []
        async for chunk in store.read(sha256):
            hasher.update(chunk)
            parts.append(chunk)
        if hasher.hexdigest() != sha256:
            self.drop(sha256)
            return None
        body = b"".join(parts)
        self.loads += 1
        if before is not None and before == file_identity(path):
            self._verified(sha256, before)
            if self.takes(len(body)):
                self._hold(sha256, _Held(body, os.fsencode(path), before))
        return body

    def _verified(self, sha256: str, identity: Identity) -> None:
        if self.on_verified is not None:
            self.on_verified(sha256, identity)

    def drop(self, sha256: str) -> None:
        """Forget a blob's bytes."""
        self._held.pop(sha256, None)

    def _hold(self, sha256: str, held: _Held) -> None:
        self._held[sha256] = held  # past the budget, some cache sheds


def _weight(held: _Held) -> int:
    return len(held.body)
