"""Small named records at rest: which blob an artifact is, cached metadata.

Owns ``<root>/refs/<namespace>/<ab>/<sha256 of key>.json`` (and ``.body`` for
metadata documents), each replaced atomically. It does not interpret records.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from stockade.storage.errors import StorageError, StorageFullError


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class RefStore:
    """Records keyed by strings, in one namespace (``artifacts``, ``metadata``)."""

    def __init__(self, root: Path, namespace: str) -> None:
        self._dir = root / "refs" / namespace

    def _path(self, key: str, suffix: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self._dir / name[:2] / f"{name}{suffix}"

    async def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        return await asyncio.to_thread(self.read, key)

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
        data = orjson.dumps({**doc, "key": key})
        try:
            await asyncio.to_thread(self._put, key, data, body)
        except OSError as exc:
            if exc.errno in (28, 122):  # ENOSPC, EDQUOT
                raise StorageFullError("the storage disk is full") from exc
            raise StorageError(f"cannot write record: {exc.strerror}") from exc

    def _put(self, key: str, data: bytes, body: bytes | None) -> None:
        # Body first: a record never points at a body that is not there yet.
        if body is not None:
            _atomic_write(self._path(key, ".body"), body)
        _atomic_write(self._path(key, ".json"), data)

    async def get_body(self, key: str) -> bytes | None:
        """The body stored with ``key``, or None."""
        return await asyncio.to_thread(self.read_body, key)

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

    async def delete(self, key: str) -> None:
        """Remove a record and its body."""
        for suffix in (".json", ".body"):
            await asyncio.to_thread(self._path(key, suffix).unlink, missing_ok=True)
