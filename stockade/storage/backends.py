"""Choosing the blob and record store backends the settings name.

Owns the one place that knows which ``BlobStore`` and ``RecordStore``
classes exist; everything above it holds the protocols and nothing more.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from stockade.config.model import Settings
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.protocol import BlobStore
from stockade.storage.records import RecordStore
from stockade.storage.refs import RefStore

# The S3 backend is imported only when configured: its client libraries (botocore)
# take a tenth of a start's imports, paid by every server on a filesystem.


def open_store(settings: Settings, environ: Mapping[str, str] | None = None, *,
               read_only: str | None = None) -> BlobStore:
    """The blob store for ``settings`` (not yet opened: call ``open()``, and
    ``close()`` when done). ``environ`` holds the object storage credentials;
    ``read_only`` (why the filesystem store cannot be written) serves it read-only."""
    storage = settings.storage
    if storage.backend == "s3":
        from stockade.storage.s3 import S3BlobStore
        from stockade.storage.s3bucket import S3Bucket

        bucket = S3Bucket(storage.s3, os.environ if environ is None else environ)
        return S3BlobStore(bucket, storage.path, cache_max_bytes=storage.s3.cache_max_bytes)
    return FilesystemBlobStore(storage.path, max_bytes=storage.max_bytes, read_only=read_only)


def open_records(settings: Settings, store: BlobStore, namespace: str) -> RecordStore:
    """The records of ``namespace`` that every replica shares: in the bucket beside
    the blobs (through ``store``'s client, which must stay open while they are
    used), or under the storage path."""
    s3 = sys.modules.get("stockade.storage.s3")  # not imported: not an S3 store
    if s3 is not None and isinstance(store, s3.S3BlobStore):
        from stockade.storage.s3records import S3RecordStore

        return S3RecordStore(store.bucket, namespace)
    read_only = isinstance(store, FilesystemBlobStore) and store.read_only is not None
    return RefStore(settings.storage.path, namespace, read_only=read_only)
