"""Coalescing of identical concurrent work into one call.

Owns the in-flight table. The work runs in its own task, so a caller that
goes away (a client disconnecting) does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one running call per key; later callers share its result."""

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def running(self, key: K) -> asyncio.Task[V] | None:
        """The task doing the work for ``key``, if any."""
        return self._inflight.get(key)

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """Run ``work`` for ``key`` unless it already runs; return its result."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._inflight[key] = task
            task.add_done_callback(partial(self._done, key))
        return await asyncio.shield(task)

    def _done(self, key: K, _task: asyncio.Task[V]) -> None:
        self._inflight.pop(key, None)

    async def cancel_all(self) -> None:
        """Cancel every running call (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
