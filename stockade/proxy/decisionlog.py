"""The decision log: every refusal and audit-mode hit, append-only and hash-chained.

Owns writing one JSON line per decision that refused (or, in audit mode, would
have refused) and checking a log afterwards. Each record carries the hash of the
record before it and its own hash over its canonical form, so editing or
deleting a record breaks the chain where it happened (``stockade log verify``).
Cutting records off the end would leave a shorter valid chain, so after each
write the head (record count and hash) is anchored in a checkpoint beside the
log (``checkpoint``), optionally signed, and exported as
``stockade_decision_log_records``; ``verify`` compares the log with it. A crash
between the two writes leaves the checkpoint behind the log, which is fine: the
record at its count still has its hash.

Records are queued on the event loop, in the order decisions were made, and
written by one task off the loop, which chains them to the log's last record
under an exclusive lock on the file: the worker processes of one server append
to one chain, each continuing from what the others wrote. A full queue or a
failing disk is logged and counted, never a reason to stall requests. A write
that fails (a full disk) is cut back to the last whole record and tried again,
every second and with each new record, so nothing is lost while the disk
recovers within the queue's bound; a record past it is dropped and counted. A log
whose last line was torn (a crash in mid-write) is continued on a new line,
chained to its last whole record.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stockade.policy.model import PackageRef, Verdict
from stockade.proxy.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    read_checkpoint,
    write_checkpoint,
)
from stockade.proxy.metrics import Metrics

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_QUEUE_MAX = 10_000  # records waiting to be written, including those a failing disk holds
_RETRY_SECONDS = 1.0
_write = os.write  # the one call that writes records (a test makes it fail)
_FIELDS = ("seq", "time", "ecosystem", "name", "version", "filename", "decision", "rule",
           "reason", "target", "audit", "client", "request_id", "policy_revision", "prev")


# Fields a record carries only where they say something (older records lack them,
# and their hashes must not change): the versions a metadata decision hid, and the
# full values behind a reason (both digests of a republished file), and who asked:
# the name and team of the caller's token (never the token).
_OPTIONAL = ("versions", "evidence", "identity", "team")


def _canonical(record: dict[str, Any]) -> bytes:
    fields = {k: record.get(k) for k in _FIELDS}
    fields.update({k: record[k] for k in _OPTIONAL if record.get(k)})
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def record_hash(record: dict[str, Any]) -> str:
    """The hash a record must carry: sha256 over its canonical fields (``prev`` included)."""
    return hashlib.sha256(_canonical(record)).hexdigest()


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last whole record of the log, read from the end (past a torn last line)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _last_in(fd)
    finally:
        os.close(fd)


def _last_in(fd: int) -> dict[str, Any] | None:
    size = os.fstat(fd).st_size
    block = min(size, 1024 * 1024)
    tail = os.pread(fd, block, size - block)
    for line in reversed(tail.split(b"\n")):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # torn (verify reports it): the chain goes on from the record before
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            return record
    return None


def _chain(records: Sequence[dict[str, Any]], last: dict[str, Any] | None) -> tuple[
        bytes, Checkpoint]:
    """``records`` linked after ``last`` (their seq, prev and hash), encoded, and the
    head the log has once they are written."""
    prev = str(last["hash"]) if last is not None else GENESIS
    seq = int(last.get("seq", 0)) + 1 if last is not None else 0
    lines = []
    for record in records:
        record.update(seq=seq, prev=prev)
        record.pop("hash", None)
        record["hash"] = prev = record_hash(record)
        seq += 1
        lines.append(orjson.dumps(record) + b"\n")
    return b"".join(lines), Checkpoint(seq, prev)


def _append(path: Path, records: Sequence[dict[str, Any]], key: bytes | None,
            anchor: bool) -> tuple[Checkpoint, OSError | None]:
    """Chain ``records`` to the log's last record and append them durably, or
    nothing (a failed write is cut back); then move the checkpoint to the new head.

    All of it under an exclusive lock on the log, so worker processes writing one
    log each continue the chain where the other left it, and the checkpoint only
    moves forward. Returns the head and the error writing the checkpoint, if any.

    Raises:
        OSError: the records were not written.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by closing it
        data, head = _chain(records, _last_in(fd))
        start = os.fstat(fd).st_size
        if start and os.pread(fd, 1, start - 1) != b"\n":
            data = b"\n" + data  # a torn last line: records start on a line of their own
        try:
            view = memoryview(data)
            while view:
                view = view[_write(fd, view):]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # a record cut in two would be torn
                os.ftruncate(fd, start)
            raise
        failed: OSError | None = None
        if anchor:
            # After the log: a crash between the two leaves it behind, never ahead.
            try:
                write_checkpoint(path, head, key)
            except OSError as exc:
                failed = exc
        return head, failed
    finally:
        os.close(fd)


