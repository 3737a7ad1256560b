"""What a server over read-only storage does instead of writing.

Owns the decision sink used when the decision log cannot be written: each
record goes to the ``stockade.decisions`` logger as one JSON line (standard
error, where the operator's log collector reads), after one warning that the
log file is not being written. Records are not hash-chained there: the chain
belongs to the file, which a later writable start continues. Also owns the
metadata records fetched while serving read-only storage (``ScratchRecords``),
kept in the server's private temporary folder.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stockade.policy.model import PackageRef, Verdict
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)
decisions_logger = logging.getLogger("stockade.decisions")

SCRATCH_METADATA_MAX_BYTES = 1024**3  # metadata fetched while serving read-only storage


class LoggedDecisions:
    """Decision records as log lines, for a decision log that cannot be written."""

    def __init__(self, path: Path, reason: str, *, revision: Callable[[], str],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._path = path
        self._reason = reason
        self._revision = revision
        self._clock = clock
        self._seq = 0

    async def open(self) -> None:
        """Say, once, where the records go instead."""
        logger.warning("the decision log %s cannot be written (%s): each decision is "
                       "logged on stockade.decisions instead", self._path, self._reason)

    async def close(self) -> None:
        """Nothing is held."""

    async def record(self, verdict: Verdict, ref: PackageRef, *, client: str,
                     request_id: str, versions: Sequence[str] = (), identity: str = "",
                     team: str | None = None) -> None:
        """Log one record with the fields the decision log would hold."""
        record = {
            "seq": self._seq, "time": self._clock().isoformat(timespec="milliseconds"),
            "ecosystem": ref.ecosystem.value, "name": ref.name, "version": ref.version,
            "filename": ref.filename, "decision": verdict.decision.value,
            "rule": verdict.rule, "reason": verdict.reason, "target": verdict.target,
            "audit": verdict.audit_only, "client": client, "request_id": request_id,
            "policy_revision": self._revision(),
        }
        if versions:
            record["versions"] = list(versions)
        if identity:
            record["identity"] = identity
        if team:
            record["team"] = team
        self._seq += 1
        decisions_logger.warning("decision %s", json.dumps(record, sort_keys=True))


class ScratchRecords:
    """Metadata records over read-only storage, with a private scratch folder for
    what is fetched while serving.

    A document fetched or revalidated while the storage cannot be written is kept
    in ``scratch`` (a ``RefStore`` in the server's private temporary folder,
    removed at exit) and read from there before the read-only ``stored`` records,
    so a document too large for the memory cache is not fetched again by each
    request that needs its body. At most ``max_bytes`` of records and bodies are
    kept; the least recently used go first, and their key then reads the stored
    record again (an older copy, or none).
    """

    def __init__(self, stored: RefStore, scratch: RefStore, *,
                 max_bytes: int = SCRATCH_METADATA_MAX_BYTES) -> None:
        self._stored = stored
        self._scratch = scratch
        self._max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # key -> bytes in scratch
        self._used = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        """The record fetched since start, else the stored one."""
        if key in self._sizes:
            record = await self._scratch.get(key)
            if record is not None:
                self._sizes.move_to_end(key)
                return record
        return await self._stored.get(key)

    async def get_body(self, key: str) -> bytes | None:
        """The body fetched since start, else the stored one (a revalidated
        document keeps its stored body)."""
        if key in self._sizes:
            body = await self._scratch.get_body(key)
            if body is not None:
                return body
        return await self._stored.get_body(key)

    async def body_path(self, key: str) -> Path | None:
        """The file ``get_body`` reads, or None."""
        if key in self._sizes:
            path = await self._scratch.body_path(key)
            if path is not None:
                return path
        return await self._stored.body_path(key)

    async def put(self, key: str, doc: dict[str, Any], body: bytes | None = None) -> None:
        """Keep a record (and its body) in the scratch folder, within the bound.

        Raises:
            StorageError: the scratch folder could not be written.
        """
        size = len(orjson.dumps(doc)) + (len(body) if body is not None else 0)
        if body is None and key in self._sizes:
            size = max(size, self._sizes[key])  # the body written before stays
        if size > self._max_bytes:
            await self._drop(key)
            return
        await self._scratch.put(key, doc, body)
        self._used += size - self._sizes.pop(key, 0)
        self._sizes[key] = size
        while self._used > self._max_bytes:
            await self._drop(next(iter(self._sizes)))

    async def _drop(self, key: str) -> None:
        self._used -= self._sizes.pop(key, 0)
        await self._scratch.delete(key)
