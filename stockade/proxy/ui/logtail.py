"""Reading the decision log from its end, for the page's refusals list.

Owns finding the newest records that match a filter, one page at a time, with
bounded memory: the file is read backwards in blocks, only the current line and
the page being filled are held, and a scan stops after ``max_scan_bytes`` (the
page then says how far it got, and its "older" link goes on from there). The
log's own writer is ``decisionlog``; this module only reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

BLOCK = 64 * 1024
MAX_LINE = 1024 * 1024  # a longer line is not a record this server wrote
MAX_SCAN = 64 * 1024**2  # bytes read for one page at most


@dataclass(frozen=True, slots=True)
class Filter:
    """What a record must match to be listed (empty: anything)."""

    ecosystem: str = ""
    rule: str = ""
    team: str = ""
    decision: str = ""
    name: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: dict[str, Any], at: datetime | None) -> bool:
        """Whether ``record`` (written at ``at``) is one to list."""
        if self.ecosystem and record.get("ecosystem") != self.ecosystem:
            return False
        if self.rule and record.get("rule") != self.rule:
            return False
        if self.team and record.get("team") != self.team:
            return False
        if self.decision and record.get("decision") != self.decision:
            return False
        if self.name and self.name.lower() not in str(record.get("name", "")).lower():
            return False
        return self.until is None or (at is not None and at < self.until)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records, newest first, and where the next (older) one starts."""

    records: tuple[dict[str, Any], ...]
    older: int | None  # the byte offset to continue from; None: the log's start was reached
    scanned_bytes: int
    cut_short: bool  # the scan stopped at its bound before the page was full


def _lines_backwards(path: Path, end: int | None) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for each line ending before ``end``, newest first."""
    with path.open("rb") as fh:
        position = fh.seek(0, os.SEEK_END) if end is None else min(end, fh.seek(0, 2))
        pending = b""
        too_long = False
        while position > 0:
            size = min(BLOCK, position)
            position -= size
            fh.seek(position)
            chunk = fh.read(size) + pending
            parts = chunk.split(b"\n")
            pending = parts[0]
            offset = position + len(parts[0]) + 1
            found = []
            for part in parts[1:]:
                found.append((offset, part))
                offset += len(part) + 1
            for item in reversed(found):
                if too_long:
                    too_long = False  # the rest of an overlong line: not a record
                    continue
                yield item
            if len(pending) > MAX_LINE:
                pending, too_long = b"", True
        if pending and not too_long:
            yield 0, pending


def _time(record: dict[str, Any]) -> datetime | None:
    value = record.get("time")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def read_page(path: Path, wanted: Filter, *, limit: int, before: int | None = None,
              max_scan_bytes: int = MAX_SCAN) -> Page:
    """Up to ``limit`` records matching ``wanted``, newest first, from the records
    that end before byte ``before`` (the whole log when None). A missing log is an
    empty page. Blocking: run it off the event loop."""
    records: list[dict[str, Any]] = []
    scanned = 0
    if not path.exists():
        return Page((), None, 0, False)
    for offset, line in _lines_backwards(path, before):
        scanned += len(line) + 1
        if len(records) >= limit:
            return Page(tuple(records), offset + len(line) + 1, scanned, False)
        if scanned > max_scan_bytes:
            return Page(tuple(records), offset + len(line) + 1, scanned, True)
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn line (``stockade log verify`` reports it)
        if not isinstance(record, dict):
            continue
        at = _time(record)
        if wanted.since is not None and at is not None and at < wanted.since:
            return Page(tuple(records), None, scanned, False)  # older ones are older still
        if wanted.matches(record, at):
            records.append(record)
    return Page(tuple(records), None, scanned, False)
