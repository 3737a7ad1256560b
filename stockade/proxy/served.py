"""The served-artifacts record: which artifact version went to whom, and when.

Owns recording each artifact a client was sent (ecosystem, name, version, file,
sha256, the caller's identity and team or, anonymous, its address, the time)
and reading the record back. Recording is off the hot path: ``note`` only
appends to a bounded in-memory batch; a task writes batches every
``flush_s`` seconds (and at close) in a thread, one ``O_APPEND`` write per batch,
so worker processes can share the files. Past ``max_pending`` entries waiting
(a disk that keeps failing), new ones are dropped and counted, never waited on.

Files: ``storage.path/served/<YYYY-MM-DD>.jsonl`` (UTC days; those older than
``served.retention_days`` are deleted at start and daily), one JSON object a
line. Who fetched what after a change (``affected``) and the inventory
(``inventory``) read them. Over storage served read-only (``folder`` None) each
record goes to the ``stockade.served`` logger as one JSON line instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from stockade.proxy.identity import Identity, identity_of
from stockade.proxy.metrics import Metrics
from stockade.proxy.pipeline import ArtifactSource
from stockade.storage.protocol import BlobInfo

logger = logging.getLogger(__name__)

FOLDER = "served"


@dataclass(frozen=True, slots=True)
class Served:
    """One artifact sent to one caller."""

    time: float  # epoch seconds
    ecosystem: str
    name: str
    version: str | None
    filename: str
    sha256: str
    client: str  # the caller's address
    identity: str | None = None  # the authenticated identity's name (None: anonymous)
    team: str | None = None

    @property
    def who(self) -> str:
        """The identity's name, or the client address when anonymous."""
        return self.identity or self.client

    @classmethod
    def of(cls, request: web.BaseRequest, *, ecosystem: str, name: str, version: str | None,
           filename: str, sha256: str) -> Served:
        """The record of sending this artifact in answer to ``request``."""
        identity = identity_of(request)
        return cls(time.time(), ecosystem, name, version, filename, sha256,
                   request.remote or "", identity.name if identity else None,
                   identity.team if identity else None)


_FIELDS = tuple(f.name for f in fields(Served))  # a record's keys, in order


