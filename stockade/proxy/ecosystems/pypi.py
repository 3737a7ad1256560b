"""PyPI: the Simple Repository API, its files and the JSON API, through policy.

Owns turning ``/pypi/...`` requests into package references, the upstream's
pages into filtered and rewritten ones, and each file request into an
``ArtifactSource`` with the digest the upstream's page published. Fetching,
caching and verifying are the shared pipeline's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urljoin

import orjson
from aiohttp import web

from stockade.config.model import UpstreamSettings
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.proxy.ecosystems import pypi_pages as pages
from stockade.proxy.ecosystems.base import json_object
from stockade.proxy.errors import BadRequestError, IntegrityError, NotFoundError, UpstreamError
from stockade.proxy.metacache import CachedDoc, doc_key, read_stored
from stockade.proxy.pipeline import ArtifactSource
from stockade.proxy.responses import IMMUTABLE, REQUEST_ID, refusal
from stockade.proxy.routing import pick_upstream
from stockade.proxy.state import Services, services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)

ECO = Ecosystem.PYPI
PREFIX = "/pypi"
_VERIFIABLE = ("sha256", "sha512", "blake2b_256", "sha1", "md5")
_OFFLOAD_BYTES = 256 * 1024  # parse larger pages off the event loop
_PARSED_MAX = 512

_parsed: web.AppKey[OrderedDict[str, pages.ProjectPage]] = web.AppKey(
    "pypi_parsed_pages", OrderedDict
)


def setup(app: web.Application) -> None:
    """Register the PyPI routes and state on ``app``."""
    app[_parsed] = OrderedDict()
    app.router.add_get(f"{PREFIX}/simple/", index, name="pypi:index")
    app.router.add_get(f"{PREFIX}/simple/{{name}}/", project, name="pypi:project")
    app.router.add_get(f"{PREFIX}/simple/{{name}}", project, name="pypi:project-noslash")
    app.router.add_get(f"{PREFIX}/files/{{name}}/{{filename}}", file, name="pypi:artifact")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/json", json_api, name="pypi:json")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/json/", json_api, name="pypi:json-slash")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/{{version}}/json", json_api,
                       name="pypi:json-version")
    app.router.add_get(
        f"{PREFIX}/pypi/{{name}}/{{version}}/json/", json_api, name="pypi:json-version-slash"
    )


def _name(request: web.Request) -> str:
    raw = request.match_info["name"]
    if not pages.valid_name(raw):
        raise BadRequestError(f"{raw!r} is not a valid Python project name")
    return pages.normalize(raw)


def _client(request: web.Request) -> dict[str, str]:
    return {"client": request.remote or "", "request_id": request.get(REQUEST_ID, "")}


async def _page(svc: Services, app: web.Application, upstream: Upstream, name: str) -> tuple[
    pages.ProjectPage, CachedDoc
]:
    """The upstream's project page, parsed, with foreign links dropped."""
    cache = svc.ecosystem(ECO).cache
    url = page_url(upstream.url, name)
    doc = await svc.metacache.get(
        ECO, upstream, url, accept=pages.UPSTREAM_ACCEPT,
        ttl_s=cache.metadata_ttl_s, stale_if_error_s=cache.stale_if_error_s,
    )
    parsed = app[_parsed]
    key = f"{doc.key}|{doc.version}"
    page = parsed.get(key)
    if page is None:
        page = await _parse(doc, name, upstream)
        parsed[key] = page
        while len(parsed) > _PARSED_MAX:
            parsed.popitem(last=False)
    else:
        parsed.move_to_end(key)
    return page, doc


async def _parse(doc: CachedDoc, name: str, upstream: Upstream) -> pages.ProjectPage:
    def work() -> pages.ProjectPage:
        page = pages.parse_project(doc.body, doc.content_type, doc.url, name)

        def link(entry: pages.FileEntry) -> str | None:
            resolved = upstream.resolve(entry.url, doc.url)
            if resolved is None or not pages.valid_filename(entry.filename):
                logger.warning("dropping %s of %s: link outside upstream %s",
                               entry.filename, name, upstream.name)
            return resolved if pages.valid_filename(entry.filename) else None

        return pages.rewrite_files(page, link)

    try:
        if len(doc.body) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(work)
        return work()
    except pages.PageError as exc:
        raise UpstreamError(
            f"upstream {upstream.name} sent an unreadable page for {name}: {exc}",
            upstream=upstream.name,
        ) from exc


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def page_url(upstream_url: str, name: str) -> str:
    """Where an upstream index serves ``name``'s project page."""
    return urljoin(upstream_url, f"{quote(name)}/")


def stored_facts(refs: RefStore, upstream: Upstream | UpstreamSettings,
                 name: str) -> dict[str, Facts]:
    """Every version's facts from the project page last cached for ``name`` (none if
    it was never fetched or no longer parses), without the network: for ``check`` and
    ``audit``."""
    name = pages.normalize(name)
    doc = read_stored(refs, doc_key(ECO, upstream.name, page_url(upstream.url, name),
                                    pages.UPSTREAM_ACCEPT))
    if doc is None:
        return {}
    try:
        page = pages.parse_project(doc.body, doc.content_type, doc.url, name)
    except pages.PageError:
        return {}
    return version_facts(page, upstream)


