"""npm: ``/npm/`` is a registry root that npm, pnpm and yarn use unchanged.

Owns turning registry requests into package references, the upstream's full
packument into the full or abbreviated document the client asked for
(filtered by policy, tarball and attestation URLs rewritten to absolute proxy
URLs, rendered once per document version, policy revision and form, and served
from disk with gzip), each tarball request into an ``ArtifactSource`` verified
against ``dist.integrity`` and ``dist.shasum``, and the registry's side
endpoints (keys, attestations, audit, ping). Fetching, caching and verifying
are the shared pipeline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote

import orjson
from aiohttp import web

from stockade.policy.model import Ecosystem, Facts, PackageRef, Verdict
from stockade.proxy.admission import ITEM_BYTES, Admission, caller
from stockade.proxy.ecosystems import npm_documents as docs
from stockade.proxy.ecosystems import npm_provenance
from stockade.proxy.ecosystems.base import Documents, json_object
from stockade.proxy.errors import (
    BadRequestError,
    HostNotAllowedError,
    IntegrityError,
    NotFoundError,
    RefusedError,
    UpstreamError,
)
from stockade.proxy.gate import VersionFilter
from stockade.proxy.metadocs import CachedDoc, CacheResult
from stockade.proxy.origin import origin
from stockade.proxy.pipeline import ArtifactSource
from stockade.proxy.rendered import LARGE_BYTES, Rendered, respond
from stockade.proxy.responses import IMMUTABLE
from stockade.proxy.routing import Route
from stockade.proxy.state import services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError

logger = logging.getLogger(__name__)

ECO = Ecosystem.NPM
PREFIX = "/npm"
_OFFLOAD_BYTES = 256 * 1024
# Versions per part of a large packument's index read back in the serving process:
# a part of 256 held the event loop for 30 to 145 ms while twenty large documents
# went cold at once (each version's facts rebuilt when unpickled).
_INDEX_PART = 64
_AUDIT_MAX_BYTES = 16 * 1024 * 1024


def setup(app: web.Application) -> None:
    """Register the npm routes, under ``/npm/`` and the root aliases npm builds."""
    add = app.router.add_route
    for base, tag in ((PREFIX, ""), ("", "root-")):
        add("GET", f"{base}/-/npm/v1/keys", keys, name=f"npm:{tag}keys")
        add("GET", f"{base}/-/npm/v1/attestations/{{spec:.+}}", attestations,
            name=f"npm:{tag}attestations")
        add("POST", f"{base}/-/npm/v1/security/advisories/bulk", advisories,
            name=f"npm:{tag}audit")
        add("GET", f"{base}/@{{scope}}/{{name}}/-/{{file}}", tarball,
            name=f"npm:{tag}tarball-scoped")
        add("GET", f"{base}/{{name}}/-/{{file}}", tarball, name=f"npm:{tag}tarball")
    add("GET", f"{PREFIX}/-/ping", ping, name="npm:ping")
    add("POST", f"{PREFIX}/-/npm/v1/security/audits/quick", quick_audit, name="npm:audit-quick")
    add("GET", f"{PREFIX}/-/v1/search", search, name="npm:search")
    add("GET", f"{PREFIX}/@{{scope}}/{{name}}", packument, name="npm:packument-scoped")
    add("GET", f"{PREFIX}/@{{scope}}/{{name}}/{{version}}", version_doc, name="npm:version-scoped")
    add("GET", f"{PREFIX}/{{name}}", packument, name="npm:packument")
    add("GET", f"{PREFIX}/{{name}}/{{version}}", version_doc, name="npm:version")


def _name(request: web.Request) -> str:
    scope = request.match_info.get("scope")
    raw = request.match_info["name"]
    name = f"@{scope}/{raw}" if scope is not None else raw
    if not docs.valid_name(name):
        raise BadRequestError(f"{name!r} is not a valid npm package name")
    return name


def _base(request: web.Request) -> str:
    return f"{origin(request, services(request).settings.server)}{PREFIX}/"


# Packuments are rendered once with this base, then given each client's base by a
# plain byte substitution: a new Host value costs a copy, not a render. The token
# is drawn per process, so no upstream document can contain it.
_PLACEHOLDER = f"http://stockade-{secrets.token_hex(8)}.invalid{PREFIX}/"


def _rebase(path: Path, placeholder: bytes, base: bytes) -> bytes:
    """A rendered packument with the placeholder base replaced (runs in a worker,
    which has a placeholder of its own: the caller's is passed)."""
    return path.read_bytes().replace(placeholder, base)


async def _document(adm: Documents, upstream: Upstream, name: str, *,
                    body: bool = True) -> CachedDoc:
    """The upstream's full packument (the abbreviated one lacks ``time``); without
    ``body``, a large one may come without it, for the warm path."""
    return await adm.document(ECO, upstream, document_url(upstream.url, name), accept=docs.FULL,
                              body=body)


async def _with_body(adm: Documents, doc: CachedDoc, upstream: Upstream,
                     name: str) -> CachedDoc:
    """``doc`` with its body, read only when a parse or a rendering needs it."""
    return doc if doc.has_body else await _document(adm, upstream, name)


async def _stored_file(adm: Documents, doc: CachedDoc) -> Path | None:
    """The file of a large document's stored body, for the worker process parsing or
    rendering it to read itself: the body is then neither read into the serving
    process nor copied to the worker through a pipe. None where the body is here
    already, small, or not stored."""
    if doc.has_body or doc.size < LARGE_BYTES or doc.digest is None:
        return None
    return await adm.stored_body(doc)


def document_url(upstream_url: str, name: str) -> str:
    """Where an upstream serves ``name``'s packument."""
    return f"{upstream_url.rstrip('/')}/{docs.escape(name)}"


async def _index(adm: Documents, doc: CachedDoc, name: str,
                 upstream: Upstream) -> docs.PackumentIndex:
    """The tarball table and version facts of ``doc``, parsed once per document version."""

    async def parse() -> docs.PackumentIndex:
        try:
            async with adm.large(doc.size):  # the body is read in the slot, not before
                parts = None
                if (path := await _stored_file(adm, doc)) is not None:
                    with contextlib.suppress(docs.BodyChangedError):  # then read here
                        parts = await adm.offload(
                            True, docs.index_parts_of_file, path, doc.digest, name,
                            upstream=upstream.name, internal=upstream.internal,
                            per=_INDEX_PART)
                if parts is None:
                    full = await _with_body(adm, doc, upstream, name)
                    if full.size <= _OFFLOAD_BYTES:
                        return await adm.offload(False, docs.index, full.body, name,
                                                 upstream=upstream.name,
                                                 internal=upstream.internal)
                    parts = await adm.offload(True, docs.index_parts, full.body, name,
                                              upstream=upstream.name,
                                              internal=upstream.internal, per=_INDEX_PART)
            return await docs.join_index(parts)  # read back a part at a time
        except docs.PackumentError as exc:
            raise UpstreamError(
                f"upstream {upstream.name} sent an unreadable packument for {name}: {exc}",
                upstream=upstream.name,
            ) from exc

    return await adm.parsed(doc, "npm-index", parse,
                            lambda index: ITEM_BYTES * len(index.facts))


async def _packument(
    adm: Documents, upstreams: Route[Upstream], name: str, doc: CachedDoc | None = None,
) -> tuple[CachedDoc, docs.PackumentIndex]:
    # Parsed once per document version: a warm request needs no body.
    if doc is None:
        doc = _light(await _document(adm, upstreams.owner, name, body=False))
    return doc, await _index(adm, doc, name, upstreams.owner)


def _light(doc: CachedDoc) -> CachedDoc:
    """``doc``, without its body if it is large: a document just fetched is not held
    while its request waits for a render slot (it is read again inside it)."""
    if doc.has_body and doc.size >= LARGE_BYTES:
        return dataclasses.replace(doc, body=b"", length=doc.size)
    return doc


async def versions(adm: Documents, upstreams: Route[Upstream], name: str) -> dict[str, Facts]:
    """Every version's facts from the packument (for the admission path)."""
    _, index = await _packument(adm, upstreams, name)
    return index.facts


def _newest_refusal(verdicts: Mapping[str, Verdict], facts: Mapping[str, Facts]) -> Verdict:
    def when(version: str) -> str:
        published = facts[version].published_at if version in facts else None
        return published.isoformat() if published else ""

    return verdicts[max(verdicts, key=when)]


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a packument request is answered with, kept small: no body, no index."""

    rendered: Rendered
    doc: CachedDoc  # without its body
    filtered: str | None  # the X-Stockade-Filtered header
    refusal: Verdict | None  # every version is refused: the newest one's verdict
    key: str  # the rendered document's, to see it is still held


async def packument(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>``: the full or abbreviated document, filtered by policy."""
    name = _name(request)
    svc = services(request)
    who = caller(request)
    # every version is decided on the packument's facts next (a look-alike held or
    # allowed on its age), so the name alone does not refuse what the loose tier decides
    upstreams = await svc.admission.admit_name(ECO, name, who, project_follows=True)
    abbreviated = docs.CORGI in request.headers.get("Accept", "")
    answer = await _answer(request, upstreams, name, abbreviated=abbreviated)
    if answer.refusal is not None:
        # Every version is refused: say why rather than "no matching version".
        raise RefusedError(answer.refusal)
    headers = {
        "Content-Type": (docs.CORGI if abbreviated else docs.FULL) + "; charset=utf-8",
        "Vary": "Accept, Accept-Encoding", "ETag": answer.rendered.etag,
        "Cache-Control": "public, max-age=60", "X-Stockade-Cache": answer.doc.result.value,
        "X-Stockade-Policy-Revision": svc.admission.gate.engine_for(who.team).revision,
    }
    if answer.filtered is not None:
        headers["X-Stockade-Filtered"] = answer.filtered
    return respond(request, answer.rendered, headers, svc.pipeline.accel)


async def _answer(request: web.Request, upstreams: Route[Upstream], name: str, *,
                  abbreviated: bool) -> _Answer:
    """The answer for the packument as the cache holds it; or, while the answer for a
    changed document is made (parsed, decided, rendered: seconds for a large one),
    the last one made for the same form, origin and policy, its cache result
    ``stale`` (``successions``)."""
    svc = services(request)
    doc = _light(await _document(svc.admission, upstreams.owner, name, body=False))
    revision = svc.admission.gate.engine_for(caller(request).team).revision
    family = "|".join((doc.key, "corgi" if abbreviated else "full", _base(request), revision))

    async def make() -> _Answer:
        rendered, index, made, vf, key = await _rendered(request, upstreams, name,
                                                         abbreviated=abbreviated, doc=doc)
        refusal = None
        if vf.refused and not set(index.facts) - vf.refused:
            blocking = {v: vf.verdicts[v] for v in vf.refused}
            refusal = _newest_refusal(blocking, index.facts)
        return _Answer(rendered, dataclasses.replace(made, body=b"", length=made.size),
                       vf.header(), refusal, key)

    def held(answer: _Answer) -> bool:
        return svc.rendered.peek(answer.key, max_age_s=math.inf) is not None

    def kept(answer: _Answer) -> _Answer:  # not the bodies the rendered cache may shed
        return dataclasses.replace(answer, rendered=dataclasses.replace(
            answer.rendered, body=None, gzipped=None))

    # the request that fetched the changed document waits for its answer, as before
    found, stale = await svc.rendered.successions.answer(
        family, doc.version, make, held, wait=doc.result is CacheResult.MISS, keep=kept)
    answer = cast(_Answer, found)
    if not stale:
        return answer
    rendered = svc.rendered.peek(answer.key, max_age_s=math.inf)  # held: just seen
    return dataclasses.replace(answer, rendered=rendered or answer.rendered,
                               doc=dataclasses.replace(answer.doc, result=CacheResult.STALE))


async def _rendered(
    request: web.Request, upstreams: Route[Upstream], name: str, *, abbreviated: bool,
    doc: CachedDoc | None = None,
) -> tuple[Rendered, docs.PackumentIndex, CachedDoc, VersionFilter, str]:
    svc = services(request)
    doc, index = await _packument(svc.admission, upstreams, name, doc)
    heavy = doc.size > _OFFLOAD_BYTES
    vf = await svc.admission.decide_versions(ECO, name, doc, index.facts, caller(request),
                                             offload=heavy)
    form = "corgi" if abbreviated else "full"
    hidden = vf.refused
    # The body depends on the document, the form and the versions hidden, nothing
    # else: teams whose policies hide the same versions share one rendering, and a
    # team's policy that hides more gets its own.
    hidden_id = hashlib.sha256("\n".join(sorted(hidden)).encode()).hexdigest()[:16]
    # Decisions can depend on time (release age): they are made again once per TTL,
    # and a rendering is kept as long as the document's bytes (its version, which a
    # revalidation finding the same bytes keeps) and the versions hidden are the same.
    key = f"{doc.key}|{doc.version}|{form}|{hidden_id}"
    rendered = svc.rendered.peek(key, max_age_s=math.inf)
    if rendered is None:

        async def make() -> Rendered:
            # the raw body is read only to render it, in a render slot, once for
            # the requests asking meanwhile
            # only read to make the rebased one below: no gzip sibling of its own
            opts = {"abbreviated": abbreviated, "hidden": hidden, "base": _PLACEHOLDER,
                    "hosts": upstreams.owner.hosts}
            async with svc.admission.large(doc.size):
                if (path := await _stored_file(svc.admission, doc)) is not None:
                    with contextlib.suppress(docs.BodyChangedError):  # then read here
                        return await svc.rendered.get(
                            key, docs.render_file, path, doc.digest, name, **opts,
                            heavy=heavy, max_age_s=math.inf, compress=False)
                full = await _with_body(svc.admission, doc, upstreams.owner, name)
                return await svc.rendered.get(
                    key, docs.render_body, full.body, name, **opts, heavy=heavy,
                    max_age_s=math.inf, compress=False)

        rendered = await svc.rendered.once(key, make)
    base = orjson.dumps(_base(request))[1:-1]  # as it stands inside a JSON string
    rebased_key = f"{key}|{rendered.etag}|{base.decode()}"
    rebased = await svc.rendered.get(
        rebased_key, _rebase, rendered.path, _PLACEHOLDER.encode(), base,
        heavy=heavy, max_age_s=math.inf,
    )
    return rebased, index, doc, vf, rebased_key


async def version_doc(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>/<version or tag>``: one version's manifest."""
    name = _name(request)
    spec = request.match_info["version"]
    if not docs.valid_version(spec):
        raise BadRequestError(f"{spec!r} is not a valid version or tag")
    adm = services(request).admission
    who = caller(request)
    upstreams = await adm.admit_name(ECO, name, who, project_follows=True)  # as packument
    rendered, index, doc, _, _ = await _rendered(request, upstreams, name, abbreviated=False)

    async def manifest() -> bytes | None:
        return await asyncio.to_thread(_manifest, rendered.path, spec)

    # Read out of the rendered packument once per rendering and spec, not per request.
    body = await adm.parsed(doc, f"npm-manifest|{rendered.etag}|{spec}", manifest,
                            lambda b: len(b or b""))
    if body is None:
        if spec in index.facts:  # hidden by policy: say why
            facts = await adm.version_facts(ECO, name, spec, index.facts, upstreams)
            await adm.admit(PackageRef(ECO, name, spec), facts, who)
        raise NotFoundError(f"{name}@{spec} is not in the registry")
    return web.Response(body=body, content_type="application/json")


def _manifest(path: Path, spec: str) -> bytes | None:
    return docs.manifest_of(path.read_bytes(), spec)


async def tarball(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>/-/<file>.tgz``: verified against the packument's integrity."""
    name = _name(request)
    filename = request.match_info["file"]
    if not filename.endswith(".tgz") or "/" in filename or not docs.valid_version(filename):
        raise BadRequestError(f"{filename!r} is not a tarball name")
    svc = services(request)
    adm = svc.admission
    upstreams = adm.route(ECO, name)
    upstream = upstreams.owner
    doc, index = await _packument(adm, upstreams, name)
    entry = index.tarballs.get(filename)
    if entry is None:
        raise NotFoundError(f"{filename} is not a tarball of {name} on upstream {upstream.name}")
    facts = await adm.version_facts(ECO, name, entry.version, index.facts, upstreams)
    url = upstream.resolve(entry.url, doc.url)
    if url is None:
        raise HostNotAllowedError(
            f"the packument of {name} points {filename} at {entry.url}, outside upstream "
            f"{upstream.name}; refusing to fetch it", upstream=upstream.name,
        )
    source = ArtifactSource(
        ecosystem=ECO, upstream=upstream, url=url, filename=filename,
        key=f"npm|{upstream.name}|{name}|{filename}", expected=_expected(entry, name),
        content_type="application/octet-stream", headers=IMMUTABLE, name=name,
        version=entry.version,
    )
    facts = await svc.pipeline.with_admitted(source, facts)
    await adm.admit_artifact(
        PackageRef(ECO, name, entry.version, filename), facts, caller(request),
        lambda known: npm_provenance.gather(adm, svc.provenance, upstream, name, entry,
                                            known, doc_url=doc.url))
    return await svc.pipeline.serve(request, source)


def _expected(entry: docs.Tarball, name: str) -> tuple[Digest, ...]:
    out = []
    try:
        for token in (entry.integrity or "").split():
            if token.split("-", 1)[0] in ("sha512", "sha256", "sha1"):
                out.append(Digest.from_sri(token.split("?", 1)[0]))
        if entry.shasum:
            out.append(Digest.parse("sha1", entry.shasum))
    except DigestError as exc:
        raise IntegrityError(
            f"upstream integrity for {name}@{entry.version} is malformed: {exc}"
        ) from exc
    if not out:
        raise IntegrityError(
            f"upstream publishes no integrity for {name}@{entry.version}; refusing it"
        )
    return tuple(dict.fromkeys(out))


def _public(adm: Admission) -> Upstream:
    for upstream in adm.upstreams[ECO]:
        if not upstream.internal:
            return upstream
    raise NotFoundError("no public npm upstream is configured")


async def _passthrough(adm: Admission, upstream: Upstream, path: str) -> web.Response:
    doc = await adm.document(ECO, upstream, f"{upstream.url.rstrip('/')}/{path}",
                             accept="application/json")
    return web.Response(body=doc.body, headers={
        "Content-Type": doc.content_type or "application/json",
        "X-Stockade-Cache": doc.result.value,
    })


async def keys(request: web.Request) -> web.StreamResponse:
    """``/-/npm/v1/keys``: the public registry's signing keys, untouched."""
    adm = services(request).admission
    return await _passthrough(adm, _public(adm), "-/npm/v1/keys")


async def attestations(request: web.Request) -> web.StreamResponse:
    """``/-/npm/v1/attestations/<name>@<version>``, from the upstream owning the name."""
    spec = request.match_info["spec"]
    name, sep, version = spec.rpartition("@")
    if not sep or not docs.valid_name(name) or not docs.valid_version(version):
        raise BadRequestError(f"{spec!r} is not <name>@<version>")
    adm = services(request).admission
    upstreams = await adm.admit_name(ECO, name, caller(request))
    path = f"-/npm/v1/attestations/{docs.escape(name)}@{quote(version)}"
    return await _passthrough(adm, upstreams.owner, path)


async def ping(request: web.Request) -> web.StreamResponse:
    """``/-/ping``: the registry is up (stockade answers itself)."""
    return web.json_response({})


async def search(request: web.Request) -> web.StreamResponse:
    """Search is not proxied: it would list names policy never decided on."""
    raise NotFoundError("stockade does not proxy npm search")


async def quick_audit(request: web.Request) -> web.StreamResponse:
    """The old audit endpoint sends the whole tree: refused so npm uses the bulk one."""
    raise NotFoundError("use /-/npm/v1/security/advisories/bulk (npm 7 and later)")


async def advisories(request: web.Request) -> web.StreamResponse:
    """Bulk advisories: each name asked of the upstream that owns it, answers merged."""
    body = await request.read()
    try:
        query = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError("the audit request is not JSON") from exc
    if not isinstance(query, dict) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in query.items()
    ):
        raise BadRequestError("the audit request is not {name: [versions]}")
    adm = services(request).admission
    groups: dict[str, tuple[Upstream, dict[str, list[str]]]] = {}
    for name, asked in query.items():
        if not docs.valid_name(name):
            continue
        upstream = adm.route(ECO, name).owner
        groups.setdefault(upstream.name, (upstream, {}))[1][name] = asked
    merged: dict[str, object] = {}
    for upstream, names in groups.values():
        merged.update(await _ask_advisories(upstream, names))
    return web.json_response(merged)


async def _ask_advisories(upstream: Upstream, names: dict[str, list[str]]) -> dict[str, object]:
    url = f"{upstream.url.rstrip('/')}/-/npm/v1/security/advisories/bulk"
    status, _, body = await upstream.post(
        url, orjson.dumps(names), content_type="application/json", max_bytes=_AUDIT_MAX_BYTES
    )
    if status in (404, 405, 501) and upstream.internal:
        return {}  # many internal registries have no advisory database: nothing found
    if status != 200:
        raise UpstreamError(
            f"upstream {upstream.name} answered {status} to the audit request",
            upstream=upstream.name,
        )
    answer = json_object(body, upstream.name, "the audit request")
    return {k: v for k, v in answer.items() if k in names}
