"""The local disk cache of hot blobs in front of object storage.

Owns ``<root>/hot/sha256/<ab>/<hex>``: copies of blobs already verified and
stored in the bucket, kept so warm requests are served with sendfile, bounded
by size with least-recently-used eviction. It never holds a blob the bucket
does not: files arrive only by ``install`` after an upload or a verified read.

Worker processes share the folder, each with its own index of it. So that the
bound holds for the folder, ``install`` (in a thread) also re-reads the folder at
most every ``RESCAN_S`` seconds (longer where reading it takes more than
``RESCAN_SHARE`` of that) when there is a bound, and ``installed`` takes that
reading in (the other processes' copies, their install time as their last use
beside this process's own uses) before it evicts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

logger = logging.getLogger(__name__)

RESCAN_S = 30.0  # with a bound, the folder is re-read at most this often ...
RESCAN_SHARE = 0.05  # ... and reading it takes at most this share of a thread's time

# sha256 -> (size, last use); and when the reading began
Reading = tuple[dict[str, tuple[int, float]], float]


class HotCache:
    """Least-recently-used local copies of blobs, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int | None) -> None:
        self._dir = root / "hot" / "sha256"
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._used: dict[str, float] = {}  # this process's last use of each copy
        self.total_bytes = 0
        self._scanned_at = time.monotonic()
        self._rescan_s = RESCAN_S  # longer for a folder that takes long to read

    def load(self) -> None:
        """Index what a previous run left (synchronous: run it in a thread)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._take(self._read())
        self._evict()

    def _read(self) -> Reading:
        started = time.time()
        found: dict[str, tuple[int, float]] = {}
        for path in self._dir.glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # dropped by another process meanwhile
                continue
            found[path.name] = (st.st_size, st.st_mtime)
        return found, started

    def _take(self, reading: Reading) -> None:
        """The folder as read, with this process's later uses, and the copies it
        installed or used since the reading began."""
        found, started = reading
        uses = {sha256: max(mtime, self._used.get(sha256, 0.0))
                for sha256, (_, mtime) in found.items()}
        sizes = {sha256: size for sha256, (size, _) in found.items()}
        for sha256, size in self._sizes.items():
            if sha256 not in found and self._used.get(sha256, 0.0) >= started:
                sizes[sha256], uses[sha256] = size, self._used[sha256]
        self._sizes = OrderedDict((sha256, sizes[sha256])
                                  for sha256 in sorted(uses, key=uses.__getitem__))
        self._used = {k: v for k, v in self._used.items() if k in self._sizes}
        self.total_bytes = sum(self._sizes.values())

    def _path(self, sha256: str) -> Path:
        return self._dir / sha256[:2] / sha256

    def get(self, sha256: str) -> tuple[Path, int] | None:
        """The local copy and its size, marking it used; None when not cached."""
        size = self._sizes.get(sha256)
        if size is None:
            return None
        self._sizes.move_to_end(sha256)
        self._used[sha256] = time.time()
        return self._path(sha256), size

    def fits(self, size: int) -> bool:
        """True when a blob of ``size`` bytes may be cached at all."""
        return self.max_bytes is None or size <= self.max_bytes

    def install(self, spool: Path, sha256: str, size: int) -> Reading | None:
        """Move a verified spool file in (or drop it when it cannot fit); with a
        bound, and ``RESCAN_S`` since the last, a new reading of the folder.

        Synchronous file work: run it in a thread, then call ``installed`` with
        what it returned.
        """
        if not self.fits(size):
            spool.unlink(missing_ok=True)
            return None
        final = self._path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spool, final)
        began = time.monotonic()
        if self.max_bytes is None or began - self._scanned_at < self._rescan_s:
            return None
        reading = self._read()
        self._scanned_at = time.monotonic()
        self._rescan_s = max(RESCAN_S, (self._scanned_at - began) / RESCAN_SHARE)
        return reading

    def installed(self, sha256: str, size: int, reading: Reading | None = None) -> None:
        """Account for a file ``install`` moved in (and the folder it read), evicting
        past the bound."""
        if not self.fits(size):
            return
        self._used[sha256] = time.time()
        if reading is not None:
            self._take(reading)
        if sha256 not in self._sizes:
            self.total_bytes += size
        self._sizes[sha256] = size
        self._sizes.move_to_end(sha256)
        self._evict()

    def drop(self, sha256: str) -> None:
        """Forget and remove a local copy (a reader holding it open keeps reading)."""
        size = self._sizes.pop(sha256, None)
        self._used.pop(sha256, None)
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