def version_facts(page: pages.ProjectPage,
                  upstream: Upstream | UpstreamSettings) -> dict[str, Facts]:
    """Facts per version from a project page (upload time, wheels, yanks)."""
    by_version: dict[str, list[pages.FileEntry]] = {}
    for entry in page.files:
        if (version := entry.version) is not None:
            by_version.setdefault(version, []).append(entry)
    facts = {}
    for version, entries in by_version.items():
        times = [t for e in entries if (t := _when(e.upload_time)) is not None]
        has_wheel = any(e.filename.endswith(".whl") for e in entries)
        facts[version] = Facts(
            upstream=upstream.name, internal=upstream.internal,
            published_at=min(times) if times else None,
            has_wheel=has_wheel, is_sdist=not has_wheel,
            yanked=all(bool(e.yanked) for e in entries),
        )
    return facts


async def project(request: web.Request) -> web.StreamResponse:
    """``/pypi/simple/<name>/`` in the negotiated format, filtered by policy."""
    raw = request.match_info["name"]
    name = _name(request)
    if raw != name or not request.path.endswith("/"):
        raise web.HTTPMovedPermanently(f"{PREFIX}/simple/{name}/")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    ref = PackageRef(ECO, name)
    verdict = await svc.gate.decide(
        ref, Facts(upstream=upstream.name, internal=upstream.internal), **_client(request)
    )
    try:
        page, doc = await _page(svc, request.app, upstream, name)
    except UpstreamError as exc:
        if verdict.blocks and exc.status == 404:
            return refusal(request, verdict)
        raise
    headers = {"Vary": "Accept", "X-Stockade-Cache": doc.result.value,
               "X-Stockade-Policy-Revision": svc.gate.revision}
    if verdict.blocks:
        # pip, uv and poetry never show why a page was refused; listing the
        # files and refusing their download puts the reason in front of the user.
        headers["X-Stockade-Refused"] = verdict.rule
    else:
        facts = await svc.first_seen.annotate(ECO, name, version_facts(page, upstream))
        vf = svc.gate.filter_versions(ref, facts)
        page = pages.drop_versions(page, vf.hidden)
        page, dropped = _drop_refused_sdists(svc, name, page, facts)
        if (filtered := vf.header()) is not None:
            headers["X-Stockade-Filtered"] = filtered
        if dropped:
            headers["X-Stockade-Filtered-Files"] = f"{dropped} source distributions hidden"
    page = pages.rewrite_files(page, lambda e: f"../../files/{name}/{quote(e.filename)}")
    ctype = pages.negotiate(request.headers.get("Accept"))
    body = pages.render_json(page) if ctype == pages.JSON_V1 else pages.render_html(page)
    return web.Response(body=body, headers={**headers, "Content-Type": ctype})


_SDIST = (".tar.gz", ".zip", ".tar.bz2")


def _drop_refused_sdists(svc: Services, name: str, page: pages.ProjectPage,
                         facts: Mapping[str, Facts]) -> tuple[pages.ProjectPage, int]:
    """Hide sdists the policy refuses where the same version has a wheel to install."""
    refused = []
    for entry in page.files:
        version = entry.version
        if version is None or not entry.filename.endswith(_SDIST):
            continue
        fact = facts.get(version)
        if fact is None or not fact.has_wheel:
            continue
        verdict = svc.gate.engine.decide(PackageRef(ECO, name, version, entry.filename), fact)
        if verdict.blocks:
            refused.append(entry.filename)
    return (pages.drop_files(page, refused), len(refused)) if refused else (page, 0)


