"""The local disk cache of hot blobs in front of object storage.

Owns ``<root>/hot/sha256/<ab>/<hex>``: copies of blobs already verified and
stored in the bucket, kept so warm requests are served with sendfile, bounded
by size with least-recently-used eviction. It never holds a blob the bucket
does not: files arrive only by ``install`` after an upload or a verified read.

Worker processes share the folder, each with its own index of it. So that the
bound holds for the folder, ``reconcile`` (after an install) re-reads the folder at
most every ``RESCAN_S`` seconds (longer where reading it takes more than
``RESCAN_SHARE`` of that) when there is a bound: in a thread, it orders the other
processes' copies (their file time: install, and a use at most hourly) with this
process's own uses; the loop takes that order in, with what changed meanwhile, then evicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

logger = logging.getLogger(__name__)

RESCAN_S = 30.0  # with a bound, the folder is re-read at most this often ...
RESCAN_SHARE = 0.05  # ... and reading it takes at most this share of a thread's time
TOUCH_EVERY_S = 3600.0  # a copy's use is written on its file at most this often



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
        # while the folder is read in a thread: the copies used, installed or dropped
        # here meanwhile, whose place the reading does not know
        self._changes: set[str] | None = None

    def load(self) -> None:
        """Index what a previous run left (synchronous: run it in a thread)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sizes, self.total_bytes, _ = self._ordered({}, {})
        self._evict()

    def _ordered(self, sizes: dict[str, int], used: dict[str, float]
                 ) -> tuple[OrderedDict[str, int], int, list[str]]:
        """The folder as read now, least recently used first, with this process's
        later uses (``used``) and the copies of ``sizes`` it installed since the reading
        began: (copies, their bytes, the copies of ``sizes`` it has not). Runs in a
        thread, on copies."""
        started = time.time()
        found: dict[str, int] = {}
        uses: dict[str, float] = {}
        for path in self._dir.glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # dropped by another process meanwhile
                continue
            found[path.name] = st.st_size
            uses[path.name] = max(st.st_mtime, used.get(path.name, 0.0))
        for sha256, size in sizes.items():
            if sha256 not in found and used.get(sha256, 0.0) >= started:
                found[sha256], uses[sha256] = size, used[sha256]
        ordered = OrderedDict((sha256, found[sha256])
                              for sha256 in sorted(uses, key=uses.__getitem__))
        return ordered, sum(found.values()), [k for k in sizes if k not in ordered]

    async def reconcile(self) -> None:
        """With a bound, once ``RESCAN_S`` has passed: take in the copies every process
        sharing the folder holds (read and ordered in a thread), then evict."""
        if self.max_bytes is None or self._changes is not None or \
                time.monotonic() - self._scanned_at < self._rescan_s:
            return
        changes = self._changes = set()
        began = time.monotonic()
        try:
            ordered, total, vanished = await asyncio.to_thread(
                self._ordered, dict(self._sizes), dict(self._used))
        except OSError as exc:  # the bound holds per process until the next reading
            logger.warning("cannot read the local copies under %s: %s", self._dir, exc)
            self._scanned_at = time.monotonic()
            return
        finally:
            self._changes = None
        self._scanned_at = time.monotonic()
        self._rescan_s = max(RESCAN_S, (self._scanned_at - began) / RESCAN_SHARE)
        for sha256 in changes:  # used, installed or dropped here meanwhile: newest
            total -= ordered.pop(sha256, 0)
            size = self._sizes.get(sha256)
            if size is not None:
                ordered[sha256] = size
                total += size
        for sha256 in vanished:
            self._used.pop(sha256, None)
        self._sizes, self.total_bytes = ordered, total
        self._evict()

    def _path(self, sha256: str) -> Path:
        return self._dir / sha256[:2] / sha256

    def get(self, sha256: str) -> tuple[Path, int] | None:
        """The local copy and its size, marking it used; None when not cached."""
        size = self._sizes.get(sha256)
        if size is None:
            return None
        self._sizes.move_to_end(sha256)
        now = time.time()
        if now - self._used.get(sha256, 0.0) > TOUCH_EVERY_S:
            # the other processes order the copies by the file's time: tell them, hourly
            with contextlib.suppress(OSError):
                os.utime(self._path(sha256), (now, now))
        self._used[sha256] = now
        if self._changes is not None:
            self._changes.add(sha256)
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
        self._used[sha256] = time.time()
        if sha256 not in self._sizes:
            self.total_bytes += size
        self._sizes[sha256] = size
        self._sizes.move_to_end(sha256)
        if self._changes is not None:
            self._changes.add(sha256)
        self._evict()

    def drop(self, sha256: str) -> None:
        """Forget and remove a local copy (a reader holding it open keeps reading)."""
        size = self._sizes.pop(sha256, None)
        self._used.pop(sha256, None)
        if size is not None:
            self.total_bytes -= size
        if self._changes is not None:
            self._changes.add(sha256)
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
