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
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import quote

import orjson
from aiohttp import web

from stockade.config.model import UpstreamSettings
from stockade.policy.model import Ecosystem, Facts, PackageRef, Verdict
from stockade.proxy.ecosystems import npm_documents as docs
from stockade.proxy.ecosystems.base import json_object
from stockade.proxy.errors import (
    BadRequestError,
    HostNotAllowedError,
    IntegrityError,
    NotFoundError,
    UpstreamError,
)
from stockade.proxy.gate import VersionFilter
from stockade.proxy.metacache import CachedDoc, doc_key, read_stored
from stockade.proxy.pipeline import ArtifactSource
from stockade.proxy.rendered import Rendered
from stockade.proxy.responses import IMMUTABLE, REQUEST_ID, refusal
from stockade.proxy.routing import pick_upstream
from stockade.proxy.state import Services, services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)

ECO = Ecosystem.NPM
PREFIX = "/npm"
_INDEX_MAX = 4096  # packuments whose tarball index is kept in memory
_INDEX_MAX_VERSIONS = 200_000  # versions across those indexes (about 100 MB)
_OFFLOAD_BYTES = 256 * 1024
_AUDIT_MAX_BYTES = 16 * 1024 * 1024


_indexes: web.AppKey[OrderedDict[str, docs.PackumentIndex]] = web.AppKey("npm_indexes", OrderedDict)
# Version decisions per document version and policy revision, with when they were made.
_decisions: web.AppKey[OrderedDict[str, tuple[float, VersionFilter]]] = web.AppKey(
    "npm_decisions", OrderedDict
)


def setup(app: web.Application) -> None:
    """Register the npm routes, under ``/npm/`` and the root aliases npm builds."""
    app[_indexes] = OrderedDict()
    app[_decisions] = OrderedDict()
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


def _client(request: web.Request) -> dict[str, str]:
    return {"client": request.remote or "", "request_id": request.get(REQUEST_ID, "")}


def _base(request: web.Request) -> str:
    return f"{request.url.origin()}{PREFIX}/"


async def _document(svc: Services, upstream: Upstream, name: str) -> CachedDoc:
    """The upstream's full packument (the abbreviated one lacks ``time``)."""
    cache = svc.ecosystem(ECO).cache
    return await svc.metacache.get(
        ECO, upstream, document_url(upstream.url, name), accept=docs.FULL,
        ttl_s=cache.metadata_ttl_s, stale_if_error_s=cache.stale_if_error_s,
    )


def document_url(upstream_url: str, name: str) -> str:
    """Where an upstream serves ``name``'s packument."""
    return f"{upstream_url.rstrip('/')}/{docs.escape(name)}"


def stored_facts(refs: RefStore, upstream: Upstream | UpstreamSettings,
                 name: str) -> dict[str, Facts]:
    """Every version's facts from the packument last cached for ``name`` (none if it
    was never fetched or no longer parses), without the network: for ``check`` and
    ``audit``."""
    doc = read_stored(refs, doc_key(ECO, upstream.name, document_url(upstream.url, name),
                                    docs.FULL))
    if doc is None:
        return {}
    try:
        packument = docs.parse(doc.body, name)
    except docs.PackumentError:
        return {}
    return docs.version_facts(packument, upstream=upstream.name, internal=upstream.internal)


def _remember(app: web.Application, key: str, index: docs.PackumentIndex) -> None:
    cache = app[_indexes]
    cache[key] = index
    cache.move_to_end(key)
    # Bounded by versions held, not documents: one busy package has thousands.
    held = sum(len(i.facts) for i in cache.values())
    while len(cache) > 1 and (len(cache) > _INDEX_MAX or held > _INDEX_MAX_VERSIONS):
        _, dropped = cache.popitem(last=False)
        held -= len(dropped.facts)


async def _index(
    app: web.Application, svc: Services, doc: CachedDoc, name: str, upstream: Upstream
) -> docs.PackumentIndex:
    """The tarball table and version facts of ``doc``, parsed once per document version."""
    key = f"{doc.key}|{doc.version}"
    found = app[_indexes].get(key)
    if found is not None:
        app[_indexes].move_to_end(key)
        return found
    try:
        index = await svc.rendered.compute(
            len(doc.body) > _OFFLOAD_BYTES, docs.index, doc.body, name,
            upstream=upstream.name, internal=upstream.internal,
        )
    except docs.PackumentError as exc:
        raise UpstreamError(
            f"upstream {upstream.name} sent an unreadable packument for {name}: {exc}",
            upstream=upstream.name,
        ) from exc
    _remember(app, key, index)
    return index


