"""The local disk cache of hot blobs in front of object storage.

Owns ``<root>/hot/sha256/<ab>/<hex>``: copies of blobs already verified and
stored in the bucket, kept so warm requests are served with sendfile, bounded
by size with least-recently-used eviction. It never holds a blob the bucket
does not: files arrive only by ``install`` after an upload or a verified read.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

logger = logging.getLogger(__name__)


class HotCache:
    """Least-recently-used local copies of blobs, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int | None) -> None:
        self._dir = root / "hot" / "sha256"
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self.total_bytes = 0

    def load(self) -> None:
        """Index what a previous run left (synchronous: run it in a thread)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self._dir.glob("*/*"):
            st = path.stat()
            found.append((st.st_mtime, path.name, st.st_size))
        for _, sha256, size in sorted(found):
            self._sizes[sha256] = size
        self.total_bytes = sum(self._sizes.values())
        self._evict()

    def _path(self, sha256: str) -> Path:
        return self._dir / sha256[:2] / sha256

    def get(self, sha256: str) -> tuple[Path, int] | None:
        """The local copy and its size, marking it used; None when not cached."""
        size = self._sizes.get(sha256)
        if size is None:
            return None
        self._sizes.move_to_end(sha256)
        return self._path(sha256), size

    def fits(self, size: int) -> bool:
        """True when a blob of ``size`` bytes may be cached at all."""
        return self.max_bytes is None or size <= self.max_bytes

    def install(self, spool: Path, sha256: str, size: int) -> None:
        """Move a verified spool file in (or drop it when it cannot fit).

        Synchronous file work: run it in a thread, then call ``installed``.
        """
        if not self.fits(size):
            spool.unlink(missing_ok=True)
            return
        final = self._path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spool, final)

    def installed(self, sha256: str, size: int) -> None:
        """Account for a file ``install`` moved in, evicting past the bound."""
        if not self.fits(size):
            return
        if sha256 not in self._sizes:
            self.total_bytes += size
        self._sizes[sha256] = size
        self._sizes.move_to_end(sha256)
        self._evict()

    def drop(self, sha256: str) -> None:
        """Forget and remove a local copy (a reader holding it open keeps reading)."""
        size = self._sizes.pop(sha256, None)
        if size is not None:
            self.total_bytes -= size
        with contextlib.suppress(FileNotFoundError):
            self._path(sha256).unlink()

    def _evict(self) -> None:
        if self.max_bytes is None:
            return
        while self.total_bytes > self.max_bytes and len(self._sizes) > 1:
            oldest = next(iter(self._sizes))
            logger.debug("dropping local copy of blob %s to stay under %d bytes",
                         oldest, self.max_bytes)
            self.drop(oldest)
