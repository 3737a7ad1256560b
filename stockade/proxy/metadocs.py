"""Metadata documents as the metadata cache holds them, and as their records store them.

Owns the values (``CachedDoc``, a remembered 404 ``Missing``), where a document is
kept (``doc_key``, ``MetadataRecords``) and the conversion of stored records back
into values. A document's ``version`` names its bytes (when they were first fetched,
and their SHA-256), not its freshness. The caching itself is ``metacache``'s.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

_HASH_IN_THREAD_BYTES = 1024 * 1024  # bodies from this size on are hashed off the loop


class CacheResult(enum.StrEnum):
    """How a document was obtained; the metric label."""

    HIT = "hit"
    MISS = "miss"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class CachedDoc:
    """One upstream metadata document as fetched."""

    key: str
    url: str
    body: bytes
    content_type: str
    fetched_at: float
    etag: str | None = None
    last_modified: str | None = None
    result: CacheResult = CacheResult.HIT
    # Set where the body was left on disk (``get(..., body=False)``): its length.
    length: int | None = None
    # When these bytes were first fetched, and their SHA-256 (hex): unlike
    # ``fetched_at``, neither moves when a revalidation finds the same bytes.
    # None in records written before they were kept.
    changed_at: float | None = None
    digest: str | None = None
    # ``version``, made on first use (a warm memo's hit compares it per request; its
    # float formatted cost about 3 us): the fields it is made of never change, and
    # ``replace`` makes a new document, which makes its own.
    _version: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def has_body(self) -> bool:
        """False for a document handed out without its body."""
        return self.length is None

    @property
    def size(self) -> int:
        """The body's length, whether or not it is here."""
        return len(self.body) if self.length is None else self.length

    @property
    def version(self) -> str:
        """Changes whenever the body may have changed (and only then, where its
        digest is known); keys derived caches."""
        made = self._version
        if made is None:
            since = self.fetched_at if self.changed_at is None else self.changed_at
            what = (self.etag or "") if self.digest is None else self.digest[:32]
            made = f"{since:.6f}:{what}:{self.size}"
            object.__setattr__(self, "_version", made)  # (frozen: made once, kept)
        return made


def doc_key(ecosystem: str, upstream: str, url: str, accept: str) -> str:
    """Where a document is kept: one per ecosystem, upstream, URL and Accept header."""
    return f"{ecosystem}|{upstream}|{url}|{accept}"


@dataclass(frozen=True, slots=True)
class Missing:
    """An upstream's remembered 404 (or 410) for one document."""

    key: str
    url: str
    status: int
    fetched_at: float




class MetadataRecords(Protocol):
    """Where documents are kept: a ``RefStore``, or over read-only storage one with
    a scratch folder beside it (``readonly.ScratchRecords``)."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def get_body(self, key: str) -> bytes | None: ...

    async def body_path(self, key: str) -> Path | None: ...

    async def put(self, key: str, doc: dict[str, Any], body: bytes | None = None) -> None: ...


def stored_missing(key: str, record: dict[str, object]) -> Missing | None:
    """The remembered 404 a stored record holds, or None (not one, or unreadable)."""
    try:
        return Missing(key=key, url=str(record["url"]), status=int(record["missing"]),  # type: ignore[call-overload]
                       fetched_at=float(record["fetched_at"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None


def stored_doc(key: str, record: dict[str, object], body: bytes | None,
               length: int | None = None) -> CachedDoc | None:
    """The document a stored record and body hold, or None (no body, or a record
    written by something else)."""
    if body is None:
        return None
    try:
        return CachedDoc(
            key=key, url=str(record["url"]), body=body,
            content_type=str(record["content_type"]),
            fetched_at=float(record["fetched_at"]),  # type: ignore[arg-type]
            etag=record.get("etag"),  # type: ignore[arg-type]
            last_modified=record.get("last_modified"),  # type: ignore[arg-type]
            length=length,
            changed_at=_optional_float(record.get("changed_at")),
            digest=_optional_str(record.get("sha256")),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a record written by something else: fetch afresh


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def sha256_of(body: bytes) -> str:
    """The SHA-256 of ``body`` (hex), a large one's computed off the event loop."""
    if len(body) < _HASH_IN_THREAD_BYTES:
        return hashlib.sha256(body).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(body).hexdigest())


def without_body(doc: CachedDoc) -> CachedDoc:
    """``doc`` as kept in memory when its body is left on disk."""
    return replace(doc, body=b"", length=doc.size, result=CacheResult.HIT)
