"""Giving the heap's free pages back once the in-memory caches have shed a lot.

Owns when a serving process calls ``malloc_trim`` (``rendered.release_memory``)
outside work on large documents: after the caches of its ``MemoryBudget``
together dropped a quarter of the budget (at least 1 MiB: entries shed,
replaced or expired) since the last trim, at most once every
``min_interval_s``, in a thread (the call walks the heap; the event loop goes on
meanwhile). The bytes the caches drop are freed to the heap, which keeps the
pages they sat on, scattered among live ones, so under a churn of more entries
than the budget holds the process grew past what its caches count; the trim
returns the free pages inside the heap as well as at its top. Nothing is done
on a hit, and a drop only adds to a count.

Not every growth is a cache's: a blob read for one answer, a connection's send
buffer, a document parsed and let go are freed with nothing shed, and a churn of
them left the heap grown by several MiB that no drop would ever trim. So, once
``watch`` is called, the process's resident anonymous memory is also read once
every ``min_interval_s`` (one read of ``/proc/self/statm``, on the loop) and the
heap trimmed when it grew by the same quarter of the budget since the lowest
level seen after the last trim: once when a load ends, not per request. Under a
steady load the heap grows back after each trim (its working set, not waste), so each
such trim doubles the time before the next may start (up to ``_BACK_OFF`` intervals:
a trim holds the allocator's lock for milliseconds, and the pages it gives back are
faulted in again); a look that finds no growth after that time sets it back to one
interval. Where ``/proc`` is missing nothing is read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from stockade.proxy.budget import MemoryBudget
from stockade.proxy.rendered import release_memory

logger = logging.getLogger(__name__)

_MIN_AFTER = 1024 * 1024  # bytes shed before a trim, for a small budget
_BACK_OFF = 64  # the longest wait between growth trims, in intervals
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_anonymous() -> int | None:
    """Bytes of this process's resident pages that no file backs (the heap, the
    interpreter's arenas); None where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            fields = statm.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * _PAGE  # resident less file-backed


class HeapTrim:
    """Trims the heap after ``budget``'s caches shed enough, or (once ``watch`` is
    called) the process grew as much (see the module docstring)."""

    def __init__(self, budget: MemoryBudget, *, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 resident: Callable[[], int | None] = resident_anonymous) -> None:
        self._after = max(budget.max_bytes // 4, _MIN_AFTER)
        self._interval = min_interval_s
        self._clock = clock
        self._dropped = 0  # bytes dropped since the last trim began
        self._last = -min_interval_s  # when the last trim began
        self._later: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._resident = resident
        self._floor: int | None = None  # the lowest resident level since the last trim
        self._watching: asyncio.TimerHandle | None = None
        self._gap = min_interval_s  # the least time from one trim to a growth trim
        self.trims = 0  # trims done (tests count them)
        budget.on_release = self.released

    def watch(self) -> None:
        """Read the resident level once an interval from now on, and trim when it
        grew past the mark (see the module docstring). In the serving process."""
        self._floor = self._resident()
        if self._floor is not None and self._watching is None:
            self._watching = asyncio.get_running_loop().call_later(self._interval, self._look)

    def _look(self) -> None:
        self._watching = asyncio.get_running_loop().call_later(self._interval, self._look)
        level = self._resident()
        if level is None or self._floor is None:
            return
        if level < self._floor:
            self._floor = level
        since = self._clock() - self._last
        if level - self._floor < self._after:
            if since >= self._gap:
                self._gap = self._interval  # no growth back: the load's churn ended
        elif self._later is None and self._task is None and since >= self._gap:
            self._gap = min(self._gap * 2, self._interval * _BACK_OFF)
            self._start()

    def released(self, size: int) -> None:
        """Count ``size`` bytes the caches gave back; trim (or plan one) past the mark."""
        self._dropped += size
        if self._dropped < self._after or self._later is not None or self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a server (a command's run): nothing to trim for
            return
        wait = self._last + self._interval - self._clock()
        if wait > 0:
            self._later = loop.call_later(wait, self._start)
        else:
            self._start()

    def _start(self) -> None:
        self._later = None
        self._dropped = 0
        self._last = self._clock()
        self._task = asyncio.get_running_loop().create_task(self._trim())

    async def _trim(self) -> None:
        try:
            await asyncio.to_thread(release_memory)
            self.trims += 1
            if self._floor is not None:
                self._floor = self._resident()  # growth is counted from here again
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop watching; cancel a planned trim; wait for one under way."""
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._task is not None:
            await self._task
