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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from stockade.policy.model import Ecosystem, Facts
from stockade.proxy.blobresponse import (
    BlobResponse,
    accel_response,
    entity_tag,
    memory_response,
)
from stockade.proxy.errors import IntegrityError, NotCachedError, ProxyError, UpstreamBodyError
from stockade.proxy.hotblobs import HotBlobs
from stockade.proxy.metrics import Metrics
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
from stockade.storage.verify import BlobState, ReadVerifier

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024  # bytes read from the spool per write to a client


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
    # Where the fill's upstream response comes from (``upstream.get`` if None): Maven
    # hands over the response whose checksum headers it decided on.
    opener: Callable[[str], contextlib.AbstractAsyncContextManager[UpstreamResponse]] | None = (
        None)


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """A stored, verified artifact and the record written when it was stored
    (empty where it was found by a published sha256 alone)."""

    info: BlobInfo
    record: Mapping[str, Any]


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


class Fill:
    """One upstream fetch into storage, watched by any number of clients."""

    def __init__(self, source: ArtifactSource) -> None:
        self.source = source
        self.spool_path: str | None = None
        self.content_length: int | None = None
        self.visible = 0  # bytes every reader may send
        self.info: BlobInfo | None = None
        self.error: BaseException | None = None
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self._tick = asyncio.Event()

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def changed(self) -> None:
        """Wait until more bytes are visible or the fill ends."""
        await self._tick.wait()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
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
        self._verifier = ReadVerifier(
            store, max_bytes=verify_on_read_max_bytes, trust_s=verify_on_read_trust_s,
            on_hashed=lambda ok: metrics.blob_verifications.labels(
                "read", "ok" if ok else "mismatch").inc())
        self._read_only = read_only  # why storage cannot be written: nothing is fetched
        self._fills: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of each artifact a GET was answered with (the served-artifacts record).
        self.on_served: Callable[[web.Request, ArtifactSource, BlobInfo], None] | None = None

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
        if self._held(info) is None and not await self._still_intact(source, info):
            return None
        return StoredArtifact(BlobInfo(sha256, info.size, {**recorded, **by_alg, "sha256": sha256}),
                              record)

    def _held(self, info: BlobInfo) -> bytes | None:
        """The verified bytes ``hotblobs`` holds for ``info``, if its file is unchanged."""
        return None if self._hot is None else self._hot.get(info.sha256)

    async def _still_intact(self, source: ArtifactSource, info: BlobInfo) -> bool:
        """Blobs ``hotblobs`` takes are read whole, hashed and held; other small blobs
        are re-hashed (off the loop, and only when their file may have changed); of
        larger ones, only that they are still there is checked."""
        path = self._store.local_path(info.sha256)
        if self._hot is not None and path is not None and self._hot.takes(info.size):
            try:
                if await self._hot.load(self._store, info.sha256, path) is not None:
                    return True
            except BlobNotFoundError:
                logger.warning("stored %s (blob %s) was removed from storage; fetching it "
                               "again", source.filename, info.sha256)
                return False
            logger.warning("stored %s (blob %s) no longer matches its digest; "
                           "deleting it and fetching it again", source.filename, info.sha256)
            await self._store.delete(info.sha256)
            return False
        state = await self._verifier.check(info)
        if state is BlobState.CHANGED:
            logger.warning("stored %s (blob %s) no longer matches its digest; "
                           "deleting it and fetching it again", source.filename, info.sha256)
            await self._store.delete(info.sha256)
        elif state is BlobState.GONE:
            logger.warning("stored %s (blob %s) was removed from storage; fetching it again",
                           source.filename, info.sha256)
        return state is BlobState.INTACT

    def respond(
        self, request: web.Request, source: ArtifactSource, stored: StoredArtifact
    ) -> web.StreamResponse:
        """Answer a GET or HEAD from a stored artifact ``stored`` found for ``source``."""
        taken = note()
        if taken is not None:
            taken.answered(source, stored.info, False)
        return self._from_store(request, source, stored.info, "cache")

    async def still_stored(self, source: ArtifactSource, info: BlobInfo) -> bool:
        """Whether ``info``, found stored for ``source`` by an earlier request, may
        still be served: held in memory with its file unchanged, or checked as
        ``stored`` checks it (re-hashed, trusted or stat'ed per ``verify_on_read_*``)."""
        return (await self.still_held(source, info))[0]

    async def still_held(self, source: ArtifactSource,
                         info: BlobInfo) -> tuple[bool, bytes | None]:
        """``still_stored``, and the bytes held in memory it found unchanged (None: not
        held), for ``answer_stored`` to answer with rather than look them up again."""
        held = self._held(info)
        if held is not None:
            return True, held
        return await self._still_intact(source, info), None

    def answer_stored(self, request: web.Request, source: ArtifactSource, info: BlobInfo,
                      recorded: bool, held: bytes | None = None) -> web.StreamResponse:
        """Answer from ``info`` as ``serve`` (``recorded``) or ``respond`` answered an
        earlier request for it, once ``still_stored`` said it may be (``held``: the
        bytes ``still_held`` found, checked by it in this request)."""
        if recorded:
            self._served(request, source, info)
        return self._from_store(request, source, info, "cache", held)

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
        info = await self.lookup(source)
        taken = note()
        if info is not None:
            if taken is not None:
                taken.answered(source, info, True)
            self._served(request, source, info)
            return self._from_store(request, source, info, "cache")
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
            self.on_served(request, source, info)

    def _from_store(
        self, request: web.Request, source: ArtifactSource, info: BlobInfo, origin: str,
        held: bytes | None = None,
    ) -> web.StreamResponse:
        headers = {"Content-Type": source.content_type, **source.headers}
        for alg in source.checksum_headers:
            if alg in info.digests:
                headers[f"X-Checksum-{alg.capitalize()}"] = info.digests[alg]
        counter = self._bytes_served.get((source.ecosystem, origin))
        if counter is None:
            counter = self._bytes_served[source.ecosystem, origin] = \
                self._metrics.bytes_served.labels(source.ecosystem, origin)
        counter.inc(0 if request.method == "HEAD" else info.size)
        headers["X-Stockade-Cache"] = "hit" if origin == "cache" else "miss"
        if self._accel is None and (body := held or self._held(info)) is not None:
            return memory_response(request, body, info.sha256, headers)
        path = self._store.local_path(info.sha256)
        if path is None:  # no local copy (object storage): stream it from the store
            return BlobResponse(self._store, info, headers)
        if self._accel is not None and (where := self._accel.location(path)) is not None:
            return accel_response(request, where, entity_tag(info.sha256), headers)
        return web.FileResponse(path, headers=headers)

    def _fill_for(self, source: ArtifactSource) -> Fill:
        fill = self._fills.get(source.key)
        if fill is None:
            if self._read_only is not None:
                raise ReadOnlyStorageError(
                    f"{source.filename} is not cached, and storage is read-only "
                    f"({self._read_only}): it is not fetched")
            if source.upstream.offline:
                raise NotCachedError(
                    f"{source.filename} is not cached, and upstream {source.upstream.name} "
                    "is offline: it is not fetched")
            fill = Fill(source)
            self._fills[source.key] = fill
            task = asyncio.create_task(self._run(fill), name=f"fill {source.key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fill

    async def _run(self, fill: Fill) -> None:
        source = fill.source
        writer: BlobWriter | None = None
        try:
            async with self._hold(source.key):
                # A fill that finished just before this one began (here, or in another
                # worker process holding the lock until it had) may have stored it.
                info = await self.lookup(source)
                if info is not None:
                    fill.info = info
                    fill.visible = info.size
                    fill.started.set()
                    fill.finished.set()
                    fill._notify()
                    return
                writer = await self._store.open_writer(
                    algorithms=sorted({d.algorithm for d in source.expected}
                                      | set(source.algorithms)),
                    max_bytes=self._max_bytes,
                )
                await self._fetch_into(fill, writer)
        except asyncio.CancelledError:
            await self._fail(fill, writer, ProxyError("stockade is shutting down"))
            raise
        except DigestMismatchError as exc:
            self._metrics.integrity_failures.labels(source.ecosystem, source.upstream.name).inc()
            logger.warning("integrity failure for %s from upstream %s: %s",
                           source.url, source.upstream.name, exc)
            await self._fail(fill, writer, IntegrityError(
                f"{source.filename} from upstream {source.upstream.name} does not match "
                f"its published digest; it was not stored"
            ))
        except (ProxyError, StorageError) as exc:
            logger.info("fetch of %s failed: %s", source.url, exc)
            await self._fail(fill, writer, exc)
        except Exception:
            # A task's top: log it, count nothing as stored, fail every waiter.
            logger.exception("unexpected error fetching %s", source.url)
            await self._fail(fill, writer, ProxyError(f"internal error fetching {source.filename}"))
        finally:
            self._fills.pop(source.key, None)

    def _hold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(key) if self._locks is not None else contextlib.nullcontext()

    async def _fetch_into(self, fill: Fill, writer: BlobWriter) -> None:
        source = fill.source
        fill.spool_path = str(writer.spool_path)
        async with (source.opener or source.upstream.get)(source.url) as resp:
            if not source.expected and not resp.framed:
                raise UpstreamBodyError(
                    f"upstream {source.upstream.name} sent {source.filename} with neither a "
                    "length nor chunked framing, and no checksum vouches for it: a body cut "
                    "short could not be told from a whole one, so it is refused",
                    upstream=source.upstream.name)
            fill.content_length = resp.content_length
            fill.started.set()
            async for chunk in resp.iter_chunks():
                await writer.write(chunk)
                # Hold the newest chunk back until the digest is checked.
                fill.visible = writer.size - len(chunk)
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
        fill.info = info
        fill.visible = info.size
        fill.finished.set()
        fill._notify()

    @staticmethod
    async def _fail(fill: Fill, writer: BlobWriter | None, exc: BaseException) -> None:
        # Drop the spool before waking the waiters, so none sees a partial file.
        if writer is not None:
            await writer.abort()
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
        sent = 0
        while True:
            while sent < fill.visible:
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
