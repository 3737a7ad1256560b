"""The artifact pipeline shared by every ecosystem.

Owns serving an artifact whose upstream URL and expected digests an ecosystem
module has already worked out: from storage when a verified copy exists (small
blobs re-hashed before they are served, a changed or vanished one fetched
again), otherwise through one upstream fetch per artifact (single-flight) that
spools to a blob writer while hashing; an offline upstream's artifact that is
not stored fails at once, as any does over read-only storage. Every client
waiting for the artifact tails the spool file, so memory stays bounded
whatever the size and however many wait. The last chunk is held back until the
digest has been checked and the blob committed: on a mismatch every client's
response is aborted before it is whole, and nothing is stored.

A fill may be header-first (``opened``): its upstream response is opened, under
the same single-flight and lock file, before the expected digest is known; the
ecosystem decides it from the response's headers (a hook), its requests decide
on the head (admission), and the first that goes on streams that response. Its
404s are kept in the metadata cache's memory of them, shared by the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.policy.model import Ecosystem, Facts
from stockade.proxy.blobresponse import (
    BlobResponse,
    accel_response,
    entity_tag,
    memory_response,
)
from stockade.proxy.budget import BudgetedLRU, MemoryBudget
from stockade.proxy.errors import (
    IntegrityError,
    NotCachedError,
    ProxyError,
    UpstreamBodyError,
    UpstreamError,
    UpstreamStatusError,
)
from stockade.proxy.hotblobs import HotBlobs
from stockade.proxy.identity import Identity, identity_of
from stockade.proxy.metrics import Metrics
from stockade.proxy.prepared import PreparedHead, PreparedResponse
from stockade.proxy.singleflight import FileLocks
from stockade.proxy.upstream import Upstream, UpstreamResponse
from stockade.proxy.warmrecord import note
from stockade.storage.digest import Digest, MultiHasher
from stockade.storage.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    ReadOnlyStorageError,
    StorageError,
)
from stockade.storage.protocol import BlobInfo, BlobStore, BlobWriter
from stockade.storage.records import RecordStore
from stockade.storage.verify import (
    TRUSTED_ENTRY_BYTES,
    TRUSTED_MAX,
    BlobState,
    ReadVerifier,
    Trusted,
)

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024  # bytes read from the spool per write to a client


class StoredHeaders(NamedTuple):
    """An answer's headers from storage, made once for a warm memo's entry."""

    stored: dict[str, str]  # before the answer adds its own (copied per answer)
    whole: dict[str, str]  # of a 200 with the whole blob from memory
    prepared: PreparedHead | None = None  # the same, serialized (None: aiohttp's way)


@dataclass(frozen=True, slots=True)
class ArtifactSource:
    """Everything the pipeline needs to serve one artifact.

    ``expected`` comes from trusted upstream metadata (the index page, the
    packument, the checksum file). An empty tuple means the ecosystem module has
    already decided to accept unverified bytes.
    """

    ecosystem: Ecosystem
    upstream: Upstream
    url: str
    key: str
    filename: str
    expected: tuple[Digest, ...]
    algorithms: tuple[str, ...] = ()
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    # digests sent as X-Checksum-<Alg> headers (Maven's resolver reads them and skips
    # the checksum-file round trips): from storage, every one recorded; streamed
    # while fetched, those of ``expected``
    checksum_headers: tuple[str, ...] = ()
    name: str | None = None  # package name and version, recorded for `stockade audit`
    version: str | None = None
    # More facts kept in the artifact's record when it is stored (Maven's publish
    # date), for deciding warm requests without asking the upstream again.
    recorded: Mapping[str, Any] = field(default_factory=dict)
    # The header-first fill whose opened response this source was decided on
    # (``ArtifactPipeline.opened``): serving or ensuring it streams that response.
    opened: Fill | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """A stored, verified artifact and the record written when it was stored
    (empty where it was found by a published sha256 alone)."""

    info: BlobInfo
    record: Mapping[str, Any]
    # its verified bytes, where checking it read them (held in memory or not)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Accel:
    """Front-server mode: stored files under ``root`` are named to the front server
    as ``prefix`` + their path below ``root`` (``X-Accel-Redirect``)."""

    root: Path
    prefix: str

    def location(self, path: Path) -> str | None:
        """Where the front server finds ``path``; None when it is not under ``root``."""
        base = str(self.root).rstrip("/") + "/"
        text = str(path)
        return self.prefix + text[len(base):] if text.startswith(base) else None


class Outcome(enum.Enum):
    """What a header-first fill found before anything was decided on the artifact."""

    OPEN = "open"  # the upstream response is open: decide, then serve or ensure it
    STORED = "stored"  # stored (by an earlier fill, here or in another worker process)
    MISSING = "missing"  # the upstream answered 404 or 410 (now, or remembered)


@dataclass(frozen=True, slots=True)
class Head:
    """A header-first fill's answer, the same for every request that asked for it."""

    outcome: Outcome
    # OPEN: the source ``decide`` made of the response (``serve``/``ensure`` fill
    # from it); otherwise the source asked for
    source: ArtifactSource
    status: int | None = None  # the upstream's status (OPEN, MISSING)
    headers: CIMultiDictProxy[str] = field(  # the response's (OPEN)
        default_factory=lambda: CIMultiDictProxy(CIMultiDict()))
    stored: StoredArtifact | None = None  # STORED


