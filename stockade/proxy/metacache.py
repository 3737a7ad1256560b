"""The metadata cache: index pages, packuments and maven-metadata.xml.

Owns freshness (TTL), revalidation with ETag/Last-Modified, stale-if-error,
remembering upstream 404s for a while (negative caching, with stale-if-error
for them too) and coalescing identical misses into one upstream request;
offline (the whole cache, or one upstream), it serves what is stored however
old and asks no upstream. Documents are kept on disk through ``RefStore`` and
the most recent ones in a bounded memory LRU; of documents too large for it,
only the record is kept in memory, and a caller that can do without the body
(its parsed and rendered forms are cached by version) gets the document
without it: a warm request for a 20 MB packument reads nothing from disk.

A document's ``version`` (which keys its parsed and rendered forms, here and in
the ecosystem modules) names its bytes, not its freshness: a revalidation the
upstream answers 304, or with the same bytes, moves only ``fetched_at``, so
nothing derived from the document is made again. A revalidation needs no body
(a large document's is not read from disk for it), and while one runs, requests
for the document are answered from the copy held (stale-while-revalidate, within
``stale_if_error_s``, the bound stale-if-error already sets) rather than waiting.
It does not parse or rewrite documents: ecosystem modules do; the documents'
values and their stored records are ``metadocs``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from stockade.proxy.budget import BudgetedLRU, MemoryBudget, QuickLRU, unbounded
from stockade.proxy.errors import NotCachedError, UpstreamError, UpstreamStatusError
from stockade.proxy.metadocs import (
    CachedDoc,
    CacheResult,
    MetadataRecords,
    Missing,
    doc_key,
    sha256_of,
    stored_doc,
    stored_missing,
    without_body,
)
from stockade.proxy.metrics import Metrics
from stockade.proxy.singleflight import FileLocks, SingleFlight
from stockade.proxy.upstream import LARGE_BODY_BYTES, Upstream, UpstreamResponse
from stockade.proxy.warmrecord import note
from stockade.storage.errors import StorageError

logger = logging.getLogger(__name__)


_DEFAULT_NEGATIVE_TTL_S = 300.0
_LARGE_RECORDS = 4096  # records of documents too large for memory, kept without bodies
_NEGATIVES_IN_MEMORY = 65_536  # remembered 404s kept in memory (the rest on disk)


class MetadataCache:
    """Fresh, revalidated or stale metadata documents, one upstream call per miss."""

    def __init__(
        self,
        refs: MetadataRecords,
        metrics: Metrics,
        *,
        max_doc_bytes: int,
        memory_bytes: int = 64 * 1024 * 1024,
        offline: bool = False,
        negative_ttl_s: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        locks: FileLocks | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._refs = refs
        self._metrics = metrics
        self._max_doc_bytes = max_doc_bytes
        self._memory_bytes = memory_bytes
        self._offline = offline
        # Per ecosystem: how long an upstream 404 is believed before asking again.
        self._negative_ttl_s = dict(negative_ttl_s or {})
        self._clock = clock
        # the documents' bodies held, least recently used first, counted with the
        # process's other caches
        self._memory: BudgetedLRU[str, CachedDoc] = BudgetedLRU(
            memory_bytes, _body_bytes, budget or unbounded(), "metadata")
        self._missing: LRUCache[str, Missing] = LRUCache(_NEGATIVES_IN_MEMORY)
        self._large: QuickLRU[str, CachedDoc] = QuickLRU(_LARGE_RECORDS)  # without bodies
        # one refresh per document across worker processes, with ``locks``
        self._flight: SingleFlight[str, CachedDoc] = SingleFlight(locks)
        self._counters: dict[tuple[str, CacheResult], Any] = {}
        # called before each look-up: a purge in another process is seen here
        # (``stockade.proxy.adminactions``), which may ``forget_all``
        self.before_get: Callable[[], None] | None = None
        # moved by each ``forget_all``: what was decided on dropped documents is stale
        self.epoch = 0

    async def get(
        self,
        ecosystem: str,
        upstream: Upstream,
        url: str,
        *,
        accept: str,
        ttl_s: float,
        stale_if_error_s: float,
        body: bool = True,
    ) -> CachedDoc:
        """The document at ``url``: cached if fresh, else revalidated or fetched.

        Offline, the stored copy is returned however old, and nothing is fetched.
        An upstream 404 is remembered for the ecosystem's negative TTL, and while
        the upstream is down for up to ``stale_if_error_s``. Without ``body``, a
        cached document too large for memory comes without it (``has_body``
        False): ask again with it where the body is needed.

        Raises:
            UpstreamError: the upstream failed and no usable stale copy exists
                (an upstream 404, asked or remembered, raises
                ``UpstreamStatusError`` with status 404).
            NotCachedError: offline, and the document was never stored.
        """
        return await self._get(ecosystem, upstream, url, accept=accept, ttl_s=ttl_s,
                               stale_if_error_s=stale_if_error_s, probe=False, body=body)

    async def probe(
        self, ecosystem: str, upstream: Upstream, url: str, *, ttl_s: float,
        stale_if_error_s: float,
    ) -> CachedDoc:
        """Whether ``url`` exists, asked with a one-byte range request and cached as
        documents are: a document with an empty body (and the upstream's
        ``Last-Modified``) when it does.

        Raises:
            UpstreamStatusError: status 404, the file is not there (or remembered so).
            UpstreamError, NotCachedError: as ``get``.
        """
        return await self._get(ecosystem, upstream, url, accept="probe", ttl_s=ttl_s,
                               stale_if_error_s=stale_if_error_s, probe=True)

    async def _get(
        self, ecosystem: str, upstream: Upstream, url: str, *, accept: str, ttl_s: float,
        stale_if_error_s: float, probe: bool, body: bool = True,
    ) -> CachedDoc:
        if self.before_get is not None:
            self.before_get()
        key = doc_key(ecosystem, upstream.name, url, accept)
        negative_ttl_s = self._negative_ttl_s.get(ecosystem, _DEFAULT_NEGATIVE_TTL_S)
        cached = await self._load(key, body=body)
        if self._offline or upstream.offline:
            if cached is None:
                raise NotCachedError(
                    f"{url} was never cached, and upstream {upstream.name} is offline: "
                    "nothing is fetched")
            return self._noted(ecosystem, self._answer(cached, upstream), float("inf"))
        if cached is not None and self._fresh(cached, ttl_s, negative_ttl_s):
            self._count(ecosystem, CacheResult.HIT)
            return self._noted(ecosystem, self._answer(cached, upstream), ttl_s)
        if (isinstance(cached, CachedDoc) and self._flight.running(key) is not None
                and self._clock() - cached.fetched_at <= stale_if_error_s):
            # Being revalidated: answered from the copy held meanwhile, as it would
            # be if the upstream failed, rather than each request waiting for it.
            self._count(ecosystem, CacheResult.STALE)
            return self._noted(ecosystem, replace(cached, result=CacheResult.STALE), ttl_s)

        async def refresh() -> CachedDoc:
            # Another flight (here, or in another worker process) may have stored it
            # since it was loaded above. Revalidating needs no body: a large one's
            # is read only if the upstream sends another, or a caller needs it.
            current = await self._load(key, body=False)
            if current is None or not self._fresh(current, ttl_s, negative_ttl_s):
                current = await self._load_stored(key, body=False) or current
            if current is not None and self._fresh(current, ttl_s, negative_ttl_s):
                return self._answer(current, upstream)
            return await self._refresh(key, upstream, url, accept, current,
                                       stale_if_error_s, probe=probe)

        doc = await self._flight.do(key, refresh)
        if body and not doc.has_body:
            doc = await self._with_body(doc)
            if not doc.has_body:  # never stored, or dropped since: fetched afresh

                async def fetch() -> CachedDoc:
                    return await self._refresh(key, upstream, url, accept, None,
                                               stale_if_error_s, probe=probe)

                doc = await self._flight.do(key, fetch)
        self._count(ecosystem, doc.result)
        return self._noted(ecosystem, doc, ttl_s)

    async def _with_body(self, doc: CachedDoc) -> CachedDoc:
        """``doc`` (revalidated without its body) with its body, read from disk;
        ``doc`` itself where none is stored."""
        stored = await self._load_stored(doc.key, body=True)
        if not isinstance(stored, CachedDoc) or not stored.has_body:
            return doc
        return replace(stored, result=doc.result)

    # The 404s of files fetched otherwise (an artifact whose response the pipeline
    # opens itself), kept where ``probe`` keeps them: one memory for every worker
    # process, across restarts.

    async def missing(self, ecosystem: str, upstream: Upstream, url: str, *,
                      stale_s: float | None = None) -> int | None:
        """The status (404 or 410) of the remembered miss of ``url``, while it is
        believed (the ecosystem's negative TTL), or with ``stale_s``, while it is no
        older than that (the upstream failing now); None when none is."""
        if self.before_get is not None:
            self.before_get()
        key = doc_key(ecosystem, upstream.name, url, "probe")
        ttl_s = (self._negative_ttl_s.get(ecosystem, _DEFAULT_NEGATIVE_TTL_S)
                 if stale_s is None else stale_s)
        cached: CachedDoc | Missing | None = self._missing.get(key)
        if cached is None or self._clock() - cached.fetched_at >= ttl_s:
            # remembered by another process, or before a restart
            cached = await self._load_stored(key, body=False)
        if isinstance(cached, Missing) and self._clock() - cached.fetched_at < ttl_s:
            return cached.status
        return None

    async def remember_missing(self, ecosystem: str, upstream: Upstream, url: str,
                               status: int) -> None:
        """The upstream answered ``status`` (404 or 410) for ``url``."""
        key = doc_key(ecosystem, upstream.name, url, "probe")
        await self._store_missing(Missing(key, url, status, self._clock()))

    async def found(self, ecosystem: str, upstream: Upstream, url: str,
                    last_modified: str | None = None) -> None:
        """The upstream answered ``url``: a miss remembered of it is dropped (kept
        as ``probe`` keeps a file found, so no process answers it as missing)."""
        key = doc_key(ecosystem, upstream.name, url, "probe")
        if not isinstance(self._missing.get(key), Missing):
            return  # ``missing`` read it before the file was asked for
        doc = CachedDoc(key=key, url=url, body=b"", content_type="", fetched_at=self._clock(),
                        last_modified=last_modified)
        try:
            await self._store(doc, body_changed=True)
        except StorageError as exc:
            logger.warning("cannot forget the 404 of %s: %s", url, exc.diagnostics())
            self._missing.pop(key, None)

    def _noted(self, ecosystem: str, doc: CachedDoc, ttl_s: float) -> CachedDoc:
        """``doc``, noted for a warm request to check it is still the one held."""
        taken = note()
        if taken is not None:
            if doc.result is CacheResult.STALE:
                taken.spoil()  # served past its time: asked again next time
            else:
                taken.read(ecosystem, doc.key, doc.version, doc.fetched_at + ttl_s)
        return doc

    async def body_file(self, doc: CachedDoc) -> Path | None:
        """The file holding ``doc``'s stored body, for another process to read itself
        (checking it against ``doc.digest``: another version may have replaced it);
        None where there is none or its digest is unknown."""
        if doc.digest is None:
            return None
        return await self._refs.body_path(doc.key)

    def current(self, key: str) -> str | None:
        """The version of the document held in memory under ``key`` (None: none is),
        looked up without counting or reading anything."""
        doc = self._memory.get(key) or self._large.get(key)
        return None if doc is None else doc.version

    def count_hit(self, ecosystem: str) -> None:
        """Count a fresh document used from memory (a warm request that repeated one)."""
        self._count(ecosystem, CacheResult.HIT)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock documents' fetch times are read on."""
        return self._clock

    def _count(self, ecosystem: str, result: CacheResult) -> None:
        # labels() locks and checks its arguments: its children are kept
        child = self._counters.get((ecosystem, result))
        if child is None:
            child = self._counters[ecosystem, result] = self._metrics.cache_requests.labels(
                ecosystem, result)
        self._metrics.tally.inc(child)

    def _fresh(self, cached: CachedDoc | Missing, ttl_s: float, negative_ttl_s: float) -> bool:
        ttl = negative_ttl_s if isinstance(cached, Missing) else ttl_s
        return self._clock() - cached.fetched_at < ttl

    @staticmethod
    def _answer(cached: CachedDoc | Missing, upstream: Upstream) -> CachedDoc:
        if isinstance(cached, Missing):
            raise UpstreamStatusError(
                f"upstream {upstream.name} answered {cached.status} for {cached.url}",
                upstream=upstream.name, upstream_status=cached.status,
            )
        return cached

    async def _refresh(
        self, key: str, upstream: Upstream, url: str, accept: str,
        cached: CachedDoc | Missing | None, stale_if_error_s: float, *, probe: bool,
    ) -> CachedDoc:
        headers = {"Range": "bytes=0-0"} if probe else {"Accept": accept}
        if isinstance(cached, CachedDoc) and not probe:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        try:
            async with upstream.get(url, headers=headers) as resp:
                if resp.status == 304 and isinstance(cached, CachedDoc):
                    # the same bytes: only the freshness moves, never the version
                    doc = replace(cached, fetched_at=self._clock(), result=CacheResult.HIT,
                                  changed_at=self._changed_at(cached))
                    await self._store(doc, body_changed=False)
                    return doc
                body = b"" if probe else await self._read(resp)
                now = self._clock()
                digest = await sha256_of(body)
                if (not probe and isinstance(cached, CachedDoc)
                        and cached.digest == digest and cached.size == len(body)):
                    changed_at = self._changed_at(cached)  # the same bytes again
                else:
                    changed_at = now
                doc = CachedDoc(
                    key=key, url=resp.url, body=body,
                    content_type=resp.headers.get("Content-Type", ""),
                    fetched_at=now, etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                    result=CacheResult.MISS,
                    changed_at=changed_at,
                    digest=digest,
                )
        except UpstreamStatusError as exc:
            if exc.upstream_status in (404, 410):
                await self._store_missing(Missing(key, url, exc.upstream_status, self._clock()))
                raise
            if cached is None:
                raise
            return self._stale_or_raise(cached, upstream, exc, stale_if_error_s)
        except UpstreamError as exc:
            if cached is None:
                raise
            return self._stale_or_raise(cached, upstream, exc, stale_if_error_s)
        try:
            await self._store(doc, body_changed=True)
        except StorageError as exc:
            # Serving the fresh document matters more than caching it.
            logger.warning("cannot cache %s: %s", url, exc.diagnostics())
            self._remember(doc)
        return doc

    @staticmethod
    def _changed_at(cached: CachedDoc) -> float:
        return cached.fetched_at if cached.changed_at is None else cached.changed_at

    async def _read(self, resp: UpstreamResponse) -> bytes:
        """The body of ``resp``. One announced as large is read wholly inside a read
        slot (``UpstreamResponse.read`` takes one only once the body grew large): the
        beginnings of the large documents waiting for a slot are not held meanwhile."""
        size = resp.content_length
        if resp.read_slots is None or size is None or size < LARGE_BODY_BYTES:
            return await resp.read(self._max_doc_bytes)
        async with resp.read_slots.hold():
            return await resp.read(self._max_doc_bytes)

    def _stale_or_raise(
        self, cached: CachedDoc | Missing, upstream: Upstream, exc: UpstreamError,
        stale_if_error_s: float,
    ) -> CachedDoc:
        age = self._clock() - cached.fetched_at
        if age > stale_if_error_s:
            raise exc
        logger.info(
            "serving stale %s%s (%.0fs old) because upstream failed: %s", cached.url,
            " (a remembered 404)" if isinstance(cached, Missing) else "", age, exc,
        )
        if isinstance(cached, Missing):
            return self._answer(cached, upstream)
        return replace(cached, result=CacheResult.STALE)

    async def _load(self, key: str, *, body: bool = True) -> CachedDoc | Missing | None:
        doc = self._memory.get(key)
        if doc is not None:
            return doc  # kept as a hit already: no copy per warm request
        missing = self._missing.get(key)
        if missing is not None:
            return missing
        large = self._large.get(key)
        if large is not None and not body:
            return large
        return await self._load_stored(key, body=body)

    async def _load_stored(self, key: str, *, body: bool = True) -> CachedDoc | Missing | None:
        record = await self._refs.get(key)
        if record is None:
            return None
        if "missing" in record:
            missing = stored_missing(key, record)
            if missing is not None:
                self._missing[key] = missing
            return missing
        length = record.get("length")
        if not body and isinstance(length, int) and self._too_large(length):
            doc = stored_doc(key, record, b"", length)
            if doc is not None:
                self._large[key] = doc
            return doc
        doc = stored_doc(key, record, await self._refs.get_body(key))
        if doc is not None:
            self._remember(doc)
        return doc

    def _too_large(self, length: int) -> bool:
        return length > self._memory_bytes // 4 or not self._memory.account.takes(length)

    async def _store_missing(self, missing: Missing) -> None:
        self._forget(missing.key)
        self._missing[missing.key] = missing
        record = {"url": missing.url, "missing": missing.status,
                  "fetched_at": missing.fetched_at}
        try:
            await self._refs.put(missing.key, record)
        except StorageError as exc:
            logger.warning("cannot remember the 404 of %s: %s", missing.url, exc.diagnostics())

    async def _store(self, doc: CachedDoc, *, body_changed: bool) -> None:
        record = {
            "url": doc.url, "content_type": doc.content_type, "fetched_at": doc.fetched_at,
            "etag": doc.etag, "last_modified": doc.last_modified, "length": doc.size,
            "changed_at": doc.changed_at, "sha256": doc.digest,
        }
        await self._refs.put(doc.key, record, doc.body if body_changed else None)
        self._remember(doc)

    def _forget(self, key: str) -> None:
        self._memory.pop(key, None)
        self._large.pop(key, None)

    def _remember(self, doc: CachedDoc) -> None:
        self._forget(doc.key)
        self._missing.pop(doc.key, None)
        if not doc.has_body:  # revalidated without reading it: the record alone
            self._large[doc.key] = replace(doc, result=CacheResult.HIT)
            return
        if self._too_large(len(doc.body)):
            # its body is read from disk, and only by a caller that needs it
            self._large[doc.key] = without_body(doc)
            return
        # past its bound or the budget, the least recently used are kept on disk only
        self._memory[doc.key] = doc if doc.result is CacheResult.HIT else replace(
            doc, result=CacheResult.HIT)

    @property
    def held(self) -> int:
        """How many documents (and remembered 404s) this process holds in memory."""
        return len(self._memory) + len(self._missing)

    def forget_all(self) -> None:
        """Drop every document held in memory (a purge elsewhere: read them again)."""
        self._memory.clear()
        self._missing.clear()
        self._large.clear()
        self.epoch += 1

    async def close(self) -> None:
        """Stop any refresh still running."""
        await self._flight.cancel_all()


def _body_bytes(doc: CachedDoc) -> int:
    return len(doc.body)
