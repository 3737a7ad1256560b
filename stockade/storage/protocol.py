"""The blob store seam: what the proxy needs from bytes at rest.

Owns the interface only. Blobs are named by their sha256; a writer spools to a
local file (which concurrent readers may tail while it grows), hashes, and
commits only after the expected digests match. Backends live beside this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from stockade.storage.digest import Digest


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its sha256, size and any other digests computed on the way in."""

    sha256: str
    size: int
    digests: dict[str, str] = field(default_factory=dict)


class BlobWriter(Protocol):
    """One blob being written. Use it once: ``write``* then ``commit`` or ``abort``."""

    @property
    def spool_path(self) -> Path:
        """The local file holding the bytes written so far."""

    @property
    def size(self) -> int:
        """Bytes written so far."""

    async def write(self, chunk: bytes) -> None:
        """Append one chunk.

        Raises:
            BlobTooLargeError: past the writer's byte limit.
            StorageFullError: the disk is full.
        """

    async def commit(self, expected: Iterable[Digest]) -> BlobInfo:
        """Verify against every expected digest and store atomically.

        Raises:
            DigestMismatchError: a digest differs; nothing is stored.
        """

    async def abort(self) -> None:
        """Drop everything written; safe to call more than once."""

    async def close(self) -> None:
        """Release the file handle after a commit."""


class BlobStore(Protocol):
    """Content-addressed storage of artifact bytes.

    Every read, stat, hash and eviction of a blob goes through these methods;
    nothing outside a backend opens a blob by path (``local_path`` hands out a
    file only for zero-copy serving). ``tests/unit/storage/test_conformance.py``
    holds every backend to the same behaviour.
    """

    @property
    def total_bytes(self) -> int:
        """Bytes of blobs stored."""

    async def open(self) -> None:
        """Make the store ready (create its layout, drop spool files a crash left)."""

    async def close(self) -> None:
        """Release what ``open`` took (connections); the blobs stay."""

    async def open_writer(
        self, *, algorithms: Iterable[str] = (), max_bytes: int | None = None
    ) -> BlobWriter:
        """Start a new blob, hashing ``algorithms`` besides sha256."""

    async def stat(self, sha256: str) -> BlobInfo | None:
        """The blob's info, or None when it is not stored. Marks it as used."""

    def local_path(self, sha256: str) -> Path | None:
        """A local file with the blob's bytes, for zero-copy serving, if any."""

    def read(self, sha256: str, start: int = 0) -> AsyncIterator[bytes]:
        """Stream the blob's bytes from ``start``.

        Raises:
            BlobNotFoundError: the blob is not stored.
        """

    async def delete(self, sha256: str) -> bool:
        """Remove a blob; False when it was not there."""

    def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        """Every stored blob (digests other than sha256 are not known here)."""

    async def writable(self) -> bool:
        """True when a new blob could be written now."""
