"""Small named records at rest: which blob an artifact is, cached metadata.

Owns ``<root>/refs/<namespace>/<ab>/<sha256 of key>.json`` (and ``.body`` for
metadata documents), each replaced atomically. It does not interpret records.
``RefStore`` is the local-disk ``RecordStore``: ``put_if_absent`` creates a
record with a hard link (which fails if one exists) and ``update`` holds a
lock file, so worker processes sharing the folder agree as replicas do.
Over read-only storage (``read_only``), records are read and nothing is
written: a write answers as if it had been made, and the caller keeps what it
needs in memory (the metadata cache, first-seen times) for as long as it runs.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import itertools
import os
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from stockade.storage.errors import StorageError, StorageFullError
from stockade.storage.records import Merge, Record


def _atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``path`` whole or not at all; with ``exclusive``, only where it does not
    exist (False then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails where a record exists
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


_MEMO_RECORDS = 4096  # records of a namespace kept parsed in memory
# (st_ino, st_size, st_mtime_ns, st_ctime_ns): every write replaces the file.
_Identity = tuple[int, int, int, int]


def _identity(path: str) -> _Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _storage_error(exc: OSError) -> StorageError:
    if exc.errno in (28, 122):  # ENOSPC, EDQUOT
        return StorageFullError("the storage disk is full")
    return StorageError(f"cannot write record: {exc.strerror}")


class RefStore:
    """Records keyed by strings, in one namespace (``artifacts``, ``metadata``)."""

    def __init__(self, root: Path, namespace: str, *, read_only: bool = False) -> None:
        self._dir = root / "refs" / namespace
        # key -> (the file's identity when read, the record): a warm request reads
        # its records without a thread hop, while a record another process
        # replaced (a new file) is read again.
        self._memo: OrderedDict[str, tuple[_Identity, dict[str, Any]]] = OrderedDict()
        self._dir_text = str(self._dir)
        self._read_only = read_only

    def _path(self, key: str, suffix: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self._dir / name[:2] / f"{name}{suffix}"

    async def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        # One stat of a local file on the loop costs about a microsecond, a
        # thread hop tens of them: only a changed or new record is read in a thread.
        # _path's, with strings: pathlib's joins cost more than the stat
        name = hashlib.sha256(key.encode()).hexdigest()
        seen = _identity(f"{self._dir_text}/{name[:2]}/{name}.json")
        if seen is None:
            self._memo.pop(key, None)
            return None
        memo = self._memo.get(key)
        if memo is not None and memo[0] == seen:
            self._memo.move_to_end(key)
            return dict(memo[1])
        doc = await asyncio.to_thread(self.read, key)
        if doc is None:
            self._memo.pop(key, None)
            return None
        # The identity seen before reading: a file replaced meanwhile differs next time.
        self._memo[key] = (seen, doc)
        self._memo.move_to_end(key)
        if len(self._memo) > _MEMO_RECORDS:
            self._memo.popitem(last=False)
        return dict(doc)

    def read(self, key: str) -> dict[str, Any] | None:
        """``get``, synchronous: for maintenance commands."""
        try:
            doc = orjson.loads(self._path(key, ".json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None
        return doc

    async def put(self, key: str, doc: dict[str, Any], body: bytes | None = None) -> None:
        """Store a record (and a body beside it) atomically.

        Raises:
            StorageFullError: the disk is full.
            StorageError: any other write failure.
        """
        if self._read_only:
            return
        data = orjson.dumps({**doc, "key": key})
        try:
            await asyncio.to_thread(self._put, key, data, body)
        except OSError as exc:
            raise _storage_error(exc) from exc

    async def put_if_absent(self, key: str, doc: Record) -> Record:
        """Store ``doc`` unless a record exists; the record stored either way.

        Raises:
            StorageError: the record could not be written.
        """
        if self._read_only:
            return await self.get(key) or {**doc, "key": key}
        try:
            return await asyncio.to_thread(self._put_if_absent, key, {**doc, "key": key})
        except OSError as exc:
            raise _storage_error(exc) from exc

    def _put_if_absent(self, key: str, doc: Record) -> Record:
        if _atomic_write(self._path(key, ".json"), orjson.dumps(doc), exclusive=True):
            return doc
        existing = self.read(key)
        if existing is not None:
            return existing
        # What is there cannot be read (a crash mid-write of an old version):
        # replace it under the lock, as an update would.
        return self._update(key, lambda current: current or doc)

    async def update(self, key: str, merge: Merge) -> Record:
        """Replace the record with ``merge(current)`` under a lock file.

        Raises:
            StorageError: the record could not be written.
        """
        if self._read_only:
            return {**merge(await self.get(key)), "key": key}
        try:
            return await asyncio.to_thread(self._update, key, merge)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def _update(self, key: str, merge: Merge) -> Record:
        self._dir.mkdir(parents=True, exist_ok=True)
        with (self._dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            current = self.read(key)
            doc = {**merge(current), "key": key}
            if doc != current:
                _atomic_write(self._path(key, ".json"), orjson.dumps(doc))
            return doc

    def _put(self, key: str, data: bytes, body: bytes | None) -> None:
        # Body first: a record never points at a body that is not there yet.
        if body is not None:
            _atomic_write(self._path(key, ".body"), body)
        _atomic_write(self._path(key, ".json"), data)

    async def get_body(self, key: str) -> bytes | None:
        """The body stored with ``key``, or None."""
        return await asyncio.to_thread(self.read_body, key)

    async def body_path(self, key: str) -> Path | None:
        """The file of the body stored with ``key`` (for another process to read), or
        None. Bodies are replaced whole (``os.replace``): one opened stays as it was."""
        path = self._path(key, ".body")
        return path if await asyncio.to_thread(path.is_file) else None

    def read_body(self, key: str) -> bytes | None:
        """``get_body``, synchronous: for maintenance commands."""
        try:
            return self._path(key, ".body").read_bytes()
        except FileNotFoundError:
            return None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of the namespace (synchronous: for maintenance commands)."""
        if not self._dir.is_dir():
            return
        for path in sorted(self._dir.glob("*/*.json")):
            try:
                doc = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(doc, dict):
                yield doc

    async def iter_records(self) -> AsyncIterator[Record]:
        """Every record of the namespace, read off the loop a batch at a time (the
        web page's cache list walks them all: never all in memory at once)."""
        found = self.records()
        while batch := await asyncio.to_thread(lambda: list(itertools.islice(found, 512))):
            for doc in batch:
                yield doc

    async def delete(self, key: str) -> None:
        """Remove a record and its body."""
        if self._read_only:
            return
        for suffix in (".json", ".body"):
            await asyncio.to_thread(self._path(key, suffix).unlink, missing_ok=True)
