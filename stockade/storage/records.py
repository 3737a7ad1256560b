"""The record store seam: small named records that replicas must agree on.

Owns the interface only. A record is a JSON object stored under a string key
in one namespace (``artifacts``: which blob a file is; ``firstseen``: when each
version was first seen). Where several replicas share storage, two of them
may write one key at once: ``put_if_absent`` and ``update`` make the first
writer win and hand the loser what won, so every replica ends up with the same
record. ``refs.RefStore`` is the local-disk implementation, ``s3records`` the
bucket one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

Record = dict[str, Any]

# Given the stored record (None when there is none), the record to store.
Merge = Callable[[Record | None], Record]


class RecordStore(Protocol):
    """Records keyed by strings, in one namespace."""

    async def get(self, key: str) -> Record | None:
        """The record stored under ``key``, or None."""

    async def put(self, key: str, doc: Record) -> None:
        """Store ``doc`` under ``key``, replacing what was there.

        Raises:
            StorageError: the record could not be written.
        """

    async def put_if_absent(self, key: str, doc: Record) -> Record:
        """Store ``doc`` unless a record exists; the record stored either way.

        Raises:
            StorageError: the record could not be written or read back.
        """

    async def update(self, key: str, merge: Merge) -> Record:
        """Replace the record with ``merge(current)``, retried when another writer
        changed it meanwhile; the record stored. ``merge`` must be pure.

        Raises:
            StorageError: the record could not be written.
        """

    def iter_records(self) -> AsyncIterator[Record]:
        """Every record of the namespace."""

    async def delete(self, key: str) -> None:
        """Remove a record; nothing when there is none."""
