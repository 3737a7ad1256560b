"""Records in the bucket, shared by every replica using it.

Owns ``<prefix>records/<namespace>/<ab>/<sha256 of key>.json``. First writer
wins: ``put_if_absent`` writes with ``If-None-Match: *``, and ``update`` is a
compare-and-swap on the record's ETag (``If-Match``), retried when another
replica changed the record meanwhile, so concurrent writers never lose each
other's work and every replica reads the same record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import AsyncIterator

import orjson

from stockade.storage.errors import StorageError
from stockade.storage.records import Merge, Record
from stockade.storage.s3bucket import S3Bucket

logger = logging.getLogger(__name__)

_ATTEMPTS = 20  # compare-and-swap rounds before giving up on a contended record


class S3RecordStore:
    """Records keyed by strings, in one namespace of a bucket."""

    def __init__(self, bucket: S3Bucket, namespace: str) -> None:
        self._bucket = bucket
        self._prefix = f"records/{namespace}/"

    def _key(self, key: str) -> str:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self._bucket.key(f"{self._prefix}{name[:2]}/{name}.json")

    async def _read(self, key: str) -> tuple[Record | None, str | None]:
        """The record and its ETag; (None, None) when there is none."""
        found = await self._bucket.get(self._key(key))
        if found is None:
            return None, None
        data, etag = found
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("record %r in the bucket is not JSON; treated as absent", key)
            return None, etag
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None, etag
        return doc, etag

    async def get(self, key: str) -> Record | None:
        """The record stored under ``key``, or None.

        Raises:
            StorageError: the bucket could not be read.
        """
        return (await self._read(key))[0]

    async def put(self, key: str, doc: Record) -> None:
        """Store ``doc`` under ``key``, replacing what was there.

        Raises:
            StorageError: the record could not be written.
        """
        await self._bucket.put(self._key(key), orjson.dumps({**doc, "key": key}))

    async def put_if_absent(self, key: str, doc: Record) -> Record:
        """Store ``doc`` unless a record exists; the record stored either way.

        Raises:
            StorageError: the record could not be written or read back.
        """
        doc = {**doc, "key": key}
        if await self._bucket.put(self._key(key), orjson.dumps(doc), if_none_match=True):
            return doc
        return await self.update(key, lambda current: current or doc)

    async def update(self, key: str, merge: Merge) -> Record:
        """Replace the record with ``merge(current)`` if nobody changed it meanwhile,
        else merge again with what they stored.

        Raises:
            StorageError: the record could not be written, or stayed contended.
        """
        for attempt in range(_ATTEMPTS):
            current, etag = await self._read(key)
            doc = {**merge(current), "key": key}
            if doc == current:
                return doc
            data = orjson.dumps(doc)
            if etag is None:
                won = await self._bucket.put(self._key(key), data, if_none_match=True)
            else:
                won = await self._bucket.put(self._key(key), data, if_match=etag)
            if won:
                return doc
            # Another replica wrote first: back off a little, re-read, merge again.
            await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311
        raise StorageError(f"record {key!r} kept changing under {_ATTEMPTS} attempts to update it")

    async def iter_records(self) -> AsyncIterator[Record]:
        """Every record of the namespace.

        Raises:
            StorageError: the bucket could not be listed or read.
        """
        async for object_key, _ in self._bucket.list(self._bucket.key(self._prefix)):
            found = await self._bucket.get(object_key)
            if found is None:
                continue  # deleted since it was listed
            try:
                doc = orjson.loads(found[0])
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                yield doc

    async def delete(self, key: str) -> None:
        """Remove a record; nothing when there is none.

        Raises:
            StorageError: the request failed.
        """
        await self._bucket.delete(self._key(key))
