"""The admission path: the one way a name, a version or a file is let in.

Every ecosystem route, the explain API, ``stockade check`` and ``stockade
audit`` go through ``Admission``: route the name to its upstreams (``routing``),
decide the name (``gate``), fetch metadata with the ecosystem's cache settings
(``metacache``), read every version's facts out of it (the ecosystem module),
stamp them with first-seen times (``firstseen``), decide the versions, and
refuse what the policy refuses. A refusal ends the request as a
``RefusedError`` carrying the verdict; ``responses`` renders it in the form the
route's clients print.

The ecosystem modules keep the protocols: parsing requests, reading facts out
of their documents, rewriting metadata, naming artifacts and their digests.
The commands run the same path with a metadata cache and first-seen record
that only read what the server stored (``offline``), so they decide as the
server does without asking an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from aiohttp import web
from cachetools import LRUCache

from stockade.config.model import EcosystemSettings, Settings
from stockade.policy.model import Decision, Ecosystem, Facts, PackageRef, Verdict
from stockade.policy.names import normalize
from stockade.proxy.budget import BudgetedLRU, MemoryBudget, unbounded
from stockade.proxy.ecosystems.base import EcosystemModule
from stockade.proxy.errors import ProxyError, RefusedError
from stockade.proxy.firstseen import FirstSeen
from stockade.proxy.gate import Gate, VersionFilter
from stockade.proxy.identity import identity_of
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metadocs import CachedDoc
from stockade.proxy.provenance.checker import ProvenanceChecker, provenance_rule
from stockade.proxy.responses import request_id_of
from stockade.proxy.routing import Route, route
from stockade.proxy.singleflight import SingleFlight
from stockade.proxy.upstream import Upstream

T = TypeVar("T")


class Workers(Protocol):
    """Where CPU-heavy work on large documents runs (``RenderedCache``'s processes)."""

    async def compute(self, heavy: bool, fn: Callable[..., T], *args: Any,
                      **kwargs: Any) -> T: ...

    def large(self, size: int) -> contextlib.AbstractAsyncContextManager[None]: ...

_PARSED_BYTES = 100 * 1024 * 1024  # what parsed documents may hold, estimated
# What one version's or file's parsed facts take in memory, about (a PyPI page of
# 1,500 files parsed: some 0.8 MB): parsed documents are weighed with it.
ITEM_BYTES = 512
_DECISIONS_MAX = 4096  # documents whose version decisions are kept


class Caller(NamedTuple):
    """Who asked, as the decision log records it; ``team`` picks the policy. (A named
    tuple: made on every warm request, where a frozen dataclass's fields cost a call
    each.)"""

    client: str = ""
    request_id: str = ""
    identity: str = ""  # the token's name; "" when anonymous
    team: str | None = None


def caller(request: web.Request) -> Caller:
    """The caller of ``request``."""
    who = identity_of(request)
    if who is None:
        return Caller(request.remote or "", request_id_of(request))
    return Caller(request.remote or "", request_id_of(request), who.name, who.team)


def canonical(eco: Ecosystem, name: str) -> str:
    """The form of ``name`` that routes, records and URLs use: PEP 503 for PyPI; npm
    and Maven names as given (Maven paths are case-sensitive)."""
    return normalize(eco, name) if eco is Ecosystem.PYPI else name


def base_facts(upstreams: Route[Upstream], *, project_follows: bool = False) -> Facts:
    """What routing alone knows of a name: its upstream, and whether it is internal
    (``project_follows``: every version is then decided on the project's facts)."""
    return Facts(upstream=upstreams.owner.name, internal=upstreams.internal,
                 project_follows=project_follows)


class Admission:
    """Routing, deciding and metadata for every ecosystem, in one place."""

    def __init__(
        self,
        settings: Settings,
        *,
        gate: Gate,
        upstreams: Mapping[Ecosystem, tuple[Upstream, ...]],
        metacache: MetadataCache,
        first_seen: FirstSeen,
        ecosystems: Mapping[Ecosystem, EcosystemModule],
        workers: Workers | None = None,
        clock: Callable[[], float] = time.time,
        provenance: ProvenanceChecker | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.upstreams = upstreams
        self.metacache = metacache
        self.first_seen = first_seen
        self._ecosystems = ecosystems
        self._workers = workers
        self._clock = clock
        self.provenance = provenance  # verification results kept per digest and version
        # Parsed documents, weighed by the bytes they hold (estimated: one busy package
        # has thousands of versions, so a count of documents would not bound them).
        self._parsed: LRUCache[tuple[str, str], tuple[Any, int]] = BudgetedLRU(
            _PARSED_BYTES, lambda entry: entry[1], budget or unbounded(), "parsed")
        self._decisions: LRUCache[tuple[str, str, str], tuple[float, VersionFilter]] = \
            LRUCache(_DECISIONS_MAX)
        # what the last decisions of each document refused, as recorded
        self._recorded: LRUCache[tuple[str, str], frozenset[tuple[str, str, Decision, bool]]] \
            = LRUCache(_DECISIONS_MAX)
        # Concurrent requests for a document just fetched or revalidated share one
        # parse and one pass of decisions, rather than each making its own.
        self._parsing: SingleFlight[tuple[str, str], Any] = SingleFlight()
        self._deciding: SingleFlight[tuple[str, str, str], VersionFilter] = SingleFlight()

    def cache_settings(self, eco: Ecosystem) -> EcosystemSettings:
        """The settings of one ecosystem (its upstreams and cache times)."""
        settings: EcosystemSettings = getattr(self.settings, eco.value)
        return settings

    def route(self, eco: Ecosystem, name: str) -> Route[Upstream]:
        """The upstreams that serve ``name``.

        Raises:
            NotFoundError: no configured upstream may serve it.
        """
        return route(eco, name, self.upstreams[eco])

    # -- deciding -----------------------------------------------------------------

    async def decide_name(
        self, eco: Ecosystem, name: str, who: Caller, *, project_follows: bool = False
    ) -> tuple[Route[Upstream], Verdict]:
        """Route and decide a name, counting and recording a refusal."""
        upstreams = self.route(eco, name)
        facts = base_facts(upstreams, project_follows=project_follows)
        verdict = await self.gate.decide(PackageRef(eco, name), facts,
                                         client=who.client, request_id=who.request_id,
                                         identity=who.identity, team=who.team)
        return upstreams, verdict

    async def admit_name(self, eco: Ecosystem, name: str, who: Caller, *,
                         project_follows: bool = False) -> Route[Upstream]:
        """Route a name and let it in (``project_follows``: as ``base_facts``).

        Raises:
            RefusedError: the policy refuses the name.
        """
        upstreams, verdict = await self.decide_name(eco, name, who,
                                                    project_follows=project_follows)
        if verdict.blocks:
            raise RefusedError(verdict)
        return upstreams

    async def admit(self, ref: PackageRef, facts: Facts, who: Caller) -> Verdict:
        """Decide a version or file on its facts and let it in.

        Raises:
            RefusedError: the policy refuses it.
        """
        verdict = await self.gate.decide(ref, facts, client=who.client,
                                         request_id=who.request_id, identity=who.identity,
                                         team=who.team)
        if verdict.blocks:
            raise RefusedError(verdict)
        return verdict

    async def admit_artifact(self, ref: PackageRef, facts: Facts, who: Caller,
                             gather: Callable[[Facts], Awaitable[Facts]]) -> Verdict:
        """``admit`` for a file whose provenance ``gather`` adds to ``facts``: a file the
        policy refuses on what is already known is refused before anything is
        fetched or verified for it (a typosquat's attestations are never asked for).

        Raises:
            RefusedError: the policy refuses it.
        """
        if self.gate.engine_for(who.team).decide(ref, facts).blocks:
            return await self.admit(ref, facts, who)  # refuses, counted and recorded
        return await self.admit(ref, await gather(facts), who)

    async def decide_versions(
        self, eco: Ecosystem, name: str, doc: CachedDoc | Sequence[CachedDoc],
        facts: Mapping[str, Facts], who: Caller, *, offload: bool = False,
    ) -> VersionFilter:
        """Every version of ``doc`` (or of documents merged, as Maven's upstreams'
        metadata are) decided, reused per document version and policy.

        Decisions can depend on time (release age), so they are made again at least
        once per metadata TTL. ``facts`` come straight from the document; first-seen
        times are added here, and only when the decisions are made. What they refuse
        is counted and recorded once per document version (again only if a later
        pass decides otherwise), with the caller who first asked; callers asking
        while they are made share them.
        """
        docs = (doc,) if isinstance(doc, CachedDoc) else tuple(doc)
        doc_key = "+".join(d.key for d in docs)
        # per team: a team's policy may hide versions the global one keeps
        key = (doc_key, "+".join(d.version for d in docs),
               self.gate.engine_for(who.team).revision)
        now = self._clock()
        found = self._decisions.get(key)
        if found is not None and now - found[0] < self.cache_settings(eco).cache.metadata_ttl_s:
            return found[1]

        async def decide() -> VersionFilter:
            return await self._decide_versions(eco, name, doc_key, key, facts, who,
                                               offload=offload)

        return await self._deciding.do(key, decide)

    async def _decide_versions(
        self, eco: Ecosystem, name: str, doc_key: str, key: tuple[str, str, str],
        facts: Mapping[str, Facts], who: Caller, *, offload: bool,
    ) -> VersionFilter:
        now = self._clock()
        ref = PackageRef(eco, name)
        seen = await self.first_seen.annotate(eco, name, facts)
        history = self._history()
        if history is not None:  # versions stockade verified count (downgrades)
            seen = await history.with_histories(eco, name, seen)
        if offload:  # a large document: in parts, the loop running between them
            decided = await self.gate.filter_versions_in_parts(ref, seen, who.team)
        else:
            decided = self.gate.filter_versions(ref, seen, who.team)
        refused = frozenset((v, x.rule, x.decision, x.audit_only)
                            for v, x in decided.verdicts.items()
                            if x.decision is not Decision.ALLOW)
        if self._recorded.get((doc_key, key[2])) != refused:
            # a revalidated document that decides as before is not recorded again
            self._recorded[(doc_key, key[2])] = refused
            await self.gate.record_versions(ref, decided, client=who.client,
                                            request_id=who.request_id,
                                            identity=who.identity, team=who.team)
        self._decisions[key] = (now, decided)
        return decided

    async def version_facts(
        self, eco: Ecosystem, name: str, version: str | None, every: Mapping[str, Facts],
        upstreams: Route[Upstream], *, complete: bool = True,
    ) -> Facts:
        """One version's facts with its first-seen time (routing's facts if it is unknown)."""
        if version is None or version not in every:
            return base_facts(upstreams)
        seen = await self.first_seen.annotate(eco, name, every, only=version,
                                              complete=complete)
        history = self._history()
        if history is None:
            return seen[version]
        # versions stockade verified count as having had provenance (downgrades)
        return await history.with_history(PackageRef(eco, name, version), every,
                                           seen[version])

    def _history(self) -> ProvenanceChecker | None:
        """The provenance service, where the policy in force has a provenance rule."""
        if self.provenance is None or provenance_rule(self.gate.engine) is None:
            return None
        return self.provenance

    # -- metadata -------------------------------------------------------------------

    async def document(
        self, eco: Ecosystem, upstream: Upstream, url: str, *, accept: str,
        ttl_s: float | None = None, body: bool = True,
    ) -> CachedDoc:
        """An upstream document through the metadata cache, with the ecosystem's times
        (without ``body``, a large one may come without it: ``MetadataCache.get``).

        Raises:
            UpstreamError: the upstream failed and no usable copy is cached.
        """
        cache = self.cache_settings(eco).cache
        ttl = cache.metadata_ttl_s if ttl_s is None else ttl_s
        return await self.metacache.get(
            eco, upstream, url, accept=accept, ttl_s=ttl,
            stale_if_error_s=max(ttl, cache.stale_if_error_s), body=body,
        )

    async def stored_body(self, doc: CachedDoc) -> Path | None:
        """The file of ``doc``'s stored body, for a worker process to read it (see
        ``MetadataCache.body_file``); None where there is none."""
        return await self.metacache.body_file(doc)

    async def offload(self, heavy: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` off the event loop: in a worker process when ``heavy``
        and the server has them, else in a thread."""
        if self._workers is not None:
            return await self._workers.compute(heavy, fn, *args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def large(self, size: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the server's render slots while working on a document of ``size``
        bytes, if it is that large (at once otherwise, and without workers)."""
        if self._workers is not None:
            return self._workers.large(size)
        return contextlib.nullcontext()

    async def parsed(
        self, doc: CachedDoc, kind: str, parse: Callable[[], Awaitable[T]],
        weight: Callable[[T], int],
    ) -> T:
        """What ``parse`` makes of ``doc``, made once per document version (callers
        asking while it is made share it); ``weight``: the bytes it holds, about
        (``ITEM_BYTES`` per version or file parsed)."""
        key = (f"{kind}|{doc.key}", doc.version)
        found = self._parsed.get(key)
        if found is not None:
            return cast(T, found[0])

        async def made() -> T:
            value = await parse()
            # an entry larger than the budget is not held (``BudgetedLRU``)
            self._parsed[key] = (value, 1 + weight(value))
            return value

        return cast(T, await self._parsing.do(key, made))

    def parsed_held(self, doc_key: str, version: str, kind: str) -> Any | None:
        """What ``parsed`` made of a document's ``version`` as ``kind``, if still held."""
        found = self._parsed.get((f"{kind}|{doc_key}", version))
        return None if found is None else found[0]

    async def versions(self, eco: Ecosystem, name: str) -> tuple[Facts, dict[str, Facts]]:
        """The name's facts and every version's, with first-seen times (explain, check).

        Raises:
            ProxyError: the metadata cannot be had (never fetched, upstream down).
        """
        name = canonical(eco, name)
        upstreams = self.route(eco, name)
        every = await self._ecosystems[eco].versions(self, upstreams, name)
        return base_facts(upstreams), await self.first_seen.annotate(eco, name, every)

    async def facts(self, ref: PackageRef, upstream: str | None = None) -> Facts:
        """A name's or version's facts as the metadata the server holds gives them
        (for ``check`` and ``audit``); routing's facts where none is held.

        ``upstream`` names the upstream a cached file came from, where routing
        offers more than one.
        """
        name = canonical(ref.ecosystem, ref.name)
        upstreams = self.route(ref.ecosystem, name)
        chosen = next((u for u in upstreams.upstreams if u.name == upstream), None)
        if chosen is not None:
            upstreams = Route((chosen,))
        base = base_facts(upstreams)
        if ref.version is None:
            return base
        try:
            every = await self._ecosystems[ref.ecosystem].versions(self, upstreams, name)
        except ProxyError:
            every = {}  # never cached, or unreadable: decided on what routing knows
        if ref.version in every:  # decided on the listing, as the server decides it
            seen = await self.first_seen.annotate(ref.ecosystem, name, every,
                                                  only=ref.version)
        else:  # no listing holds it: only what was recorded, nothing assumed
            seen = await self.first_seen.annotate(ref.ecosystem, name, {ref.version: base},
                                                  complete=False)
        facts = dataclasses.replace(seen[ref.version], upstream=base.upstream,
                                    internal=base.internal)
        versioned = PackageRef(ref.ecosystem, name, ref.version)
        history = self._history()
        if history is not None and ref.version in every:
            facts = await history.with_history(versioned, every, facts)
        return await self.known_provenance(versioned, facts)

    async def known_provenance(self, ref: PackageRef, facts: Facts) -> Facts:
        """``facts`` with the provenance the server verified for the version, where it
        did (nothing is verified here: ``check``, ``audit`` and explain only read)."""
        if self.provenance is None or facts.provenance is not None:
            return facts
        known = await self.provenance.known_version(ref)
        return facts if known is None else dataclasses.replace(facts, provenance=known)
