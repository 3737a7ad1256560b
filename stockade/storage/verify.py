"""Re-hashing stored blobs: what ``stockade cache verify`` runs, on any backend.

Owns checking that each blob's bytes still hash to its name, through the
``BlobStore`` protocol only, and removing those that do not.
"""

from __future__ import annotations

import logging

from stockade.storage.digest import MultiHasher
from stockade.storage.errors import BlobNotFoundError
from stockade.storage.protocol import BlobStore

logger = logging.getLogger(__name__)


async def blob_intact(store: BlobStore, sha256: str) -> bool:
    """True when the stored bytes of ``sha256`` hash to it; False when they do not,
    or the blob is gone."""
    hasher = MultiHasher()
    try:
        async for chunk in store.read(sha256):
            hasher.update(chunk)
    except BlobNotFoundError:
        return False
    return hasher.digests()["sha256"].hex == sha256


async def verify_all(store: BlobStore) -> tuple[int, list[str]]:
    """Re-hash every blob; remove and return those whose bytes do not match.

    Returns:
        (number checked, digests of the blobs removed)
    """
    checked, removed = 0, []
    blobs = [info.sha256 async for info in store.iter_blobs()]
    for sha256 in blobs:
        checked += 1
        if not await blob_intact(store, sha256):
            logger.warning("blob %s failed verification and was removed", sha256)
            await store.delete(sha256)
            removed.append(sha256)
    return checked, removed