class Misses(Protocol):
    """The shared memory of upstream 404s (``MetadataCache``: every worker process,
    across restarts), where a header-first fill keeps the artifacts it found missing."""

    async def missing(self, ecosystem: str, upstream: Upstream, url: str, *,
                      stale_s: float | None = None) -> int | None: ...

    async def remember_missing(self, ecosystem: str, upstream: Upstream, url: str,
                               status: int) -> None: ...

    async def found(self, ecosystem: str, upstream: Upstream, url: str,
                    last_modified: str | None = None) -> None: ...


# An ecosystem's decision on an opened response (the source asked for, and the
# response's headers): the source to fill with, its ``expected`` digests set.
Decide = Callable[[ArtifactSource, CIMultiDictProxy[str]], Awaitable[ArtifactSource]]


class Opening:
    """A header-first fill's state before its body is read: the requests that wait
    for its head, and whether one of them went on to take the response."""

    def __init__(self, decide: Decide, misses: Misses, stale_if_error_s: float) -> None:
        self.decide = decide
        self.misses = misses
        self.stale_if_error_s = stale_if_error_s
        self.head: Head | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()  # ``head`` or ``error`` is set
        self.users = 0
        self.went = False  # a request went on to serve or ensure it
        self.closing = False  # every request left it untaken: none may join
        self._moved = asyncio.Event()

    def settle(self, head: Head) -> None:
        self.head = head
        self.ready.set()

    def go(self) -> None:
        self.went = True
        self._moved.set()

    def leave(self) -> None:
        self.users -= 1
        if self.users <= 0 and not self.went:
            self.closing = True
            self._moved.set()

    async def taken(self) -> bool:
        """Wait until a request takes the response (True) or every one left (False)."""
        await self._moved.wait()
        return self.went


class Fill:
    """One upstream fetch into storage, watched by any number of clients."""

    def __init__(self, source: ArtifactSource, opening: Opening | None = None) -> None:
        self.source = source
        self.opening = opening  # header-first: its head is answered before the body
        self.writer: BlobWriter | None = None
        self.spool_path: str | None = None
        self.content_length: int | None = None
        self.visible = 0  # bytes every reader may send
        # the bytes read so far, as read, for a fill no larger than a blob held in
        # memory: its readers send these rather than read the spool back (None: tail
        # the spool)
        self.chunks: list[bytes] | None = None
        self.info: BlobInfo | None = None
        self.error: BaseException | None = None
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.done = asyncio.Event()  # its task ended (it is no longer joined)
        self._tick = asyncio.Event()

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def changed(self) -> None:
        """Wait until more bytes are visible or the fill ends."""
        await self._tick.wait()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        if self.opening is not None and not self.opening.ready.is_set():
            self.opening.error = exc
            self.opening.ready.set()
        self.started.set()
        self.finished.set()
        self._notify()

    def found(self, info: BlobInfo) -> None:
        """Found stored when the fill began: nothing is fetched."""
        self.info = info
        self.visible = info.size
        self.started.set()
        self.finished.set()
        self._notify()