def _day(stamp: float) -> str:
    return _utc_day(int(stamp // 86400))


@functools.lru_cache(maxsize=8)  # a batch's entries fall on one day or two
def _utc_day(days: int) -> str:
    """``YYYY-MM-DD`` of the UTC day ``days`` after the epoch."""
    return datetime.fromtimestamp(days * 86400, UTC).strftime("%Y-%m-%d")


served_logger = logging.getLogger("stockade.served")


class ServedLog:
    """Batches served records and appends them under ``folder`` (None: logs them)."""

    def __init__(self, folder: Path | None, metrics: Metrics, *, flush_s: float = 1.0,
                 max_pending: int = 100_000, retention_days: int | None = None) -> None:
        self._folder = folder
        self._retention_days = retention_days
        self._pruned = ""  # the UTC day the old files were last pruned
        self._metrics = metrics
        self._flush_s = flush_s
        self._max_pending = max_pending
        # entries, or their fields in ``Served``'s order (a frozen dataclass's nine
        # fields cost a warm request 3 us to set; the writer encodes the fields)
        self._pending: list[Served | tuple[Any, ...]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def note(self, entry: Served | tuple[Any, ...]) -> None:
        """Queue ``entry`` (or the fields of one, in ``Served``'s order) for writing;
        never waits."""
        if len(self._pending) >= self._max_pending:
            self._metrics.served_dropped.inc()
            return
        self._pending.append(entry)
        if len(self._pending) >= 1000:
            self._wake.set()

    async def open(self) -> None:
        if self._folder is not None:
            await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True)
        await self._prune()
        self._task = asyncio.create_task(self._run(), name="served-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._prune()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_s)
            self._wake.clear()
            await self.flush()

    async def _prune(self) -> None:
        today = _day(time.time())
        if self._retention_days is None or self._pruned == today or self._folder is None:
            return
        self._pruned = today
        keep_from = _day(time.time() - self._retention_days * 86400)
        removed = await asyncio.to_thread(prune, self._folder, keep_from)
        if removed:
            logger.info("served record: %d day files before %s removed", removed, keep_from)

    async def flush(self) -> None:
        """Write what is pending (kept for the next try if writing fails)."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await asyncio.to_thread(self._write, batch)
            except OSError as exc:
                logger.error("served record: %d entries not written yet: %s", len(batch), exc)
                self._pending[:0] = batch[: self._max_pending - len(self._pending)]

    def _write(self, batch: list[Served | tuple[Any, ...]]) -> None:
        if self._folder is None:
            for entry in batch:
                served_logger.info("%s", _encoded(entry).decode())
            return
        # Each day's lines appended to one buffer as they are made: a batch's lines
        # kept as bytes objects until joined cost 3.4 us an entry, made and freed one
        # by one 1.1 (``asdict`` deep-copied each entry before that: the batch's writes
        # took a tenth of a warm request's time).
        by_day: dict[int, bytearray] = {}
        last, lines = -1, bytearray()
        for entry in batch:
            days = int((entry[0] if isinstance(entry, tuple) else entry.time) // 86400)
            if days != last:
                last, lines = days, by_day.setdefault(days, bytearray())
            lines += _encoded(entry, orjson.OPT_APPEND_NEWLINE)
        for days, day_lines in by_day.items():
            fd = os.open(self._folder / f"{_utc_day(days)}.jsonl",
                         os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                # a torn last line (a crash mid-write) must not swallow this batch's first
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    day_lines[:0] = b"\n"
                os.write(fd, day_lines)
            finally:
                os.close(fd)


def _encoded(entry: Served | tuple[Any, ...], option: int = 0) -> bytes:
    """One record's line: the object of its fields in order, encoded by orjson."""
    if isinstance(entry, tuple):
        return orjson.dumps(dict(zip(_FIELDS, entry, strict=True)), option=option)
    return orjson.dumps(entry, option=option)


def prune(folder: Path, keep_from: str) -> int:
    """Delete the day files before the day ``keep_from`` (YYYY-MM-DD); how many."""
    removed = 0
    for path in folder.glob("*.jsonl"):
        if path.stem < keep_from:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def read_served(folder: Path, *, since: float, until: float | None = None) -> Iterator[Served]:
    """The records from ``since`` (epoch seconds) to ``until``, file by file (bounded
    memory); a line that is not a record (a torn write) is skipped."""
    if not folder.is_dir():
        return
    first = _day(since)
    last = _day(until) if until is not None else None
    for path in sorted(folder.glob("*.jsonl")):
        day = path.stem
        if day < first or (last is not None and day > last):
            continue
        with path.open("rb") as handle:
            for line in handle:
                try:
                    entry = Served(**orjson.loads(line))
                except (orjson.JSONDecodeError, TypeError):
                    continue
                if entry.time >= since and (until is None or entry.time <= until):
                    yield entry


def window_start(seconds: float) -> float:
    """The epoch time ``seconds`` ago."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).timestamp()


# Files served beside an artifact that are not one: checksums, signatures, metadata.
_SIDE_FILES = (".metadata", ".sha1", ".md5", ".sha256", ".sha512", ".asc")


def recorder(log: ServedLog) -> Callable[[str, Identity | None, ArtifactSource, BlobInfo],
                                         None]:
    """The pipeline's ``on_served`` hook writing to ``log``."""
    def note(client: str, who: Identity | None, source: ArtifactSource,
             info: BlobInfo) -> None:
        if source.name is None or source.filename.endswith(_SIDE_FILES):
            return
        # (as Served.of, its fields only)
        log.note((time.time(), source.ecosystem.value, source.name, source.version,
                  source.filename, info.sha256, client,
                  who.name if who else None, who.team if who else None))
    return note
