"""The decision log: every refusal and audit-mode hit, append-only and hash-chained.

Owns writing one JSON line per decision that refused (or, in audit mode, would
have refused) and checking a log afterwards. Each record carries the hash of the
record before it and its own hash over its canonical form, so editing or
deleting a record breaks the chain where it happened (``stockade log verify``).
Cutting records off the end leaves a shorter valid chain: compare the last hash
``verify`` prints with one kept elsewhere to detect that.

Records are chained on the event loop, in the order decisions were made, and
written by one task off the loop; the queue is bounded, and a full queue or a
failing disk is logged and counted, never a reason to stall requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stockade.policy.model import PackageRef, Verdict

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_QUEUE_MAX = 10_000
_FIELDS = ("seq", "time", "ecosystem", "name", "version", "filename", "decision", "rule",
           "reason", "target", "audit", "client", "request_id", "policy_revision", "prev")


def _canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps({k: record.get(k) for k in _FIELDS}, option=orjson.OPT_SORT_KEYS)


def record_hash(record: dict[str, Any]) -> str:
    """The hash a record must carry: sha256 over its canonical fields (``prev`` included)."""
    return hashlib.sha256(_canonical(record)).hexdigest()


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last complete line of the log, read from the end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            block = min(size, 1024 * 1024)
            fh.seek(size - block)
            tail = fh.read(block)
    except FileNotFoundError:
        return None
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return None
    try:
        last = orjson.loads(lines[-1])
    except orjson.JSONDecodeError:
        return None  # a torn last line: verify reports it; a new chain links past it
    return last if isinstance(last, dict) else None


class DecisionLog:
    """Appends chained decision records to ``path``."""

    def __init__(
        self, path: Path, *, revision: Callable[[], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._path = path
        self._revision = revision
        self._clock = clock
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_MAX)
        self._writer: asyncio.Task[None] | None = None
        self._prev = GENESIS
        self._seq = 0
        self.dropped = 0

    async def open(self) -> None:
        """Continue the chain of an existing log, and start the writer."""
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)
        last = await asyncio.to_thread(_last_record, self._path)
        if last is not None and isinstance(last.get("hash"), str):
            self._prev = last["hash"]
            self._seq = int(last.get("seq", 0)) + 1
        self._writer = asyncio.create_task(self._write_loop(), name="decision-log-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None

    async def record(self, verdict: Verdict, ref: PackageRef, *, client: str,
                     request_id: str) -> None:
        """Chain and queue one record (the write happens off the loop)."""
        record: dict[str, Any] = {
            "seq": self._seq, "time": self._clock().isoformat(timespec="milliseconds"),
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "filename": ref.filename, "decision": verdict.decision.value, "rule": verdict.rule,
            "reason": verdict.reason, "target": verdict.target, "audit": verdict.audit_only,
            "client": client, "request_id": request_id, "policy_revision": self._revision(),
            "prev": self._prev,
        }
        record["hash"] = record_hash(record)
        try:
            self._queue.put_nowait(orjson.dumps(record) + b"\n")
        except asyncio.QueueFull:
            self.dropped += 1
            logger.error("decision log queue full; record for %s not written", ref.display())
            return
        self._prev = record["hash"]
        self._seq += 1

    async def _write_loop(self) -> None:
        while True:
            line = await self._queue.get()
            batch = [line]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            data = b"".join(item for item in batch if item is not None)
            if data:
                try:
                    await asyncio.to_thread(self._append, data)
                except OSError as exc:
                    logger.error("cannot write the decision log %s: %s", self._path, exc)
            if stop:
                return

    def _append(self, data: bytes) -> None:
        with self._path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


@dataclass(frozen=True, slots=True)
class Verification:
    """What checking a log found."""

    records: int
    last_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def verify(path: Path) -> Verification:
    """Check every record's hash and its link to the one before.

    Raises:
        FileNotFoundError: there is no log at ``path``.
    """
    prev, count, problems = GENESIS, 0, []
    for number, line in _lines(path):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {number}: not a JSON record (torn or edited)")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        count += 1
        if record.get("prev") != prev and not (count == 1 and record.get("seq", 0) == 0):
            problems.append(
                f"line {number} (seq {record.get('seq')}): does not follow the record before "
                "it: a record was deleted or inserted here"
            )
        if record.get("hash") != record_hash(record):
            problems.append(f"line {number} (seq {record.get('seq')}): hash does not match "
                            "its content: the record was edited")
        prev = str(record.get("hash"))
    return Verification(count, prev, tuple(problems))