async def file(request: web.Request) -> web.StreamResponse:
    """``/pypi/files/<name>/<filename>``: a distribution or its ``.metadata``."""
    name = _name(request)
    filename = request.match_info["filename"]
    is_metadata = filename.endswith(".metadata")
    dist = filename.removesuffix(".metadata") if is_metadata else filename
    if not pages.valid_filename(dist):
        raise BadRequestError(f"{filename!r} is not a valid distribution filename")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    page, _ = await _page(svc, request.app, upstream, name)
    entry = page.file(dist)
    if entry is None:
        raise NotFoundError(f"{dist} is not a file of {name} on upstream {upstream.name}")
    version = entry.version
    every = version_facts(page, upstream)
    if version is not None and version in every:
        facts = (await svc.first_seen.annotate(ECO, name, every, only=version))[version]
    else:
        facts = Facts(upstream=upstream.name, internal=upstream.internal)
    ref = PackageRef(ECO, name, version, dist)
    verdict = await svc.gate.decide(ref, facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
    if is_metadata:
        if not isinstance(entry.core_metadata, dict):
            raise NotFoundError(f"upstream {upstream.name} publishes no metadata file for {dist}")
        expected = _digests(entry.core_metadata, dist)
        source_url, ctype = entry.url + ".metadata", "text/plain; charset=utf-8"
    else:
        expected = _digests(entry.hashes, dist)
        source_url, ctype = entry.url, "application/octet-stream"
    source = ArtifactSource(
        ecosystem=ECO, upstream=upstream, url=source_url, filename=filename,
        key=f"pypi|{upstream.name}|{filename}", expected=expected,
        content_type=ctype, headers=IMMUTABLE, name=name, version=version,
    )
    return await svc.pipeline.serve(request, source)


def _digests(hashes: Mapping[str, str], filename: str) -> tuple[Digest, ...]:
    out = []
    for alg in _VERIFIABLE:
        if alg in hashes:
            try:
                out.append(Digest.parse(alg, hashes[alg]))
            except DigestError as exc:
                raise IntegrityError(f"upstream digest for {filename} is malformed: {exc}") from exc
    if not out:
        # Without a published digest nothing proves the bytes are the upstream's.
        raise IntegrityError(f"upstream publishes no usable digest for {filename}; refusing it")
    return tuple(out)


def json_base(upstream: Upstream) -> str:
    """Where the upstream's JSON API lives (``/pypi/`` beside ``/simple/``)."""
    url = upstream.url
    if url.endswith("/simple/"):
        return url[: -len("simple/")] + "pypi/"
    return urljoin(url, "../pypi/")


async def json_api(request: web.Request) -> web.StreamResponse:
    """``/pypi/pypi/<name>[/<version>]/json`` with file URLs through the proxy."""
    name = _name(request)
    version = request.match_info.get("version")
    if version is not None and (not version or "/" in version or len(version) > 128):
        raise BadRequestError(f"{version!r} is not a valid version")
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    facts = Facts(upstream=upstream.name, internal=upstream.internal)
    verdict = await svc.gate.decide(PackageRef(ECO, name, version), facts, **_client(request))
    if verdict.blocks:
        return refusal(request, verdict)
    cache = svc.ecosystem(ECO).cache
    tail = f"{quote(name)}/json" if version is None else f"{quote(name)}/{quote(version)}/json"
    doc = await svc.metacache.get(
        ECO, upstream, json_base(upstream) + tail, accept="application/json",
        ttl_s=cache.metadata_ttl_s, stale_if_error_s=cache.stale_if_error_s,
    )
    data = json_object(doc.body, upstream.name, name)
    base = f"{request.url.origin()}{PREFIX}/files/{name}/"
    _rewrite_json(data, upstream, doc.url, base)
    return web.Response(body=orjson.dumps(data), content_type="application/json",
                        headers={"X-Stockade-Cache": doc.result.value})


def _rewrite_json(data: dict[str, Any], upstream: Upstream, doc_url: str, base: str) -> None:
    def fix(files: object) -> list[Any]:
        kept = []
        for item in files if isinstance(files, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                continue
            filename = item.get("filename")
            if not isinstance(filename, str) or not pages.valid_filename(filename):
                continue
            if upstream.resolve(item["url"], doc_url) is None:
                continue
            kept.append({**item, "url": base + quote(filename)})
        return kept

    if "urls" in data:
        data["urls"] = fix(data["urls"])
    releases = data.get("releases")
    if isinstance(releases, dict):
        data["releases"] = {v: fix(files) for v, files in releases.items()}


async def index(request: web.Request) -> web.StreamResponse:
    """``/pypi/simple/``: the project names of every upstream."""
    svc = services(request)
    cache = svc.ecosystem(ECO).cache
    names: dict[str, str] = {}
    for upstream in svc.upstreams[ECO]:
        doc = await svc.metacache.get(
            ECO, upstream, upstream.url, accept=pages.UPSTREAM_ACCEPT,
            ttl_s=cache.metadata_ttl_s, stale_if_error_s=cache.stale_if_error_s,
        )
        found = await asyncio.to_thread(pages.parse_index, doc.body, doc.content_type)
        for found_name in found:
            norm = pages.normalize(found_name)
            owner = pick_upstream(norm, svc.upstreams[ECO]) if pages.valid_name(norm) else None
            if owner is upstream:
                names.setdefault(norm, found_name)
    ctype = pages.negotiate(request.headers.get("Accept"))
    body = pages.render_index(sorted(names.values(), key=str.lower), ctype)
    return web.Response(body=body, headers={"Content-Type": ctype, "Vary": "Accept"})


async def known_versions(
    request: web.Request, name: str
) -> tuple[Facts, dict[str, Facts]]:
    """The name's facts and every version's, from the (cached) project page (explain API)."""
    if not pages.valid_name(name):
        raise BadRequestError(f"{name!r} is not a valid Python project name")
    name = pages.normalize(name)
    svc = services(request)
    upstream = pick_upstream(name, svc.upstreams[ECO])
    base = Facts(upstream=upstream.name, internal=upstream.internal)
    page, _ = await _page(svc, request.app, upstream, name)
    return base, await svc.first_seen.annotate(ECO, name, version_facts(page, upstream))
