"""Choosing the blob store backend the settings name.

Owns the one place that knows which ``BlobStore`` classes exist; everything
above it holds a ``BlobStore`` and nothing more.
"""

from __future__ import annotations

from stockade.config.model import Settings
from stockade.storage.filesystem import FilesystemBlobStore
from stockade.storage.protocol import BlobStore


def open_store(settings: Settings) -> BlobStore:
    """The blob store for ``settings`` (not yet opened: call ``open()``)."""
    return FilesystemBlobStore(settings.storage.path, max_bytes=settings.storage.max_bytes)
