"""Coalescing of identical concurrent work into one call, within a process and
across the worker processes sharing a storage folder.

Owns the in-flight table and the lock files. The work runs in its own task, so a
caller that goes away (a client disconnecting) does not cancel it for the others.
Across processes, the work for a key runs under an exclusive lock on a file
named after the key (``FileLocks``): a worker that finds the lock held waits for
it, then runs the work, which must look again for what the holder stored
(the metadata cache and the artifact pipeline do) before asking an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_FIRST_WAIT_S = 0.002  # a held lock is polled, from this interval ...
_LAST_WAIT_S = 0.05  # ... doubling up to this one
# A key's lock is held for one fetch (a ~1 MB artifact: about 0.1 s); polled every
# 50 ms, the other worker's requests for it were answered up to 50 ms after it was
# stored. One poller per key and process: a few microseconds of system calls a try.
_KEY_LAST_WAIT_S = 0.005


def try_flock(path: Path) -> int | None:
    """A descriptor of ``path`` (made, with its folder, if missing) holding an
    exclusive ``flock``, or None while another holds it; closing it releases it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def poll_flock(attempt: Callable[[], int | None], *,
                     last_wait_s: float = _LAST_WAIT_S) -> int:
    """Call ``attempt`` (a ``try_flock`` of one or more files) until it gives a
    descriptor, waiting between tries from 2 ms, doubling up to ``last_wait_s``
    (50 ms).

    Raises:
        OSError: from ``attempt``: the lock files cannot be used.
    """
    wait = _FIRST_WAIT_S
    while (fd := attempt()) is None:
        await asyncio.sleep(wait)
        wait = min(wait * 2, last_wait_s)
    return fd


class FileLocks:
    """Exclusive locks shared by every process, one file per key under ``folder``.

    A lock file is removed by its holder; a waiter that took the lock of a file
    removed meanwhile sees that (the name now leads elsewhere) and tries again.
    The calls are local metadata system calls, microseconds each, made on the loop
    only when work is about to go to an upstream; a thread hop would cost more.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._broken = False  # the folder cannot be used: work runs unlocked

    def path(self, key: str) -> Path:
        """The lock file of ``key``."""
        return self.folder / hashlib.sha256(key.encode()).hexdigest()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of ``key`` (waiting while another process holds it)."""
        path = self.path(key)
        fd = await self._acquire(path)
        try:
            yield
        finally:
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                os.close(fd)  # releases the lock

    async def _acquire(self, path: Path) -> int | None:
        if self._broken:
            return None
        try:
            return await poll_flock(partial(self._try, path), last_wait_s=_KEY_LAST_WAIT_S)
        except OSError as exc:
            # A folder that cannot be written (read-only storage) coordinates
            # nothing; the work still runs, once per process.
            logger.warning("cannot lock %s: %s; concurrent fetches across worker "
                           "processes are not coalesced", path, exc)
            self._broken = True
            return None

    def _try(self, path: Path) -> int | None:
        """The locked descriptor of ``path``, or None while another holds it."""
        fd = try_flock(path)
        if fd is None:
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # removed by the holder before: not the lock
            os.close(fd)
            return None
        return fd


class SingleFlight(Generic[K, V]):
    """At most one running call per key; later callers share its result.

    With ``locks``, at most one per key across the processes sharing them.
    """

    def __init__(self, locks: FileLocks | None = None) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}
        self._locks = locks

    def running(self, key: K) -> asyncio.Task[V] | None:
        """The task doing the work for ``key``, if any."""
        return self._inflight.get(key)

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """Run ``work`` for ``key`` unless it already runs; return its result."""
        return await asyncio.shield(self.start(key, work))

    def start(self, key: K, work: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        """The task running ``work`` for ``key``, started unless it already runs (a
        caller that does not wait for it: its failure is retrieved, not reported)."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._locked(key, work))
            self._inflight[key] = task
            task.add_done_callback(partial(self._done, key))
        return task

    async def _locked(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        if self._locks is None:
            return await work()
        async with self._locks.hold(str(key)):
            return await work()

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: the callers waiting raise it themselves

    async def cancel_all(self) -> None:
        """Cancel every running call (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