class DecisionLog:
    """Appends chained decision records to ``path``, anchored in its checkpoint."""

    def __init__(
        self, path: Path, *, revision: Callable[[], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None, retry_seconds: float = _RETRY_SECONDS,
        key: bytes | None = None,
    ) -> None:
        self._path = path
        self._revision = revision
        self._clock = clock
        self._metrics = metrics
        self._retry = retry_seconds
        self._key = key
        self._anchor = True  # False: the checkpoint shows a truncation and is kept as evidence
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pending: list[dict[str, Any]] = []  # held by a failed write, written first
        self._writer: asyncio.Task[None] | None = None
        self._prev = GENESIS
        self._seq = 0
        self.lost = 0

    async def open(self) -> None:
        """Continue the chain of an existing log, and start the writer."""
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)
        last = await asyncio.to_thread(_last_record, self._path)
        if last is not None and isinstance(last.get("hash"), str):
            self._prev = last["hash"]
            self._seq = int(last.get("seq", 0)) + 1
        await asyncio.to_thread(self._check_anchor)
        self._set_records(self._seq)
        self._writer = asyncio.create_task(self._write_loop(), name="decision-log-writer")

    def _check_anchor(self) -> None:
        """Refuse to move a checkpoint that the log no longer reaches.

        Continuing a cut log would write a new head over the evidence; the old
        checkpoint stays until an operator who accepts the log removes it.
        """
        try:
            anchor = read_checkpoint(self._path, self._key)
        except CheckpointError as exc:
            logger.error("decision log %s: %s; it is left as it is", self._path, exc)
            self._anchor = False
            return
        if anchor is None:
            return
        if self._seq < anchor.records or (self._seq == anchor.records
                                          and self._prev != anchor.hash):
            logger.error("decision log %s has %d records, its checkpoint %s says %d: records "
                         "were cut off its end; the checkpoint is kept ('stockade log "
                         "verify' reports it) and no longer moved", self._path, self._seq,
                         checkpoint_path(self._path), anchor.records)
            self._anchor = False

    def _set_records(self, count: int) -> None:
        if self._metrics is not None:
            self._metrics.decision_log_records.set(count)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None

    async def record(self, verdict: Verdict, ref: PackageRef, *, client: str,
                     request_id: str, versions: Sequence[str] = (), identity: str = "",
                     team: str | None = None) -> None:
        """Chain and queue one record (the write happens off the loop).

        ``versions``: the versions of ``ref`` that one metadata decision hid by the
        verdict's rule (one record for all of them).
        """
        record: dict[str, Any] = {
            "time": self._clock().isoformat(timespec="milliseconds"),
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "filename": ref.filename, "decision": verdict.decision.value, "rule": verdict.rule,
            "reason": verdict.reason, "target": verdict.target, "audit": verdict.audit_only,
            "client": client, "request_id": request_id, "policy_revision": self._revision(),
        }
        if versions:
            record["versions"] = list(versions)
        if verdict.evidence:
            record["evidence"] = dict(verdict.evidence)
        if identity:
            record["identity"] = identity
        if team:
            record["team"] = team
        if self._queue.qsize() + len(self._pending) >= _QUEUE_MAX:
            self.lost += 1
            if self._metrics is not None:
                self._metrics.decision_log_lost.inc()
            logger.error("decision log: %d records wait to be written; the record for %s "
                         "is dropped", _QUEUE_MAX, ref.display())
            return
        # seq, prev and hash are given as it is written, under the log's lock: other
        # worker processes append to the same chain
        self._queue.put_nowait(record)

    async def _write_loop(self) -> None:
        failing = False
        while True:
            batch: list[dict[str, Any] | None] = []
            with contextlib.suppress(TimeoutError):
                # while writes fail, wake every so often to try again
                batch.append(await asyncio.wait_for(self._queue.get(),
                                                    self._retry if self._pending else None))
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            self._pending += [item for item in batch if item is not None]
            if self._pending:
                try:
                    head, unanchored = await asyncio.to_thread(
                        _append, self._path, self._pending, self._key, self._anchor)
                except OSError as exc:
                    if not failing:  # once an outage, not once a second
                        logger.error("cannot write the decision log %s: %s; %d records "
                                     "held, tried again every %g s", self._path, exc,
                                     len(self._pending), self._retry)
                    failing = True
                else:
                    if failing:
                        logger.warning("decision log %s written again; %d held records "
                                       "written", self._path, len(self._pending))
                    failing = False
                    self._set_records(head.records)
                    if unanchored is not None:
                        logger.error("cannot write the decision log checkpoint %s: %s",
                                     checkpoint_path(self._path), unanchored)
                    self._pending.clear()
                if self._metrics is not None:
                    self._metrics.decision_log_pending.set(len(self._pending))
            if stop:
                if self._pending:
                    self._drop_pending()
                return

    def _drop_pending(self) -> None:
        """At close, with the disk still failing: what is held is lost, and counted."""
        self.lost += len(self._pending)
        if self._metrics is not None:
            self._metrics.decision_log_lost.inc(len(self._pending))
        logger.error("decision log %s: %d records could not be written before closing",
                     self._path, len(self._pending))
        self._pending.clear()


