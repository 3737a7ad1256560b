"""Answers made from a document, kept while the answer to its next version is made.

A revalidation that brings a changed document (a 20 MB packument gaining a
version) makes every answer derived from it stale at once, and making the new
ones (parsing, deciding, rendering) takes seconds. This module owns the last
answer made per family (one document in one form for one audience) and the
making of its successor in the background: while it is made, requests are
answered with the last one, as the metadata cache answers with the copy held
while the document is revalidated; once made, the new one answers. Only the one
previous answer stands in, and only while its successor is being made; a family
never answered before waits for its first answer. It does not know what the
answers are: the ecosystem modules do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

from stockade.proxy.singleflight import SingleFlight

V = TypeVar("V")

FAMILIES = 256  # families whose last answer is kept


class Successions(Generic[V]):
    """The last answer per family, standing in while the next is made."""

    def __init__(self, families: int = FAMILIES) -> None:
        self._last: LRUCache[str, tuple[str, V]] = LRUCache(families)
        self._making: SingleFlight[tuple[str, str], V] = SingleFlight()

    async def answer(self, family: str, version: str, make: Callable[[], Awaitable[V]],
                     usable: Callable[[V], bool], *, wait: bool = False,
                     keep: Callable[[V], V] | None = None) -> tuple[V, bool]:
        """The answer of ``family`` for ``version``, made by ``make``, and False; or,
        while it is made, the last answer of another version (if ``usable``) and True.
        With ``wait`` (the caller that fetched ``version``), the new one is waited for.
        ``keep`` makes what is kept of an answer (lighter: it may stand in, rarely).

        Raises:
            Exception: what ``make`` raised, for a caller that waited for it.
        """
        last = self._last.get(family)

        async def made() -> V:
            value = await make()
            self._last[family] = (version, value if keep is None else keep(value))
            return value

        if last is None or last[0] == version:
            return await made(), False
        task = self._making.start((family, version), made)
        if wait or task.done() or not usable(last[1]):
            return await asyncio.shield(task), False
        return last[1], True

    async def close(self) -> None:
        """Stop any answer still being made."""
        await self._making.cancel_all()