def _newest_refusal(verdicts: Mapping[str, Verdict], facts: Mapping[str, Facts]) -> Verdict:
    def when(version: str) -> str:
        published = facts[version].published_at if version in facts else None
        return published.isoformat() if published else ""

    return verdicts[max(verdicts, key=when)]


async def packument(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>``: the full or abbreviated document, filtered by policy."""
    name = _name(request)
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    ref = PackageRef(ECO, name)
    verdict = await svc.gate.decide(
        ref, Facts(upstream=upstream.name, internal=upstream.internal), **_client(request)
    )
    if verdict.blocks:
        return refusal(request, verdict)
    abbreviated = docs.CORGI in request.headers.get("Accept", "")
    rendered, index, doc, vf = await _rendered(
        request, svc, upstream, name, abbreviated=abbreviated
    )
    if vf.refused and not set(index.facts) - vf.refused:
        # Every version is refused: say why rather than "no matching version".
        blocking = {v: vf.verdicts[v] for v in vf.refused}
        return refusal(request, _newest_refusal(blocking, index.facts))
    headers = {
        "Content-Type": (docs.CORGI if abbreviated else docs.FULL) + "; charset=utf-8",
        "Vary": "Accept, Accept-Encoding", "ETag": rendered.etag,
        "Cache-Control": "public, max-age=60", "X-Stockade-Cache": doc.result.value,
        "X-Stockade-Policy-Revision": svc.gate.revision,
    }
    if (filtered := vf.header()) is not None:
        headers["X-Stockade-Filtered"] = filtered
    return web.FileResponse(rendered.path, headers=headers)


async def _rendered(
    request: web.Request, svc: Services, upstream: Upstream, name: str, *, abbreviated: bool
) -> tuple[Rendered, docs.PackumentIndex, CachedDoc, VersionFilter]:
    doc = await _document(svc, upstream, name)
    index = await _index(request.app, svc, doc, name, upstream)
    heavy = len(doc.body) > _OFFLOAD_BYTES
    vf = await _decide_versions(request.app, svc, doc, index, name, heavy=heavy)
    base = _base(request)
    form = "corgi" if abbreviated else "full"
    hidden = vf.refused
    hidden_id = hashlib.sha256("\n".join(sorted(hidden)).encode()).hexdigest()[:16]
    key = f"{doc.key}|{doc.version}|{form}|{base}|{hidden_id}"
    # Decisions can depend on time (release age): render again at least once per TTL.
    rendered = await svc.rendered.get(
        key, docs.render_body, doc.body, name, abbreviated=abbreviated, hidden=hidden,
        base=base, hosts=upstream.hosts, heavy=heavy,
        max_age_s=svc.ecosystem(ECO).cache.metadata_ttl_s,
    )
    return rendered, index, doc, vf


async def _decide_versions(
    app: web.Application, svc: Services, doc: CachedDoc, index: docs.PackumentIndex,
    name: str, *, heavy: bool,
) -> VersionFilter:
    """Every version decided, reused per document version and policy revision.

    Decisions can depend on time (release age), so they are made again at least
    once per metadata TTL.
    """
    key = f"{doc.key}|{doc.version}|{svc.gate.revision}"
    cache = app[_decisions]
    now = time.time()
    found = cache.get(key)
    if found is not None and now - found[0] < svc.ecosystem(ECO).cache.metadata_ttl_s:
        cache.move_to_end(key)
        return found[1]
    ref = PackageRef(ECO, name)
    facts = await svc.first_seen.annotate(ECO, name, index.facts)
    if heavy:
        vf = await asyncio.to_thread(svc.gate.filter_versions, ref, facts)
    else:
        vf = svc.gate.filter_versions(ref, facts)
    cache[key] = (now, vf)
    while len(cache) > _INDEX_MAX:
        cache.popitem(last=False)
    return vf


async def version_doc(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>/<version or tag>``: one version's manifest."""
    name = _name(request)
    spec = request.match_info["version"]
    if not docs.valid_version(spec):
        raise BadRequestError(f"{spec!r} is not a valid version or tag")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    facts = Facts(upstream=upstream.name, internal=upstream.internal)
    verdict = await svc.gate.decide(PackageRef(ECO, name), facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
    rendered, index, _, _ = await _rendered(request, svc, upstream, name, abbreviated=False)
    body = await asyncio.to_thread(_manifest, rendered.path, spec)
    if body is None:
        if spec in index.facts:
            ref = PackageRef(ECO, name, spec)
            verdict = await svc.gate.decide(ref, index.facts[spec], **_client(request))
            if verdict.blocks:
                return refusal(request, verdict)
        raise NotFoundError(f"{name}@{spec} is not in the registry")
    return web.Response(body=body, content_type="application/json")


def _manifest(path: object, spec: str) -> bytes | None:
    with open(path, "rb") as fh:  # type: ignore[call-overload]
        return docs.manifest_of(fh.read(), spec)


async def tarball(request: web.Request) -> web.StreamResponse:
    """``/npm/<name>/-/<file>.tgz``: verified against the packument's integrity."""
    name = _name(request)
    filename = request.match_info["file"]
    if not filename.endswith(".tgz") or "/" in filename or not docs.valid_version(filename):
        raise BadRequestError(f"{filename!r} is not a tarball name")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    doc = await _document(svc, upstream, name)
    index = await _index(request.app, svc, doc, name, upstream)
    entry = index.tarballs.get(filename)
    if entry is None:
        raise NotFoundError(f"{filename} is not a tarball of {name} on upstream {upstream.name}")
    if entry.version in index.facts:
        seen = await svc.first_seen.annotate(ECO, name, index.facts, only=entry.version)
        facts = seen[entry.version]
    else:
        facts = Facts(upstream=upstream.name, internal=upstream.internal)
    ref = PackageRef(ECO, name, entry.version, filename)
    verdict = await svc.gate.decide(ref, facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
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


def _public(svc: Services) -> Upstream:
    for upstream in svc.upstreams[ECO]:
        if not upstream.internal:
            return upstream
    raise NotFoundError("no public npm upstream is configured")


async def _passthrough(svc: Services, upstream: Upstream, path: str) -> web.Response:
    cache = svc.ecosystem(ECO).cache
    doc = await svc.metacache.get(
        ECO, upstream, f"{upstream.url.rstrip('/')}/{path}", accept="application/json",
        ttl_s=cache.metadata_ttl_s, stale_if_error_s=cache.stale_if_error_s,
    )
    return web.Response(body=doc.body, headers={
        "Content-Type": doc.content_type or "application/json",
        "X-Stockade-Cache": doc.result.value,
    })


async def keys(request: web.Request) -> web.StreamResponse:
    """``/-/npm/v1/keys``: the public registry's signing keys, untouched."""
    svc = services(request)
    return await _passthrough(svc, _public(svc), "-/npm/v1/keys")


async def attestations(request: web.Request) -> web.StreamResponse:
    """``/-/npm/v1/attestations/<name>@<version>``, from the upstream owning the name."""
    spec = request.match_info["spec"]
    name, sep, version = spec.rpartition("@")
    if not sep or not docs.valid_name(name) or not docs.valid_version(version):
        raise BadRequestError(f"{spec!r} is not <name>@<version>")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    verdict = await svc.gate.decide(
        PackageRef(ECO, name), Facts(upstream=upstream.name, internal=upstream.internal),
        **_client(request),
    )
    if verdict.blocks:
        return refusal(request, verdict)
    path = f"-/npm/v1/attestations/{docs.escape(name)}@{quote(version)}"
    return await _passthrough(svc, upstream, path)


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
    svc = services(request)
    groups: dict[str, tuple[Upstream, dict[str, list[str]]]] = {}
    for name, versions in query.items():
        if not docs.valid_name(name):
            continue
        upstream = pick_upstream(name, svc.upstreams[ECO])
        groups.setdefault(upstream.name, (upstream, {}))[1][name] = versions
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


async def known_versions(
    request: web.Request, name: str
) -> tuple[Facts, dict[str, Facts]]:
    """The name's facts and every version's, from the (cached) packument (explain API)."""
    if not docs.valid_name(name):
        raise BadRequestError(f"{name!r} is not a valid npm package name")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    base = Facts(upstream=upstream.name, internal=upstream.internal)
    doc = await _document(svc, upstream, name)
    index = await _index(request.app, svc, doc, name, upstream)
    return base, await svc.first_seen.annotate(ECO, name, index.facts)
