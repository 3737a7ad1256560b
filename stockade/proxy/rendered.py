"""Rendered metadata documents: made once, served from disk many times.

Owns the files behind large rewritten documents (npm packuments reach tens of
megabytes): each is rendered off the event loop once per key (the key names
the upstream document version, the policy revision and the form), written with
a gzip sibling so aiohttp's file response can send either with sendfile, and
kept under a byte budget, least recently used first. Rendered files are
derived data: the folder is cleared at start and whatever is missing is
rendered again.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stockade.proxy.singleflight import SingleFlight

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered document on disk."""

    path: Path
    size: int
    etag: str
    created_at: float
    headers: Mapping[str, str] = field(default_factory=dict)  # what rendering found out

Render = Callable[[], tuple[bytes, Mapping[str, str]]]


class RenderedCache:
    """Rendered documents under ``root``, at most ``max_bytes`` of them."""

    def __init__(
        self, root: Path, *, max_bytes: int = 1024**3, concurrency: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, Rendered] = OrderedDict()
        self._used = 0
        self._flight: SingleFlight[str, Rendered] = SingleFlight()
        # Rendering a large packument holds it parsed in memory: bound how many at once.
        self._slots = asyncio.Semaphore(concurrency)

    async def open(self) -> None:
        """Start empty: rendered files are derived and may belong to an old policy."""
        await asyncio.to_thread(self._reset)

    def _reset(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
        self._root.mkdir(parents=True, exist_ok=True)

    async def get(
        self, key: str, render: Render, *, max_age_s: float
    ) -> Rendered:
        """The rendered document for ``key``, rendering it (once) if absent or too old."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.created_at < max_age_s:
            self._entries.move_to_end(key)
            return entry

        async def make() -> Rendered:
            async with self._slots:
                made = await asyncio.to_thread(self._write, key, render)
            self._add(key, made)
            return made

        return await self._flight.do(key, make)

    def _write(self, key: str, render: Render) -> Rendered:
        body, headers = render()
        digest = hashlib.sha256(body).hexdigest()
        name = hashlib.sha256(key.encode()).hexdigest()
        path = self._root / f"{name}-{digest[:16]}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        gz_tmp = path.with_name(path.name + ".gz.tmp")
        gz_tmp.write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
        os.replace(gz_tmp, path.with_name(path.name + ".gz"))
        return Rendered(path, len(body), f'"{digest[:32]}"', self._clock(), dict(headers))

    def _add(self, key: str, entry: Rendered) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._used -= old.size
            if old.path != entry.path:
                self._unlink(old)
        self._entries[key] = entry
        self._used += entry.size
        while self._used > self._max_bytes and len(self._entries) > 1:
            _, victim = self._entries.popitem(last=False)
            self._used -= victim.size
            self._unlink(victim)

    @staticmethod
    def _unlink(entry: Rendered) -> None:
        # A client already sending this file keeps its open descriptor.
        for path in (entry.path, entry.path.with_name(entry.path.name + ".gz")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("cannot remove rendered document %s: %s", path, exc)
