"""Slots for large computations, shared by every process serving one storage folder.

Parsing and rendering a packument of tens of megabytes takes several times its size
in memory while it runs. Each worker process has its own render pool, so without a
bound shared by the workers, twenty cold large documents spread over two workers
would run four or more at once, each worker also holding the bodies waiting for it.
This module owns that bound: ``RenderSlots.hold()`` waits until one of ``count``
slots is free server-wide. A slot is an exclusive ``flock`` on a file of fixed name
under the lock folder (``<kind>-slot-<n>``: ``render`` for parsing and rendering,
``read`` for reading large upstream bodies); the kernel releases it when its holder
exits, however it exits. Waiting polls (``singleflight.poll_flock``): a few
microseconds of system calls per try, backing off to 50 ms.

Within a process, waiters queue on a semaphore first, so one process never polls
for more slots than the server has. A task that holds a slot and asks for one again
(a computation inside a larger step already holding it, or a task it started) is not
made to wait for itself. What is large, and what runs inside a slot, is the callers' choice
(``rendered.RenderedCache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from stockade.proxy.singleflight import poll_flock, try_flock

logger = logging.getLogger(__name__)


class RenderSlots:
    """At most ``count`` holders at once across the processes sharing ``folder``."""

    def __init__(self, folder: Path, count: int, *, kind: str = "render") -> None:
        if count < 1:
            raise ValueError(f"a server needs at least one {kind} slot")
        self.folder = folder
        self.count = count
        self.kind = kind
        # Set in the task holding a slot (and in the tasks it starts).
        self._holding: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"{kind}_slot", default=False)
        self._local = asyncio.Semaphore(count)
        self._broken = False  # the folder cannot be used: slots bound this process only

    @property
    def held(self) -> bool:
        """True in a task holding a slot (or started by one)."""
        return self._holding.get()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold a slot for the block (at once if this task already holds one)."""
        if self._holding.get():
            yield
            return
        async with self._local:
            fd = await self._acquire()
            token = self._holding.set(True)
            try:
                yield
            finally:
                self._holding.reset(token)
                if fd is not None:
                    os.close(fd)  # releases the lock

    async def _acquire(self) -> int | None:
        if self._broken:
            return None
        try:
            return await poll_flock(self._try_any)
        except OSError as exc:
            logger.warning("cannot lock %s slots under %s: %s; large documents are "
                           "bounded per worker process only", self.kind, self.folder, exc)
            self._broken = True
            return None

    def _try_any(self) -> int | None:
        """A descriptor locking the first free slot, or None while all are held."""
        for slot in range(self.count):
            fd = try_flock(self.folder / f"{self.kind}-slot-{slot}")
            if fd is not None:
                return fd
        return None