class ArtifactPipeline:
    """Serve artifacts from storage, filling it from upstreams once per artifact."""

    def __init__(
        self,
        store: BlobStore,
        index: RecordStore,
        metrics: Metrics,
        *,
        max_artifact_bytes: int,
        verify_on_read_max_bytes: int = 0,
        hot: HotBlobs | None = None,
        accel: Accel | None = None,
        locks: FileLocks | None = None,
        verify_on_read_trust_s: float = 0.0,
        read_only: str | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._locks = locks  # one fill per artifact across worker processes
        self._store = store
        self._index = index
        self._metrics = metrics
        # bytes_served's children by (ecosystem, origin): labels() locks and checks
        self._bytes_served: dict[tuple[str, str], Any] = {}
        self._max_bytes = max_artifact_bytes
        self._hot = hot
        self._accel = accel
        # the files hashed right, remembered: weighed with the process's other caches
        # (every small blob served is remembered, not only those the memory drops)
        trusted: Trusted | None = None if budget is None else BudgetedLRU(
            TRUSTED_MAX * TRUSTED_ENTRY_BYTES, lambda _entry: TRUSTED_ENTRY_BYTES, budget,
            "trusted files")
        self._verifier = ReadVerifier(
            store, max_bytes=verify_on_read_max_bytes, trust_s=verify_on_read_trust_s,
            trusted=trusted,
            on_hashed=lambda ok: metrics.blob_verifications.labels(
                "read", "ok" if ok else "mismatch").inc())
        if hot is not None:
            hot.on_verified = self._verifier.hashed
        self._read_only = read_only  # why storage cannot be written: nothing is fetched
        self._fills: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of each artifact a GET was answered with (the served-artifacts record):
        # the client's address, its identity (None: anonymous), what was sent.
        self.on_served: Callable[[str, Identity | None, ArtifactSource, BlobInfo],
                                 None] | None = None

    @property
    def accel(self) -> Accel | None:
        """Front-server mode's settings, where it is on (rendered documents use it too)."""
        return self._accel

    async def lookup(self, source: ArtifactSource) -> BlobInfo | None:
        """The stored, verified blob for ``source``, if there is one, with every digest
        known of it (recorded when it was stored, or published by the upstream)."""
        found = await self.stored(source)
        return None if found is None else found.info

    async def stored(self, source: ArtifactSource) -> StoredArtifact | None:
        """``lookup`` with the artifact's record: found by the published sha256, or by
        ``source.key`` (whose record must agree with any digest ``source`` expects).

        A stored blob that no longer holds its bytes (changed on disk, or removed
        by ``stockade cache verify`` meanwhile) is dropped and counts as not stored.
        """
        by_alg = {d.algorithm: d.hex for d in source.expected}
        recorded: dict[str, str] = {}
        record: dict[str, Any] = {}
        sha256 = by_alg.get("sha256")
        if sha256 is None:
            found = await self._index.get(source.key)
            if found is None:
                return None
            record = found
            recorded = {k: v for k, v in (record.get("digests") or {}).items()
                        if isinstance(v, str)}
            if any(recorded.get(alg) != hexval for alg, hexval in by_alg.items()):
                return None  # the upstream now publishes other bytes under this name
            sha256 = record.get("sha256")
            if not isinstance(sha256, str):
                return None
        info = await self._store.stat(sha256)
        if info is None:
            return None
        # Bytes held in memory were hashed when read, from this very file.
        intact, body = await self.still_held(source, info)
        if not intact:
            return None
        return StoredArtifact(BlobInfo(sha256, info.size, {**recorded, **by_alg, "sha256": sha256}),
                              record, body)

    def _held(self, info: BlobInfo) -> bytes | None:
        """The verified bytes ``hotblobs`` holds for ``info``, if its file is unchanged."""
        return None if self._hot is None else self._hot.get(info.sha256)

    async def _still_intact(self, source: ArtifactSource,
                            info: BlobInfo) -> tuple[bool, bytes | None]:
        """Blobs ``hotblobs`` takes are read whole, hashed and held; once dropped from
        memory, read again without a hash while their file is the one they hashed
        from (within the trust window), and not held: the bytes are answered and
        freed. Other small blobs are re-hashed (off the loop, and only when their file
        may have changed); of larger ones, only that they are still there is checked.
        Returns whether it may be served, and the verified bytes where they were read."""
        path = self._store.local_path(info.sha256)
        if self._hot is not None and path is not None and self._hot.takes(info.size):
            body = await self._verifier.read_trusted(info.sha256, path)
            if body is not None:
                return True, body
            try:
                body = await self._hot.load(self._store, info.sha256, path)
            except BlobNotFoundError:
                logger.warning("stored %s (blob %s) was removed from storage; fetching it "
                               "again", source.filename, info.sha256)
                return False, None
            if body is not None:
                return True, body
            logger.warning("stored %s (blob %s) no longer matches its digest; "
                           "deleting it and fetching it again", source.filename, info.sha256)
            await self._store.delete(info.sha256)
            return False, None
        state = await self._verifier.check(info)
        if state is BlobState.CHANGED:
            logger.warning("stored %s (blob %s) no longer matches its digest; "
                           "deleting it and fetching it again", source.filename, info.sha256)
            await self._store.delete(info.sha256)
        elif state is BlobState.GONE:
            logger.warning("stored %s (blob %s) was removed from storage; fetching it again",
                           source.filename, info.sha256)
        return state is BlobState.INTACT, None

    def respond(
        self, request: web.Request, source: ArtifactSource, stored: StoredArtifact
    ) -> web.StreamResponse:
        """Answer a GET or HEAD from a stored artifact ``stored`` found for ``source``
        (a GET recorded as served, as ``serve`` records it)."""
        taken = note()
        if taken is not None:
            taken.answered(source, stored.info, True)
        self._served(request, source, stored.info)
        return self._from_store(request, source, stored.info, "cache", stored.body)

    async def still_stored(self, source: ArtifactSource, info: BlobInfo) -> bool:
        """Whether ``info``, found stored for ``source`` by an earlier request, may
        still be served: held in memory with its file unchanged, or checked as
        ``stored`` checks it (re-hashed, trusted or stat'ed per ``verify_on_read_*``)."""
        return (await self.still_held(source, info))[0]

    async def still_held(self, source: ArtifactSource,
                         info: BlobInfo) -> tuple[bool, bytes | None]:
        """``still_stored``, and the verified bytes it found (held in memory, or read
        to check them; None: not read), for ``answer_stored`` to answer with rather
        than look them up or read them again."""
        held = self._held(info)
        if held is not None:
            return True, held
        return await self._still_intact(source, info)

    def answer_stored(self, request: web.Request, source: ArtifactSource, info: BlobInfo,
                      recorded: bool, held: bytes | None = None, *,
                      headers: StoredHeaders | None = None) -> web.StreamResponse:
        """Answer from ``info`` as ``serve`` (``recorded``) or ``respond`` answered an
        earlier request for it, once ``still_stored`` said it may be (``held``: the
        bytes ``still_held`` found, checked by it in this request; ``headers``: what
        ``stored_headers`` made for it before)."""
        if recorded:
            self._served(request, source, info)
        if self._whole_from_memory(request, headers, held):
            # the whole blob from memory, as memory_response answers it, headers made
            assert headers is not None
            assert held is not None
            self._count_bytes(request, source.ecosystem, "cache", info.size)
            if headers.prepared is not None:
                return PreparedResponse(headers.prepared, held)
            return web.Response(body=held, headers=headers.whole)
        return self._from_store(request, source, info, "cache", held,
                                None if headers is None else headers.stored)

    def _whole_from_memory(self, request: web.BaseRequest, headers: StoredHeaders | None,
                           held: bytes | None) -> bool:
        return (headers is not None and held is not None and self._accel is None
                and hdrs.RANGE not in request.headers
                and hdrs.IF_NONE_MATCH not in request.headers)

    def held_prepared(self, request: web.BaseRequest, info: BlobInfo,
                      headers: StoredHeaders | None) -> bytes | None:
        """The bytes ``still_held`` would find for ``info`` without a coroutine (held in
        memory, their file unchanged), where ``answer_stored`` would answer ``request``
        with them and ``headers`` as a ``PreparedResponse``; else None."""
        if hdrs.RANGE in request.headers or hdrs.IF_NONE_MATCH in request.headers:
            return None
        return self.held_plain(info, headers)

    def held_plain(self, info: BlobInfo, headers: StoredHeaders | None) -> bytes | None:
        """``held_prepared`` for a GET without ``Range`` or ``If-None-Match`` (bytes of
        the length the prepared head says, or None)."""
        if headers is None or headers.prepared is None or self._accel is not None:
            return None
        held = self._held(info)
        return held if held is not None and len(held) == headers.prepared.length else None

    def answer_plain(self, source: ArtifactSource, info: BlobInfo, recorded: bool,
                     headers: StoredHeaders, client: str) -> PreparedHead:
        """``answer_stored`` for an anonymous GET from ``client`` without ``Range`` or
        ``If-None-Match``, once ``held_plain`` found the bytes (so ``headers`` are
        prepared): recorded and counted as it does, the answer's head to send with
        them (what the connection's fast path answers without a request)."""
        assert headers.prepared is not None
        if recorded and self.on_served is not None:
            self.on_served(client, None, source, info)
        self._count_get_bytes(source.ecosystem, "cache", info.size)
        return headers.prepared

    def stored_headers(self, source: ArtifactSource, info: BlobInfo) -> StoredHeaders:
        """The headers of an answer from storage for ``source``, stored as ``info``:
        before the answer adds its own, and those of the whole blob from memory."""
        headers = {"Content-Type": source.content_type, **source.headers}
        for alg in source.checksum_headers:
            if alg in info.digests:
                headers[f"X-Checksum-{alg.capitalize()}"] = info.digests[alg]
        whole = {**headers, "X-Stockade-Cache": "hit", "ETag": entity_tag(info.sha256),
                 "Accept-Ranges": "bytes"}
        return StoredHeaders(headers, whole)

    def _count_bytes(self, request: web.Request, ecosystem: str, origin: str,
                     size: int) -> None:
        if request.method != "HEAD":
            self._count_get_bytes(ecosystem, origin, size)

    def _count_get_bytes(self, ecosystem: str, origin: str, size: int) -> None:
        counter = self._bytes_served.get((ecosystem, origin))
        if counter is None:
            counter = self._bytes_served[ecosystem, origin] = \
                self._metrics.bytes_served.labels(ecosystem, origin)
        self._metrics.tally.inc(counter, size)

    async def admitted(self, source: ArtifactSource) -> dict[str, str] | None:
        """The digests of the file stockade admitted before under ``source.key``
        (algorithm -> lower hex), or None when it never stored one."""
        record = await self._index.get(source.key)
        if record is None:
            return None
        digests = {k: v.lower() for k, v in (record.get("digests") or {}).items()
                   if isinstance(k, str) and isinstance(v, str)}
        if isinstance(record.get("sha256"), str):
            digests["sha256"] = record["sha256"].lower()
        return digests or None

    async def with_admitted(self, source: ArtifactSource, facts: Facts) -> Facts:
        """``facts`` with what the upstream publishes for the file now and what
        stockade admitted before, so the ``republished`` rule can compare them.

        Deciding on this before ``serve`` is what keeps a file swapped behind its
        name (new bytes, new published digest) from being fetched and re-cached:
        ``lookup`` alone would only see a digest it has not stored and fetch it.
        """
        return dataclasses.replace(
            facts, admitted_digests=await self.admitted(source),
            digests={d.algorithm: d.hex for d in source.expected})

    async def ensure(self, source: ArtifactSource) -> BlobInfo:
        """Make sure the artifact is stored, fetching it if needed.

        Raises:
            ProxyError: the upstream failed or the bytes did not verify.
        """
        info = await self.lookup(source)
        if info is not None:
            return info
        fill = self._fill_for(source)
        await fill.finished.wait()
        if fill.error is not None:
            raise fill.error
        assert fill.info is not None
        return fill.info

    async def content(self, info: BlobInfo) -> bytes:
        """A stored blob's bytes (bounded by ``max_artifact_bytes``): for checks that
        need them whole, such as an OpenPGP signature over a Maven artifact.

        Raises:
            BlobNotFoundError: the blob is no longer stored.
        """
        parts = [chunk async for chunk in self._store.read(info.sha256)]
        return b"".join(parts)

    async def digest(self, info: BlobInfo, algorithm: str) -> str:
        """Another digest of a stored blob (one its record lacks), hashed from storage.

        Raises:
            BlobNotFoundError: the blob is no longer stored.
        """
        hasher = MultiHasher([algorithm])
        async for chunk in self._store.read(info.sha256):
            hasher.update(chunk)
        return hasher.digests()[algorithm].hex

    async def serve(self, request: web.Request, source: ArtifactSource) -> web.StreamResponse:
        """Answer a GET or HEAD (with or without Range) for one artifact."""
        found = await self.stored(source)
        taken = note()
        if found is not None:
            info = found.info
            if taken is not None:
                taken.answered(source, info, True)
            self._served(request, source, info)
            return self._from_store(request, source, info, "cache", found.body)
        if taken is not None:
            taken.spoil()  # fetched: the next request finds it stored
        if request.method == "HEAD" or request.http_range.start is not None:
            # A ranged or HEAD request needs the whole verified file first.
            info = await self.ensure(source)
            self._served(request, source, info)
            return self._from_store(request, source, info, "upstream")
        fill = self._fill_for(source)
        response = await self._tail(request, fill)
        if fill.info is not None:
            self._served(request, source, fill.info)
        return response

    def _served(self, request: web.Request, source: ArtifactSource, info: BlobInfo) -> None:
        if self.on_served is not None and request.method == "GET":
            self.on_served(request.remote or "", identity_of(request), source, info)

    def _from_store(
        self, request: web.Request, source: ArtifactSource, info: BlobInfo, origin: str,
        held: bytes | None = None, prebuilt: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        headers = (self.stored_headers(source, info).stored if prebuilt is None
                   else prebuilt.copy())
        self._count_bytes(request, source.ecosystem, origin, info.size)
        headers["X-Stockade-Cache"] = "hit" if origin == "cache" else "miss"
        if self._accel is None and (body := held or self._held(info)) is not None:
            return memory_response(request, body, info.sha256, headers)
        path = self._store.local_path(info.sha256)
        if path is None:  # no local copy (object storage): stream it from the store
            return BlobResponse(self._store, info, headers)
        if self._accel is not None and (where := self._accel.location(path)) is not None:
            return accel_response(request, where, entity_tag(info.sha256), headers)
        return web.FileResponse(path, headers=headers)

    @contextlib.asynccontextmanager
    async def opened(self, source: ArtifactSource, decide: Decide, misses: Misses, *,
                     stale_if_error_s: float) -> AsyncIterator[Head]:
        """A header-first fill of ``source``: its upstream response opened, once for
        every request asking at once (and, with the lock files, once across the
        worker processes), before anything is decided on the artifact.

        ``decide`` (the ecosystem's hook) makes the source to fill with from the
        response's headers, once per fill; the requests then decide on the head
        (admission), and the first to ``serve`` or ``ensure`` the head's source
        streams that very response into storage. Once every request left without
        doing so, it is closed unread. A 404 or 410 is kept in ``misses`` (and
        answered from it for the negative TTL, and for ``stale_if_error_s``
        while the upstream fails); an artifact stored meanwhile is the head too.

        Raises:
            UpstreamError: the upstream failed (other than a 404 or 410).
            ProxyError: ``decide`` refused the response, or the fill failed.
            NotCachedError, ReadOnlyStorageError: as ``serve``.
        """
        while True:
            fill = self._fills.get(source.key)
            if fill is None:
                fill = self._start(source, Opening(decide, misses, stale_if_error_s))
            opening = fill.opening
            if opening is None or opening.closing:
                # a fill not header-first (or one being closed): its outcome decides
                await fill.done.wait()
                continue
            break
        opening.users += 1
        try:
            await opening.ready.wait()
            if opening.error is not None:
                raise opening.error
            assert opening.head is not None
            yield opening.head
        finally:
            opening.leave()

    def _fill_for(self, source: ArtifactSource) -> Fill:
        if source.opened is not None:  # decided on its opened response: take it
            fill = source.opened
        else:
            fill = self._fills.get(source.key) or self._start(source)
        if fill.opening is not None:
            fill.opening.go()
        return fill

    def _start(self, source: ArtifactSource, opening: Opening | None = None) -> Fill:
        if self._read_only is not None:
            raise ReadOnlyStorageError(
                f"{source.filename} is not cached, and storage is read-only "
                f"({self._read_only}): it is not fetched")
        if source.upstream.offline:
            raise NotCachedError(
                f"{source.filename} is not cached, and upstream {source.upstream.name} "
                "is offline: it is not fetched")
        fill = Fill(source, opening)
        self._fills[source.key] = fill
        task = asyncio.create_task(self._run(fill), name=f"fill {source.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # also when cancelled before it ran (at shutdown): no opener waits on
        task.add_done_callback(lambda _task: fill.done.set())
        return fill

    async def _run(self, fill: Fill) -> None:
        key = fill.source.key
        try:
            async with self._hold(key):
                if fill.opening is not None:
                    await self._open_into(fill, fill.opening)
                    return
                # A fill that finished just before this one began (here, or in another
                # worker process holding the lock until it had) may have stored it.
                info = await self.lookup(fill.source)
                if info is not None:
                    fill.found(info)
                    return
                async with fill.source.upstream.get(fill.source.url) as resp:
                    await self._fetch_into(fill, resp)
        except asyncio.CancelledError:
            await self._fail(fill, ProxyError("stockade is shutting down"))
            raise
        except DigestMismatchError as exc:
            source = fill.source
            self._metrics.integrity_failures.labels(source.ecosystem, source.upstream.name).inc()
            logger.warning("integrity failure for %s from upstream %s: %s",
                           source.url, source.upstream.name, exc)
            await self._fail(fill, IntegrityError(
                f"{source.filename} from upstream {source.upstream.name} does not match "
                f"its published digest; it was not stored"
            ))
        except (ProxyError, StorageError) as exc:
            logger.info("fetch of %s failed: %s", fill.source.url, exc)
            await self._fail(fill, exc)
        except Exception:
            # A task's top: log it, count nothing as stored, fail every waiter.
            logger.exception("unexpected error fetching %s", fill.source.url)
            await self._fail(fill, ProxyError(f"internal error fetching {fill.source.filename}"))
        finally:
            if self._fills.get(key) is fill:
                del self._fills[key]
            if not fill.finished.is_set():  # closed unread: a request holding it asks again
                fill.fail(UpstreamError(
                    f"upstream {fill.source.upstream.name}: the fetch of {fill.source.url} "
                    "that this request waited for was closed; ask again",
                    upstream=fill.source.upstream.name))
            fill.done.set()

    async def _open_into(self, fill: Fill, opening: Opening) -> None:
        """A header-first fill, under the artifact's lock: stored, remembered missing,
        or its response opened, decided on, and (once taken) streamed into storage."""
        source = fill.source
        eco, upstream, url = source.ecosystem.value, source.upstream, source.url
        if opening.closing:  # every request left while the lock was awaited
            return
        found = await self.stored(source)
        if found is not None:
            opening.settle(Head(Outcome.STORED, source, stored=found))
            fill.found(found.info)
            return
        if (status := await opening.misses.missing(eco, upstream, url)) is not None:
            opening.settle(Head(Outcome.MISSING, source, status=status))
            return
        answered = False  # the upstream answered the artifact (later errors are not its)
        try:
            async with upstream.get(url) as resp:
                answered = True
                await opening.misses.found(eco, upstream, url, resp.headers.get("Last-Modified"))
                decided = await opening.decide(source, resp.headers)
                if decided.key != source.key or decided.url != url:
                    raise ProxyError(f"internal error: {url} decided as {decided.url}")
                fill.source = dataclasses.replace(decided, opened=fill)
                opening.settle(Head(Outcome.OPEN, fill.source, status=resp.status,
                                    headers=resp.headers))
                if await opening.taken():
                    await self._fetch_into(fill, resp)
        except UpstreamStatusError as exc:
            if answered or exc.upstream_status not in (404, 410):
                raise
            await opening.misses.remember_missing(eco, upstream, url, exc.upstream_status)
            opening.settle(Head(Outcome.MISSING, source, status=exc.upstream_status))
        except UpstreamError:
            if answered:
                raise
            status = await opening.misses.missing(eco, upstream, url,
                                                  stale_s=opening.stale_if_error_s)
            if status is None:
                raise
            logger.info("answering the remembered %d of %s: upstream %s fails",
                        status, url, upstream.name)
            opening.settle(Head(Outcome.MISSING, source, status=status))

    def _hold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(key) if self._locks is not None else contextlib.nullcontext()

    async def _fetch_into(self, fill: Fill, resp: UpstreamResponse) -> None:
        source = fill.source
        if not source.expected and not resp.framed:
            raise UpstreamBodyError(
                f"upstream {source.upstream.name} sent {source.filename} with neither a "
                "length nor chunked framing, and no checksum vouches for it: a body cut "
                "short could not be told from a whole one, so it is refused",
                upstream=source.upstream.name)
        writer = fill.writer = await self._store.open_writer(
            algorithms=sorted({d.algorithm for d in source.expected} | set(source.algorithms)),
            max_bytes=self._max_bytes,
        )
        fill.spool_path = str(writer.spool_path)
        fill.content_length = length = resp.content_length
        if self._hot is not None and length is not None and self._hot.takes(length):
            fill.chunks = []
        fill.started.set()
        told = 0
        async for chunk in resp.iter_chunks():
            await writer.write(chunk)
            if fill.chunks is not None:
                fill.chunks.append(chunk)
            # Hold the newest chunk back until the digest is checked.
            fill.visible = writer.size - len(chunk)
            # Readers are woken once per CHUNK, not per network read: fifty readers
            # woken for every 64 KiB left the fill itself waiting for the loop.
            if fill.visible - told >= CHUNK:
                told = fill.visible
                fill._notify()
        info = await writer.commit(source.expected)
        await writer.close()
        record = {"sha256": info.sha256, "size": info.size, "digests": info.digests,
                  "url": source.url, "upstream": source.upstream.name,
                  "ecosystem": source.ecosystem.value, "name": source.name,
                  "version": source.version, "filename": source.filename,
                  "verified": sorted(d.algorithm for d in source.expected),
                  **source.recorded}
        # Replicas filling one artifact at once: the first record stays. One for
        # other bytes is replaced, as ours matched what the upstream publishes now.
        stored = await self._index.put_if_absent(source.key, record)
        if stored.get("sha256") != info.sha256:
            await self._index.put(source.key, record)
        self._metrics.storage_bytes.set(self._store.total_bytes)
        # Verified, stored and recorded: the readers are sent the rest only now, so a
        # client that has read a whole answer finds the artifact cached, in any
        # worker, replica or later offline start.
        self._release(fill, info)

    def _release(self, fill: Fill, info: BlobInfo) -> None:
        """Let every reader of ``fill`` send the whole, verified and stored, artifact;
        bytes the fill kept are held as a warm request would hold them after reading
        and hashing the file: the burst's later requests need not read it again."""
        path = self._store.local_path(info.sha256)
        if fill.chunks is not None and self._hot is not None and path is not None:
            self._hot.hold(info.sha256, path, b"".join(fill.chunks))
        fill.info = info
        fill.visible = info.size
        fill.finished.set()
        fill._notify()

    @staticmethod
    async def _fail(fill: Fill, exc: BaseException) -> None:
        # Drop the spool before waking the waiters, so none sees a partial file.
        if fill.writer is not None:
            await fill.writer.abort()
        fill.fail(exc)

    async def _tail(self, request: web.Request, fill: Fill) -> web.StreamResponse:
        await fill.started.wait()
        if fill.error is not None:
            raise fill.error
        if fill.spool_path is None:  # found stored when the fill began
            assert fill.info is not None
            return self._from_store(request, fill.source, fill.info, "cache")
        try:
            # A local open is one quick syscall; doing it on the loop means a
            # cancelled request can never leak a descriptor opened in a thread.
            fd = os.open(fill.spool_path, os.O_RDONLY)
        except FileNotFoundError:
            # The fill finished (and moved the spool into storage) meanwhile.
            await fill.finished.wait()
            if fill.error is not None:
                raise fill.error from None
            assert fill.info is not None
            return self._from_store(request, fill.source, fill.info, "upstream")
        try:
            return await self._stream(request, fill, fd)
        finally:
            os.close(fd)

    async def _stream(self, request: web.Request, fill: Fill, fd: int) -> web.StreamResponse:
        source = fill.source
        headers = {"Content-Type": source.content_type, "X-Stockade-Cache": "miss",
                   **source.headers}
        # The digests the bytes are being verified against, as a stored answer sends
        # them: a body that does not match them is cut before its end.
        for digest in source.expected:
            if digest.algorithm in source.checksum_headers:
                headers[f"X-Checksum-{digest.algorithm.capitalize()}"] = digest.hex
        response = web.StreamResponse(headers=headers)
        if fill.content_length is not None:
            response.content_length = fill.content_length
        await response.prepare(request)
        sent = taken = 0  # bytes sent; chunks of ``fill.chunks`` sent
        while True:
            while (chunks := fill.chunks) is not None and taken < len(chunks) \
                    and sent + len(chunks[taken]) <= fill.visible:
                await response.write(chunks[taken])
                sent += len(chunks[taken])
                taken += 1
            while fill.chunks is None and sent < fill.visible:
                chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, fill.visible - sent), sent)
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
            if fill.error is not None:
                self._abort(request)
                raise fill.error
            if fill.finished.is_set() and sent >= fill.visible:
                break
            await fill.changed()
        self._metrics.bytes_served.labels(source.ecosystem, "upstream").inc(sent)
        await response.write_eof()
        return response

    @staticmethod
    def _abort(request: web.Request) -> None:
        """Cut the connection so the client sees a broken body, never a whole one."""
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Cancel fills still running (at shutdown); their spool files are dropped."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