@dataclass(frozen=True, slots=True)
class Verification:
    """What checking a log found."""

    records: int
    last_hash: str
    problems: tuple[str, ...]
    anchor: Checkpoint | None = None  # the checkpoint the log was compared with

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def verify(path: Path, key: bytes | None = None) -> Verification:
    """Check every record's hash, its link to the one before, and the log's
    length against its checkpoint (signed with ``key``, when given).

    Raises:
        FileNotFoundError: there is no log at ``path`` and no checkpoint of one.
    """
    problems: list[str] = []
    try:
        anchor = read_checkpoint(path, key)
    except CheckpointError as exc:
        anchor = None
        problems.append(str(exc))
    if anchor is not None and not path.exists():
        problems.append(f"the log is missing; its checkpoint says {anchor.records} records: "
                        "it was removed")
        return Verification(0, GENESIS, tuple(problems), anchor)
    prev, count, anchored_hash = GENESIS, 0, None
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
        if anchor is not None and count == anchor.records:
            anchored_hash = prev
    problems += _against(anchor, count, anchored_hash)
    return Verification(count, prev, tuple(problems), anchor)


def _against(anchor: Checkpoint | None, count: int, anchored_hash: str | None) -> list[str]:
    """What comparing the log with its checkpoint found (a log may be ahead of it)."""
    if anchor is None or anchor.records == 0:
        return []
    if count < anchor.records:
        return [f"truncated: the log has {count} records, its checkpoint says "
                f"{anchor.records}: records were cut off its end"]
    if anchored_hash != anchor.hash:
        return [f"truncated or rewritten: record {anchor.records} does not have the hash "
                "its checkpoint anchors: the log was cut and written again"]
    return []
