"""The page's view of what is cached: artifact records, searched and paged.

Owns reading the ``artifacts`` records (what every replica shares) one at a
time, keeping only the page asked for (or, sorted by size, the largest records
up to that page), and adding to the rows shown when each was last served (the
blob's time of last use where the store keeps it on local disk) and the
provenance the server verified for the version. It never reads a blob's bytes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stockade.policy.model import Ecosystem, PackageRef
from stockade.proxy.provenance.checker import ProvenanceChecker
from stockade.storage.protocol import BlobStore
from stockade.storage.records import RecordStore

MAX_OFFSET = 10_000  # deeper pages would hold too many records when sorted


@dataclass(frozen=True, slots=True)
class Query:
    """What to list: a name fragment, an ecosystem, a least size, and the order."""

    name: str = ""
    ecosystem: str = ""
    min_size: int = 0
    largest_first: bool = False

    def matches(self, record: dict[str, Any]) -> bool:
        if self.ecosystem and record.get("ecosystem") != self.ecosystem:
            return False
        if self.name and self.name.lower() not in str(record.get("name") or "").lower():
            return False
        size = record.get("size")
        return isinstance(size, int) and size >= self.min_size


@dataclass(frozen=True, slots=True)
class Row:
    """One cached file as the page lists it."""

    ecosystem: str
    name: str
    version: str
    filename: str
    size: int
    upstream: str
    sha256: str
    last_served: datetime | None
    provenance: str
    # False where the record stays but its bytes are gone (purged, evicted): the
    # next request fetches the file again
    stored: bool = True


@dataclass(frozen=True, slots=True)
class Listing:
    rows: tuple[Row, ...]
    matched: int
    total_bytes: int


def _last_used(store: BlobStore, sha256: str) -> datetime | None:
    path = store.local_path(sha256)
    if path is None:
        return None
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    except OSError:
        return None


async def _provenance(checker: ProvenanceChecker | None, record: dict[str, Any]) -> str:
    eco, name, version = record.get("ecosystem"), record.get("name"), record.get("version")
    if checker is None or not all(isinstance(v, str) for v in (eco, name, version)):
        return "unknown"
    try:
        known = await checker.known_version(PackageRef(Ecosystem(str(eco)), str(name),
                                                       str(version)))
    except ValueError:
        return "unknown"
    if not known:
        return "not checked"
    return ", ".join(f"{r.kind.value} {r.result.value}" for r in known)


async def listing(records: RecordStore, store: BlobStore, checker: ProvenanceChecker | None,
                  query: Query, *, offset: int, limit: int) -> Listing:
    """The page of cached files ``query`` asks for, and how many matched in all."""
    offset = min(max(offset, 0), MAX_OFFSET)
    kept: list[tuple[int, int, dict[str, Any]]] = []  # (size, arrival, record)
    matched = total = 0
    order = itertools.count()
    async for record in records.iter_records():
        if not query.matches(record):
            continue
        matched += 1
        total += int(record["size"])
        if query.largest_first:
            entry = (int(record["size"]), -next(order), record)
            if len(kept) < offset + limit:
                heapq.heappush(kept, entry)
            else:
                heapq.heappushpop(kept, entry)
        elif offset < matched <= offset + limit:
            kept.append((0, 0, record))
    chosen = [r for _, _, r in (sorted(kept, reverse=True)[offset:] if query.largest_first
                                else kept)]
    rows = []
    for record in chosen:
        sha256 = str(record.get("sha256") or "")
        rows.append(Row(
            ecosystem=str(record.get("ecosystem") or ""), name=str(record.get("name") or ""),
            version=str(record.get("version") or ""),
            filename=str(record.get("filename") or ""), size=int(record["size"]),
            upstream=str(record.get("upstream") or ""), sha256=sha256,
            last_served=await asyncio.to_thread(_last_used, store, sha256) if sha256 else None,
            provenance=await _provenance(checker, record),
            stored=bool(sha256) and await store.stat(sha256) is not None))
    return Listing(tuple(rows), matched, total)
