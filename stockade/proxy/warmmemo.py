"""The warm-hit memo: an artifact request answered from storage, repeated cheaply.

Owns, per worker process, a bounded least-recently-used map from what an artifact
request's outcome depends on (its raw path, the caller's team and that team's
policy revision) to what serving it took: every decision the gate made and the
facts it was made on, the metadata documents read (by key and version), and the
stored blob answered with. An identical request within the entry's validity then
skips routing, the metadata look-up and parse, first-seen times, the admitted
record and the store's look-up, but not what must stay per request:

- every decision is made again by the policy in force, on the facts noted (so a
  rule that depends on the clock, such as a cool-down or an approval's ``until``,
  decides with the time of this request), and counted and recorded as ever;
- each metadata document must still be the version held in memory and fresh
  (a refreshed, revalidated or dropped document is read again the slow way), and
  no purge may have happened since (the cache's ``epoch``; another worker's purge
  is seen through ``before_get`` as the metadata cache sees it);
- the blob is checked as every warm request checks it (``still_stored``: held
  bytes' file identity, or ``storage.verify_on_read_*``), and answered with the
  same headers, metrics and served-artifacts record.

What the facts hold besides the documents (first-seen times, the artifact record
for the ``republished`` rule, verified provenance) is believed for at most
``server.warm_memo_s`` seconds (0: no memo); an entry also ends when a document it
was decided on stops being fresh. Only immutable artifacts found stored are
remembered: nothing fetched, served stale, refused, or a ``-SNAPSHOT``.

A PyPI project page, and an npm packument (full or abbreviated) held rendered in
memory, answered from fresh metadata are remembered the same way, with the answer,
keyed also by what its rendering reads of the request (the ``Accept`` form, the
origin its absolute URLs are built from: ``Host``, forwarded headers, the client's
address and the scheme; and for the packument's gzip and 304 answers,
``Accept-Encoding`` and ``If-None-Match``). Its name is decided again per request;
its versions' decisions, which the admission path already reuses for the metadata
TTL, are reused for at most ``warm_memo_s`` more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from cachetools import LRUCache

from stockade.policy.model import Decision, Facts, PackageRef
from stockade.proxy.admission import Caller, caller
from stockade.proxy.budget import BudgetedLRU, MemoryBudget, QuickLRU, unbounded
from stockade.proxy.errors import RefusedError
from stockade.proxy.gate import Gate
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.pipeline import ArtifactPipeline, ArtifactSource, StoredHeaders
from stockade.proxy.prepared import PreparedHead, PreparedResponse, prepared_head
from stockade.proxy.responses import IMMUTABLE
from stockade.proxy.warmrecord import Note, close_note, open_note
from stockade.storage.protocol import BlobInfo

# What a worker process keeps: each entry counted as ENTRY_BYTES, a page as its body
# more (a page's key holds the client's address: pages can outnumber projects), and no
# page over PAGE_MAX_BYTES (such a page is answered from its rendered copy, as before).
MEMO_BYTES = 16 * 1024 * 1024
ENTRY_BYTES = 2048
PAGE_MAX_BYTES = 512 * 1024
ROUTES_MAX = 4096  # raw paths whose matched route is kept for the fast path
# The routes whose GET and HEAD answer one stored artifact.
ARTIFACT_ROUTES = frozenset({
    "pypi:artifact", "npm:tarball", "npm:tarball-scoped", "npm:root-tarball",
    "npm:root-tarball-scoped", "maven:repository", "maven:head",
})
# The routes whose answer is a page rendered from metadata, in memory.
PAGE_ROUTES = frozenset({"pypi:project", "npm:packument", "npm:packument-scoped"})
# Each hot route: whether it answers a page (True) or an artifact (False).
_HOT_ROUTES: dict[str | None, bool] = {
    **dict.fromkeys(ARTIFACT_ROUTES, False), **dict.fromkeys(PAGE_ROUTES, True)}
_READS = frozenset({"GET", "HEAD"})
# Headers aiohttp sets on each answer itself.
_OWN_HEADERS = frozenset({"content-length", "date", "server"})
Key = tuple[str | None, ...]


def hot_route(name: str | None) -> bool | None:
    """Whether the route named ``name`` answers a page (True) or an artifact (False)
    the memo remembers; None for any other route."""
    return _HOT_ROUTES.get(name)

_HANDLERS = Callable[[web.Request], Any]


@dataclass(frozen=True, slots=True)
class WarmHit:
    """What one served request took; see the module docstring."""

    decisions: tuple[tuple[PackageRef, Facts], ...]
    documents: tuple[tuple[str, str, str], ...]  # (ecosystem, key, version)
    source: ArtifactSource | None
    info: BlobInfo | None
    recorded: bool  # the answer went to the served-artifacts record
    epoch: int  # the metadata cache's purge epoch it was decided under
    until: float  # on the metadata cache's clock
    page: tuple[bytes, tuple[tuple[str, str], ...], int] | None = None  # body, headers,
    # status
    headers: StoredHeaders | None = None  # the stored answer's, built once
    prepared: PreparedHead | None = None  # a page's 200, its head serialized


class WarmMemo:
    """Warm artifact requests remembered for ``validity_s`` (see the module docstring)."""

    def __init__(self, gate: Gate, metacache: MetadataCache, pipeline: ArtifactPipeline, *,
                 validity_s: float, max_bytes: int = MEMO_BYTES,
                 budget: MemoryBudget | None = None) -> None:
        self._gate = gate
        self._metacache = metacache
        self._pipeline = pipeline
        self.validity_s = validity_s
        self._entries: LRUCache[Key, WarmHit] = BudgetedLRU(
            max_bytes, _size, budget or unbounded(), "warm memo")
        self.hits = 0  # requests answered from an entry (tests read it)
        # the route matched for the raw path of a GET remembered (``route``)
        self._routes: QuickLRU[str, UrlMappingMatchInfo] = QuickLRU(ROUTES_MAX)

    def now(self) -> float:
        """The metadata cache's clock, which entries' validity is read on."""
        return self._metacache.clock()

    @property
    def epoch(self) -> int:
        """The metadata cache's purge epoch now."""
        return self._metacache.epoch

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def remember_route(self, request: web.Request) -> None:
        """Keep what the router matched for ``request`` under its raw path (``route``)."""
        match = request.match_info
        if isinstance(match, UrlMappingMatchInfo):
            self._routes[request.raw_path] = match

    def key(self, request: web.Request, who: Caller, page: bool = False) -> Key:
        revision = self._gate.engine_for(who.team).revision
        if not page:
            return (request.raw_path, who.team, revision)
        headers = request.headers
        return (request.raw_path, who.team, revision, headers.get("Accept"),
                headers.get("Host"), headers.get("X-Forwarded-Proto"),
                headers.get("X-Forwarded-Host"), request.remote, request.scheme,
                headers.get("Accept-Encoding"), headers.get("If-None-Match"))

    def clear(self) -> None:
        self._entries.clear()

    def remember(self, key: Key, taken: Note, epoch: int, started: float) -> None:
        """Keep what ``taken`` noted under ``key``, where it can be repeated."""
        if taken.spoiled or len(taken.served) != 1 or not taken.decisions:
            return
        source, info, recorded = taken.served[0]
        if not isinstance(source, ArtifactSource) or not isinstance(info, BlobInfo):
            return
        if source.headers.get("Cache-Control") != IMMUTABLE["Cache-Control"]:
            return  # replaced by design (a -SNAPSHOT): always looked up
        until = self._until(taken, epoch, started)
        if until is not None:
            headers = self._pipeline.stored_headers(source, info)
            headers = headers._replace(
                prepared=prepared_head(headers.whole.items(), info.size))
            self._entries[key] = WarmHit(
                tuple(taken.decisions), tuple(d[:3] for d in taken.documents), source,
                info, recorded, epoch, until, headers=headers)

    def remember_page(self, key: Key, taken: Note, epoch: int, started: float,
                      response: web.StreamResponse) -> None:
        """Keep a page answered from fresh metadata under ``key``, with its answer."""
        if (taken.spoiled or taken.served or not taken.decisions or not taken.documents
                or type(response) is not web.Response or response.status not in (200, 304)
                or response.headers.get("X-Stockade-Cache") != "hit"
                or "X-Stockade-Refused" in response.headers):
            return
        body = response.body if response.status == 200 else b""
        if not isinstance(body, bytes) or len(body) > PAGE_MAX_BYTES:
            return
        until = self._until(taken, epoch, started)
        if until is not None:
            headers = tuple((k, v) for k, v in response.headers.items()
                            if k.lower() not in _OWN_HEADERS)
            prepared = (prepared_head(headers, len(body)) if response.status == 200
                        else None)
            self._entries[key] = WarmHit(
                tuple(taken.decisions), tuple(d[:3] for d in taken.documents), None, None,
                False, epoch, until, (body, headers, response.status), prepared=prepared)

    def _until(self, taken: Note, epoch: int, started: float) -> float | None:
        until = min([started + self.validity_s, *(d[3] for d in taken.documents)])
        if until <= self.now() or epoch != self._metacache.epoch:
            return None
        return until

    async def answer(self, request: web.Request, key: Key,
                     who: Caller) -> web.StreamResponse | None:
        """The answer from the entry under ``key``, or None where there is none that is
        still good (the request is then served the slow way).

        Raises:
            RefusedError: the policy in force refuses it now.
        """
        hit = self._good(key)
        if hit is None:
            return None
        held = None
        if hit.source is not None and hit.info is not None:
            stored, held = await self._pipeline.still_held(hit.source, hit.info)
            if not stored:
                self._entries.pop(key, None)
                return None
        gate = self._gate
        if hit.page is not None:
            engine = gate.engine_for(who.team)
            verdicts = [(engine.decide(ref, facts), ref) for ref, facts in hit.decisions]
            if any(verdict.blocks for verdict, _ in verdicts):
                # a page refused by name is still served, listing the files: the slow way
                self._entries.pop(key, None)
                return None
            self._count_documents(hit)
            for verdict, ref in verdicts:  # decided once, counted and recorded as ever
                if verdict.decision is Decision.ALLOW:
                    gate.count_allowed(verdict, ref)
                else:
                    await gate.account(verdict, ref, client=who.client,
                                       request_id=who.request_id, identity=who.identity,
                                       team=who.team)
            self.hits += 1
            body, headers, status = hit.page
            if hit.prepared is not None:
                return PreparedResponse(hit.prepared, body)
            return web.Response(status=status, body=body if status == 200 else None,
                                headers=headers)
        self._count_documents(hit)
        for ref, facts in hit.decisions:
            # as gate.decide, with no coroutine for an ALLOW
            verdict = gate.decide_allowed(ref, facts, team=who.team)
            if verdict.decision is Decision.ALLOW:
                continue
            await gate.account(verdict, ref, client=who.client, request_id=who.request_id,
                               identity=who.identity, team=who.team)
            if verdict.blocks:
                self._entries.pop(key, None)
                raise RefusedError(verdict)
        self.hits += 1
        assert hit.source is not None
        assert hit.info is not None
        return self._pipeline.answer_stored(request, hit.source, hit.info, hit.recorded, held,
                                            headers=hit.headers)

    def _good(self, key: Key) -> WarmHit | None:
        """The entry under ``key`` while it may still be answered from (a stale one is
        dropped)."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        metacache = self._metacache
        if metacache.before_get is not None:
            metacache.before_get()  # another worker's purge
        stale = self.now() >= hit.until or metacache.epoch != hit.epoch
        for _, document, version in hit.documents:
            stale = stale or metacache.current(document) != version
        if stale:
            self._entries.pop(key, None)
            return None
        return hit

    def answer_now(self, request: web.Request, key: Key, who: Caller) -> PreparedResponse | None:
        """``answer`` where it takes no coroutine and answers with a ``PreparedResponse``
        (every decision an ALLOW, the blob held in memory, a page's 200); else None,
        nothing counted or recorded, for ``answer`` to serve it (the connection's fast
        path: ``fastpath``)."""
        hit = self._good(key)
        if hit is None:
            return None
        if hit.page is not None:
            body: bytes | None = hit.page[0] if hit.prepared is not None else None
        else:
            assert hit.info is not None
            body = self._pipeline.held_prepared(request, hit.info, hit.headers)
        if body is None:
            return None
        if not self._allowed_now(hit, who.team):
            return None  # counted, recorded and refused the slow way
        if hit.prepared is not None:
            return PreparedResponse(hit.prepared, body)
        assert hit.source is not None
        assert hit.info is not None
        response = self._pipeline.answer_stored(request, hit.source, hit.info, hit.recorded,
                                                body, headers=hit.headers)
        assert type(response) is PreparedResponse  # (held_prepared said so)
        return response

    def answer_plain(self, raw_path: str, client: str) -> tuple[PreparedHead, bytes] | None:
        """``answer_now`` for an anonymous GET of an artifact's ``raw_path`` from
        ``client``, without ``Range`` or ``If-None-Match``: what the connection's fast
        path answers without making a request (the same decisions, counts, checks and
        record), as the prepared head and the body of the ``PreparedResponse`` it would
        be; None where ``answer_now`` would not answer (nothing counted)."""
        hit = self._good((raw_path, None, self._gate.engine_for(None).revision))
        if hit is None or hit.page is not None or hit.info is None:
            return None
        headers = hit.headers
        body = self._pipeline.held_plain(hit.info, headers)
        if body is None or not self._allowed_now(hit, None):
            return None
        assert hit.source is not None
        assert headers is not None  # (held_plain found the bytes: prepared headers)
        return self._pipeline.answer_plain(hit.source, hit.info, hit.recorded, headers,
                                           client), body

    def _allowed_now(self, hit: WarmHit, team: str | None) -> bool:
        """Whether the policy in force for ``team`` allows each of ``hit``'s decisions
        now; where it does, they and the documents used are counted, and the hit."""
        gate = self._gate
        engine = gate.engine_for(team)
        verdicts = [(engine.decide(ref, facts), ref) for ref, facts in hit.decisions]
        for verdict, _ in verdicts:
            if verdict.decision is not Decision.ALLOW:
                return False
        self._count_documents(hit)
        for verdict, ref in verdicts:
            gate.count_allowed(verdict, ref)
        self.hits += 1
        return True

    def route(self, raw_path: str) -> UrlMappingMatchInfo | None:
        """What the application's router matched for a GET of ``raw_path`` answered
        from this memo before (the fast path answers only those)."""
        return self._routes.get(raw_path)

    def _count_documents(self, hit: WarmHit) -> None:
        for eco, _, _ in hit.documents:
            self._metacache.count_hit(eco)


def _size(hit: WarmHit) -> int:
    """What ``hit`` counts for against ``MEMO_BYTES``."""
    return ENTRY_BYTES + (len(hit.page[0]) if hit.page is not None else 0)


WarmStage = Callable[[web.Request, _HANDLERS], Awaitable[web.StreamResponse]]


def make_warm_stage(memo_of: Callable[[web.Application], WarmMemo | None]) -> WarmStage:
    """What ``responses.make_middleware`` runs after the access check: answer artifact
    requests and pages from the application's memo, and fill it."""
    found_for: list[tuple[web.Application, WarmMemo]] = []  # the memo, once there is one

    async def stage(request: web.Request, handler: _HANDLERS) -> web.StreamResponse:
        page = _HOT_ROUTES.get(request.match_info.route.name)
        if page is None or request.method not in _READS:
            response: web.StreamResponse = await handler(request)
            return response
        app = request.app
        if found_for and found_for[0][0] is app:
            memo: WarmMemo | None = found_for[0][1]
        else:
            memo = memo_of(app)
            if memo is not None:
                found_for[:] = [(app, memo)]
        if memo is None:
            response = await handler(request)
            return response
        who = caller(request)
        key = memo.key(request, who, page)
        found = await memo.answer(request, key, who)
        if found is not None:
            return found
        epoch, started = memo.epoch, memo.now()
        taken, token = open_note()
        try:
            response = await handler(request)
        except BaseException:
            taken.spoil()
            raise
        finally:
            close_note(token)
        if page:
            memo.remember_page(key, taken, epoch, started, response)
        else:
            memo.remember(key, taken, epoch, started)
        if request.method == "GET" and key in memo:
            memo.remember_route(request)
        return response

    return stage
